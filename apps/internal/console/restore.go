package console

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// Restores are new commits: history is never rewritten. Mail goes through
// the mailstore's index (new UIDs for messages that come back, as IMAP
// requires; open sessions are told at once), DAV data through the store,
// whose new commit is what sync tokens compare against.

// RestoreResult says what a restore did.
type RestoreResult struct {
	Rev string `json:"rev,omitempty"` // the new head ("" when nothing changed)
	// Counts of messages added back, expunged and reflagged, and of DAV
	// items put back, removed and changed back.
	MessagesAdded     int      `json:"messages_added,omitempty"`
	MessagesExpunged  int      `json:"messages_expunged,omitempty"`
	MessagesReflagged int      `json:"messages_reflagged,omitempty"`
	Items             int      `json:"items,omitempty"`
	Skipped           []string `json:"skipped,omitempty"`
}

func (r RestoreResult) String() string {
	var parts []string
	if r.MessagesAdded > 0 {
		parts = append(parts, plural(r.MessagesAdded, "message", "messages")+" back")
	}
	if r.MessagesExpunged > 0 {
		parts = append(parts, plural(r.MessagesExpunged, "message", "messages")+" removed")
	}
	if r.MessagesReflagged > 0 {
		parts = append(parts, plural(r.MessagesReflagged, "message's flags", "messages' flags")+" restored")
	}
	if r.Items > 0 {
		parts = append(parts, plural(r.Items, "item", "items")+" restored")
	}
	if len(parts) == 0 {
		return "nothing to restore: it is already as it was"
	}
	return strings.Join(parts, ", ")
}

type restorer struct {
	c    *Console
	h    *historian
	user string
	via  string // "web console" or "API"
}

func (r *restorer) opts(msg string) store.CommitOptions {
	return store.CommitOptions{Author: store.Signature{Name: r.user, Email: r.user + "@console.nymote"},
		Message: r.msgPrefix() + msg + "\n\nVia: " + r.via + "\n"}
}

func (r *restorer) msgPrefix() string {
	if r.via == "API" {
		return "api: "
	}
	return "console: "
}

func (r *restorer) head() string {
	h, err := r.c.st.Resolve("")
	if err != nil {
		return ""
	}
	return h.String()
}

