// Package mailfill fills a data folder with one large mailbox for the
// memory and scale tests that need one (the mail index's memory, the IMAP
// sessions' memory, a 64 MiB appliance serving 50,000 messages): one
// user's INBOX of n messages, written through the mailstore in commits of
// 2000, as a data disk that grew.
package mailfill

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// User and Password are the user Fill makes.
const (
	User     = "alice"
	Password = "correct horse"
)

// Subjects are the words of Message's subjects: message i has
// Subjects[i%5] (so "zebra" when i%5 == 2), then "alpha", "beta" or
// "gamma" by i%3, then "#i".
var Subjects = []string{"meeting", "report", "zebra", "garden", "lunch"}

var text = strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n", 20)

// Message is message i of the mailbox: 1.8 KB of plain text from one of
// 20 senders, its subject as Subjects says, \Seen when i%4 == 0.
func Message(i int) ([]byte, []imap.Flag) {
	var flags []imap.Flag
	if i%4 == 0 {
		flags = []imap.Flag{imap.FlagSeen}
	}
	subj := Subjects[i%5] + " " + []string{"alpha", "beta", "gamma"}[i%3]
	return fmt.Appendf(nil, "From: Sender <sender%02d@example.net>\r\nTo: alice@localhost\r\nSubject: %s #%d\r\nMessage-ID: <%d.fill@example.net>\r\nContent-Type: text/plain\r\n\r\n%s",
		i%20, subj, i, i, text), flags
}

// Fill makes a data folder in dir (store.InitData) whose user User has n
// Messages in INBOX, all dated 2024-01-01, and repacks it (store.GC) if
// repack is set. progress, if not nil, is called after each commit with
// the messages written so far.
func Fill(ctx context.Context, dir string, n int, repack bool, progress func(done int)) error {
	st, err := store.InitData(dir, store.Options{})
	if err != nil {
		return err
	}
	err = fill(ctx, st, n, progress)
	if err == nil && repack {
		_, err = st.GC(ctx)
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}

func fill(ctx context.Context, st *store.Store, n int, progress func(done int)) error {
	if err := st.AddUser(ctx, User, Password, store.GitNone); err != nil {
		return err
	}
	ms, err := mailstore.Open(st, mailstore.Options{RawCacheBytes: -1})
	if err != nil {
		return err
	}
	err = appendAll(ctx, ms, n, progress)
	if cerr := ms.Close(); err == nil {
		err = cerr
	}
	return err
}

func appendAll(ctx context.Context, ms *mailstore.Store, n int, progress func(done int)) error {
	u, err := ms.User(ctx, User)
	if err != nil {
		return err
	}
	inbox, err := u.Mailbox("INBOX")
	if err != nil {
		return err
	}
	date := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for lo := 0; lo < n; lo += 2000 {
		err := ms.Update(ctx, User, "fill", func(w *mailstore.Writer) error {
			for i := lo; i < min(lo+2000, n); i++ {
				raw, flags := Message(i)
				if _, err := w.Append(inbox, raw, flags, date); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("mailfill: messages %d and on: %w", lo, err)
		}
		if progress != nil {
			progress(min(lo+2000, n))
		}
	}
	return nil
}

// ItemsByLayout counts the message items of mailbox id of user at the
// store's head by the layout whose paths they have (mailstore.Layout16,
// mailstore.Layout256).
func ItemsByLayout(st *store.Store, user, id string) (map[int]int, error) {
	sn, err := st.Snapshot("")
	if err != nil {
		return nil, err
	}
	ents, err := sn.List(mailstore.BoxDir(user, id))
	if err != nil {
		return nil, err
	}
	out := map[int]int{}
	for _, e := range ents {
		if l, _ := itemLayout(e.Path); l != 0 {
			out[l]++
		}
	}
	return out, nil
}

// itemLayout is the layout of message item p (its key and kind), 0 if p
// is not one or is not in its key's folders.
func itemLayout(p string) (l int, pi mailstore.PathInfo) {
	pi, ok := mailstore.ParsePath(p)
	if !ok || pi.Key == "" || p != mailstore.LayoutPath(pi.Layout, pi.User, pi.Box, pi.Key, pi.Kind) {
		return 0, pi
	}
	return pi.Layout, pi
}

// ToLayout256 rewrites mailbox id of user as versions before
// mailstore.Layout16 wrote it (message items in xx/yy/, no layout in its
// mailbox.json), in one commit: for the tests of what reads such stores
// and moves them.
func ToLayout256(ctx context.Context, st *store.Store, user, id string) error {
	sn, err := st.Snapshot("")
	if err != nil {
		return err
	}
	ents, err := sn.List(mailstore.BoxDir(user, id))
	if err != nil {
		return err
	}
	_, err = st.Update(ctx, store.CommitOptions{Message: "as an earlier version wrote it"}, func(tx *store.Tx) error {
		for _, e := range ents {
			if path.Base(e.Path) == "mailbox.json" {
				data, err := sn.Read(e.Path)
				if err != nil {
					return err
				}
				var m map[string]any
				if err := json.Unmarshal(data, &m); err != nil {
					return err
				}
				delete(m, "layout")
				data, _ = json.Marshal(m)
				if err := tx.Put(e.Path, data); err != nil {
					return err
				}
				continue
			}
			l, pi := itemLayout(e.Path)
			if l != mailstore.Layout16 {
				continue
			}
			to := mailstore.LayoutPath(mailstore.Layout256, user, id, pi.Key, pi.Kind)
			if err := tx.PutHash(to, e.Hash); err != nil {
				return err
			}
			if err := tx.Delete(e.Path); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}
