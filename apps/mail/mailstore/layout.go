package mailstore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/nymote/nymote/store"
)

// Layouts of a mailbox's message items (MailboxInfo.Layout). A mailbox is
// written in one, but read in both: a merge may bring items of the other
// (a node of an earlier version, or one that has not yet rewritten a
// mailbox with Relayout), and a reader of history meets both.
const (
	// Layout256 puts message KEY's items in xx/yy/ (store.Shard: two
	// levels of 256 folders). An APPEND to a mailbox of a few thousand
	// messages rewrites two trees of up to 256 entries (7.5 KB each).
	// Mailboxes made before Layout16 (mailbox.json without "layout").
	Layout256 = 1
	// Layout16 puts them in a/b/c/d/ (four levels of 16, from the same
	// SHA-256 of the key: xx/yy's four hex digits one a level), so that
	// an APPEND rewrites four trees of at most 16 entries (460 bytes) and
	// a leaf that holds a message or two up to 65,536 messages.
	Layout16 = 2
)

// shardDir is the folder of message key's items under its mailbox's folder
// in layout l.
func shardDir(l int, key string) string {
	sum := sha256.Sum256([]byte(key))
	const hexd = "0123456789abcdef"
	if l == Layout16 {
		b := [7]byte{hexd[sum[0]>>4], '/', hexd[sum[0]&15], '/', hexd[sum[1]>>4], '/', hexd[sum[1]&15]}
		return string(b[:])
	}
	b := [5]byte{hexd[sum[0]>>4], hexd[sum[0]&15], '/', hexd[sum[1]>>4], hexd[sum[1]&15]}
	return string(b[:])
}

// msgBase is the store path of message key's items in mailbox id of user,
// less their extension, in layout l.
func msgBase(user, id string, l int, key string) string {
	return boxDir(user, id) + "/" + shardDir(l, key) + "/" + key
}

// Layout is the layout mb writes new messages in (Layout16 or Layout256).
func (mb *Mailbox) Layout() int { return mb.layout() }

// layout is Layout; mb.mu must not be held.
func (mb *Mailbox) layout() int {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	return mb.info.layout()
}

func (i *MailboxInfo) layout() int {
	if i.Layout == Layout16 {
		return Layout16
	}
	return Layout256
}

// otherLayout is the layout that is not l.
func otherLayout(l int) int {
	if l == Layout16 {
		return Layout256
	}
	return Layout16
}

// inLayouts calls try with message key's base path in mailbox id of user
// in layout l, then in the other, until it finds the message there or
// fails: base is where it stopped (l's when neither holds it).
func inLayouts(user, id string, l int, key string, try func(base string) (bool, error)) (base string, found bool, err error) {
	for _, k := range [2]int{l, otherLayout(l)} {
		b := msgBase(user, id, k, key)
		ok, err := try(b)
		if err != nil || ok {
			return b, ok, err
		}
	}
	return msgBase(user, id, l, key), false, nil
}

// findMsg finds where message key's item ext is in mailbox id of user, as
// exists (a snapshot's or a transaction's) sees it: in layout l first,
// then the other. found is false (and base l's) when neither holds it.
func findMsg(exists func(string) (bool, error), user, id string, l int, key, ext string) (base string, found bool, err error) {
	return inLayouts(user, id, l, key, func(b string) (bool, error) { return exists(b + ext) })
}

// readMsg reads message key's item ext in mailbox id of user, in layout l
// first, then the other (one read where it is in l, not a lookup and a
// read), and says where its items are: store.ErrNotExist when neither
// layout holds it.
func readMsg(read func(string) ([]byte, error), user, id string, l int, key, ext string) (base string, data []byte, err error) {
	base, found, err := inLayouts(user, id, l, key, func(b string) (bool, error) {
		d, err := read(b + ext)
		if errors.Is(err, store.ErrNotExist) {
			return false, nil
		}
		data = d
		return err == nil, err
	})
	if err == nil && !found {
		err = fmt.Errorf("mailstore: message %s of mailbox %s: %w", key, id, store.ErrNotExist)
	}
	return base, data, err
}

// splitMsgPath splits the path of a message's item under its mailbox's
// folder ("xx/yy/KEY.ext" or "a/b/c/d/KEY.ext") into KEY and ".ext" ("" for
// any other path).
func splitMsgPath(sub string) (key, ext string) {
	if itemLayout(sub) == 0 {
		return "", ""
	}
	base := path.Base(sub)
	ext = path.Ext(base)
	return strings.TrimSuffix(base, ext), ext
}