// undo makes a new commit that undoes what commit rev did to the user's
// data. Items changed again since are a conflict (409) and nothing is
// written; messages come back with new UIDs.
func (r *restorer) undo(ctx context.Context, rev string) (RestoreResult, error) {
	var res RestoreResult
	c, err := r.h.commit(rev)
	if err != nil {
		return res, err
	}
	scopes, _ := r.h.scopes(filter{})
	byService, err := r.h.changesOf(c, scopes)
	if err != nil {
		return res, err
	}
	if len(byService) == 0 {
		return res, &httpError{404, fmt.Sprintf("revision %s changed none of %s's data", short(c.Hash), r.user)}
	}
	if len(byService[ServiceAccount]) > 0 {
		res.Skipped = append(res.Skipped, "account changes are not undone here (use the users page)")
	}
	title := "undo " + short(c.Hash)
	if ch := byService[ServiceMail]; len(ch) > 0 {
		if err := r.undoMail(ctx, c, ch, title, &res); err != nil {
			return res, err
		}
	}
	var dav []store.Change
	dav = append(dav, byService[ServiceContacts]...)
	dav = append(dav, byService[ServiceCalendar]...)
	if len(dav) > 0 {
		_, err := r.c.st.Update(ctx, r.opts(title), func(tx *store.Tx) error {
			var conflicts []string
			for _, x := range dav {
				cur, err := currentHash(tx, x.Path)
				if err != nil {
					return err
				}
				if cur != x.To {
					conflicts = append(conflicts, x.Path)
					continue
				}
				if err := setHash(tx, x.Path, x.From); err != nil {
					return err
				}
			}
			if len(conflicts) > 0 {
				return &store.ConflictError{Op: title + ": changed again since", Paths: conflicts}
			}
			res.Items = len(dav)
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	res.Rev = r.head()
	return res, nil
}

func currentHash(tx *store.Tx, p string) (store.Hash, error) {
	data, err := tx.Get(p)
	if errors.Is(err, store.ErrNotExist) {
		return store.Hash{}, nil
	}
	if err != nil {
		return store.Hash{}, err
	}
	return store.BlobHash(data), nil
}

func setHash(tx *store.Tx, p string, h store.Hash) error {
	if h.IsZero() {
		return tx.Delete(p)
	}
	return tx.PutHash(p, h)
}

func (r *restorer) mail(ctx context.Context) (*mailstore.User, error) {
	if r.c.opts.Mail == nil {
		return nil, &httpError{409, "mail is restored by the mail appliance's console"}
	}
	return r.c.opts.Mail.User(ctx, r.user)
}

func (r *restorer) undoMail(ctx context.Context, c store.CommitInfo, ch []store.Change, title string, res *RestoreResult) error {
	u, err := r.mail(ctx)
	if err != nil {
		return err
	}
	parent := parentOf(c)
	boxes := groupMail(ch)
	err = r.c.opts.Mail.Update(ctx, r.user, r.msgPrefix()+title+"\n\nVia: "+r.via+"\n", func(w *mailstore.Writer) error {
		*res = RestoreResult{Skipped: res.Skipped} // this may run twice (group commit)
		for _, b := range boxes {
			mb, ok := u.MailboxByID(b.id)
			if !ok {
				res.Skipped = append(res.Skipped, "mailbox "+r.h.boxName(b.id, c.Hash, parent)+" no longer exists")
				continue
			}
			if b.info != nil && b.info.Action() != "modify" {
				res.Skipped = append(res.Skipped, "mailbox "+mb.Name()+" created or deleted: not undone")
			}
			cur := map[string]*mailstore.Message{}
			blobs := map[store.Hash]bool{}
			for _, m := range mb.Messages() {
				cur[m.Key] = m
				blobs[m.Blob()] = true
			}
			for _, k := range b.added {
				if m := cur[k]; m != nil {
					if err := w.Expunge(mb, m); err != nil {
						return err
					}
					delete(cur, k)
					res.MessagesExpunged++
				}
			}
			if len(b.removed) > 0 {
				old, err := r.storedMessages(parent, b.id, b.removed)
				if err != nil {
					return err
				}
				for _, m := range old {
					if blobs[m.Blob] {
						res.Skipped = append(res.Skipped, fmt.Sprintf("message %s is there already", quote(messageView(m).Subject)))
						continue
					}
					if _, err := w.AppendStored(mb, m); err != nil {
						return err
					}
					res.MessagesAdded++
				}
			}
			for _, fc := range r.h.flagChanges(b.flags) {
				m := cur[fc.Key]
				if m == nil || fc.Before == nil && fc.After == nil {
					continue
				}
				if fmt.Sprint(mb.Flags(m)) != fmt.Sprint(fc.After) && !(len(fc.After) == 0 && len(mb.Flags(m)) == 0) {
					res.Skipped = append(res.Skipped, fmt.Sprintf("flags of message %d changed again since", m.UID))
					continue
				}
				if err := w.SetFlags(mb, m, fc.Before, nil); err != nil {
					return err
				}
				res.MessagesReflagged++
			}
		}
		return nil
	})
	return mailstore.DiskFull(err)
}

// storedMessages reads messages (by key) of a mailbox at commit at, with
// their flags there.
func (r *restorer) storedMessages(at store.Hash, box string, keys []string) ([]mailstore.StoredMessage, error) {
	sn, err := r.c.st.SnapshotOf(at)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	if len(keys) > 64 {
		all, err := mailstore.ReadMailboxMessages(sn, r.user, box)
		if err != nil {
			return nil, err
		}
		var out []mailstore.StoredMessage
		for _, m := range all {
			if want[m.Key] {
				out = append(out, m)
			}
		}
		return out, nil
	}
	var out []mailstore.StoredMessage
	for _, k := range keys {
		data, err := sn.Read(mailstore.MessagePath(sn, r.user, box, k, "meta"))
		if err != nil {
			return nil, err
		}
		m, err := mailstore.ReadMeta(data)
		if err != nil {
			return nil, err
		}
		m.Key = k
		e, err := sn.Stat(mailstore.MessagePath(sn, r.user, box, k, "eml"))
		if err != nil {
			return nil, err
		}
		m.Blob = e.Hash
		out = append(out, m)
	}
	// Flags as they were: from the chunks of the mailbox at that commit.
	ents, err := sn.List(mailstore.BoxDir(r.user, box) + "/flags")
	if err != nil && !errors.Is(err, store.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		data, err := sn.Read(e.Path)
		if err != nil {
			return nil, err
		}
		fl := mailstore.ReadChunk(data)
		for i := range out {
			if f, ok := fl[out[i].Key]; ok {
				out[i].Flags = f
			}
		}
	}
	return out, nil
}

// restoreFolder brings one mailbox, address book or calendar of the user
// back to how it was at commit at.
func (r *restorer) restoreFolder(ctx context.Context, service, folder string, at store.CommitInfo) (RestoreResult, error) {
	var res RestoreResult
	title := fmt.Sprintf("restore %s %s to %s (%s)", service, folder, short(at.Hash), at.When.UTC().Format("2006-01-02 15:04:05 UTC"))
	switch service {
	case ServiceMail:
		u, err := r.mail(ctx)
		if err != nil {
			return res, err
		}
		mb, err := u.Mailbox(folder)
		if err != nil {
			return res, &httpError{404, fmt.Sprintf("no mailbox %q now (restore brings back the messages of a mailbox that exists)", folder)}
		}
		sn, err := r.c.st.SnapshotOf(at.Hash)
		if err != nil {
			return res, err
		}
		old, err := mailstore.ReadMailboxMessages(sn, r.user, mb.ID)
		if err != nil {
			return res, err
		}
		var mr mailstore.RestoreResult
		err = r.c.opts.Mail.Update(ctx, r.user, r.msgPrefix()+title+"\n\nVia: "+r.via+"\n", func(w *mailstore.Writer) error {
			var err error
			mr, err = w.RestoreMailbox(mb, old)
			return err
		})
		if err != nil {
			return res, mailstore.DiskFull(err)
		}
		res.MessagesAdded, res.MessagesExpunged, res.MessagesReflagged = mr.Added, mr.Expunged, mr.Reflagged
	case ServiceContacts, ServiceCalendar:
		dir := davCollDir(service, r.user, folder)
		if ok, err := r.c.st.SnapshotOf(at.Hash); err != nil {
			return res, err
		} else if e, err := ok.Stat(dir + "/props.json"); err != nil || e.Hash.IsZero() {
			return res, &httpError{404, fmt.Sprintf("no %s collection %q at %s", service, folder, short(at.Hash))}
		}
		_, err := r.c.st.Update(ctx, r.opts(title), func(tx *store.Tx) error {
			ch, err := r.c.st.DiffUnder(tx.Base(), at.Hash, dir)
			if err != nil {
				return err
			}
			for _, x := range ch {
				if err := setHash(tx, x.Path, x.To); err != nil {
					return err
				}
			}
			res.Items = len(ch)
			return nil
		})
		if err != nil {
			return res, err
		}
	default:
		return res, &httpError{400, fmt.Sprintf("service %q cannot be restored: want mail, contacts or calendar", service)}
	}
	res.Rev = r.head()
	return res, nil
}
