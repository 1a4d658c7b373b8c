package mailstore

import (
	"context"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestItemsWindows checks that ItemsWindows hands over exactly what Items
// returns, in order, in windows of at most n, for sequence and UID sets
// with gaps, "*", and the whole mailbox, for a view with expunges pending
// and one without.
func TestItemsWindows(t *testing.T) {
	ctx := context.Background()
	_, ms := newStore(t)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	err := ms.Update(ctx, "alice", "fill", func(w *Writer) error {
		for i := range 40 {
			if _, err := w.Append(inbox, testMsg(i), nil, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Expunge every third, so that UIDs have gaps.
	v, _ := inbox.Open(false)
	defer v.Close()
	all := v.Items(nil)
	err = ms.Update(ctx, "alice", "expunge", func(w *Writer) error {
		for i, it := range all {
			if i%3 == 1 {
				if err := w.Expunge(inbox, it.Msg); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// v has the expunges pending (its client still counts the expunged
	// messages in its sequence numbers); fresh has none.
	fresh, _ := inbox.Open(false)
	defer fresh.Close()
	sets := map[string]imap.NumSet{
		"all":          nil,
		"seq 1:*":      imap.SeqSet{{Start: 1, Stop: 0}},
		"seq 2,5:9,*":  imap.SeqSet{{Start: 2, Stop: 2}, {Start: 5, Stop: 9}, {Start: 0, Stop: 0}},
		"uid 1:*":      imap.UIDSet{{Start: 1, Stop: 0}},
		"uid gaps":     imap.UIDSet{{Start: 3, Stop: 3}, {Start: 10, Stop: 20}, {Start: 35, Stop: 100}},
		"uid reversed": imap.UIDSet{{Start: 30, Stop: 25}, {Start: 2, Stop: 5}},
		"uid none":     imap.UIDSet{{Start: 1000, Stop: 2000}},
	}
	for name, ns := range sets {
		for _, v := range []*View{v, fresh} {
			want := v.Items(ns)
			for _, n := range []int{1, 3, 7, 26, 1000} {
				var got []Item
				err := v.ItemsWindows(ns, n, func(win []Item) error {
					if len(win) == 0 || len(win) > n {
						t.Errorf("%s, n=%d: a window of %d", name, n, len(win))
					}
					got = append(got, win...)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Errorf("%s, n=%d: %d items, Items has %d", name, n, len(got), len(want))
					continue
				}
				for i := range got {
					if got[i].Msg != want[i].Msg || got[i].Seq != want[i].Seq {
						t.Errorf("%s, n=%d: item %d is UID %d seq %d, Items has UID %d seq %d", name, n, i, got[i].Msg.UID, got[i].Seq, want[i].Msg.UID, want[i].Seq)
						break
					}
				}
			}
		}
	}
	if len(v.Items(sets["uid gaps"])) == 0 || len(v.Items(sets["uid none"])) != 0 {
		t.Fatal("the test's sets do not select what they should")
	}
}