// itemLayout is the layout whose shape sub, a path under a mailbox's
// folder, has (its folders, not whether they are its key's): 0 if neither.
func itemLayout(sub string) int {
	switch n := strings.Count(sub, "/"); {
	case n == 2 && len(sub) > 6 && sub[2] == '/' && sub[5] == '/':
		return Layout256
	case n == 4 && len(sub) > 8 && sub[1] == '/' && sub[3] == '/' && sub[5] == '/' && sub[7] == '/':
		return Layout16
	}
	return 0
}

// Relayout rewrites user's mailboxes that hold items in Layout256 into
// Layout16: first mailbox.json (so that new messages go to Layout16), then
// the items of one xx/ folder a commit, so that a commit stays small
// whatever the mailbox's size (messages are read in either layout
// meanwhile). Items move by their hash (nothing is read or copied), and no
// UID, flag or MODSEQ changes. ok is asked before each commit; Relayout
// stops when it says no. It returns the messages moved.
//
// Only for a node without peers: a peer that expunged a message
// meanwhile would have deleted it at the path that this moves it from,
// and the merge would keep it at the new one.
func (s *Store) Relayout(ctx context.Context, user string, ok func() bool) (moved int, err error) {
	// Users with nothing to do are not loaded.
	if need, err := s.NeedsRelayout(user); err != nil || !need {
		return 0, err
	}
	u, err := s.User(ctx, user)
	if err != nil {
		return 0, err
	}
	for _, mb := range u.Mailboxes() {
		if mb.layout() != Layout16 {
			if !ok() {
				return moved, nil
			}
			err := s.Update(ctx, user, "mail: new messages of "+mb.Name()+" in the 16-way layout", func(w *Writer) error {
				i, err := w.info(mb)
				if err != nil {
					return err
				}
				i.Layout = Layout16
				if err := w.putInfo(mb, i); err != nil {
					return err
				}
				w.apply = append(w.apply, func() {
					mb.mu.Lock()
					mb.info.Layout = Layout16
					mb.mu.Unlock()
				})
				return nil
			})
			if err != nil {
				return moved, fmt.Errorf("mailstore: relayout of %s: %w", mb.Name(), err)
			}
		}
		dir := boxDir(user, mb.ID)
		sn, err := s.st.Snapshot("")
		if err != nil {
			return moved, err
		}
		ents, err := sn.ReadDir(dir)
		if err != nil {
			continue // deleted meanwhile
		}
		for _, e := range ents {
			if !e.Dir || len(path.Base(e.Path)) != 2 {
				continue
			}
			if !ok() {
				return moved, nil
			}
			n := 0
			err := s.Update(ctx, user, "mail: messages of "+mb.Name()+" moved to the 16-way layout", func(w *Writer) error {
				n = 0
				sn, err := s.st.SnapshotOf(w.tx.Base())
				if err != nil {
					return err
				}
				items, err := sn.List(e.Path)
				if err != nil {
					return nil // gone meanwhile
				}
				for _, it := range items {
					sub := strings.TrimPrefix(it.Path, dir+"/")
					if itemLayout(sub) != Layout256 {
						continue
					}
					key, ext := splitMsgPath(sub)
					if err := w.tx.PutHash(msgBase(user, mb.ID, Layout16, key)+ext, it.Hash); err != nil {
						return err
					}
					if err := w.tx.Delete(it.Path); err != nil {
						return err
					}
					if ext == ".meta" {
						n++
					}
				}
				return nil
			})
			if err != nil {
				return moved, fmt.Errorf("mailstore: relayout of %s: %w", mb.Name(), err)
			}
			moved += n
		}
	}
	return moved, nil
}

// NeedsRelayout reports whether a mailbox of user is not in Layout16 or
// holds items in Layout256, from the head (without loading the user).
func (s *Store) NeedsRelayout(user string) (bool, error) {
	sn, err := s.st.Snapshot("")
	if err != nil {
		return false, err
	}
	boxes, err := sn.ReadDir(userDir(user))
	if err != nil {
		return false, nil // no mail yet
	}
	for _, b := range boxes {
		if !b.Dir {
			continue
		}
		ents, err := sn.ReadDir(b.Path)
		if err != nil {
			return false, err
		}
		for _, e := range ents {
			switch {
			case e.Dir && len(path.Base(e.Path)) == 2:
				return true, nil
			case !e.Dir && path.Base(e.Path) == "mailbox.json":
				data, err := sn.Read(e.Path)
				if err != nil {
					return false, err
				}
				var i MailboxInfo
				if json.Unmarshal(data, &i) == nil && i.layout() != Layout16 {
					return true, nil
				}
			}
		}
	}
	return false, nil
}
