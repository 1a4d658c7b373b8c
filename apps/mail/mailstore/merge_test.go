package mailstore

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

func TestMergeFlags(t *testing.T) {
	line := func(flags string) string {
		if flags == "" {
			return ""
		}
		return "1 k " + flags + "\n"
	}
	for _, tc := range []struct{ base, ours, theirs, want string }{
		{`\Seen`, `\Seen \Flagged`, `\Seen`, `\Flagged \Seen`},
		{`\Seen`, ``, `\Seen \Flagged`, `\Flagged`},
		{``, `$a`, `$b`, `$a $b`},
		{`\Seen \Deleted`, `\Seen`, `\Deleted`, ``},
	} {
		got, err := Merge("mail/a/b/flags/0/0", []byte(line(tc.base)), []byte(line(tc.ours)), []byte(line(tc.theirs)))
		if err != nil || string(got) != line(tc.want) {
			t.Errorf("merge(%q, %q, %q): got %q, %v, want %q", tc.base, tc.ours, tc.theirs, got, err, line(tc.want))
		}
	}
	// Two messages in one chunk, each changed on one side.
	got, _ := Merge("mail/a/b/flags/0/0", []byte("1 a \\Seen\n"), []byte("1 a \\Seen\n2 b $x\n"), []byte("1 a \\Seen \\Flagged\n"))
	if string(got) != "1 a \\Flagged \\Seen\n2 b $x\n" {
		t.Errorf("two messages: got %q", got)
	}
	if got, _ := Merge("mail/a/b/x/y/k.eml", []byte("m"), nil, []byte("m")); got != nil {
		t.Errorf("a message deleted on one side: got %q, want deleted", got)
	} // mailbox.json: the higher UIDNEXT and \Recent mark.
	got, err := Merge("mail/a/b/mailbox.json", []byte(`{"name":"INBOX","uidnext":5,"recent_from":3}`),
		[]byte(`{"name":"INBOX","uidnext":9,"recent_from":4}`), []byte(`{"name":"INBOX","uidnext":7,"recent_from":7}`))
	var i MailboxInfo
	if err != nil || json.Unmarshal(got, &i) != nil || i.UIDNext != 9 || i.RecentFrom != 7 {
		t.Errorf("mailbox.json: got %s, %v; want uidnext 9, recent_from 7", got, err)
	}
}

// TestReplicaMerge: two replicas append to one mailbox (the same UIDs,
// each its own), change flags of one message differently, and merge; the
// result has every message, one UID each, and both flag changes.
func TestReplicaMerge(t *testing.T) {
	ctx := context.Background()
	stA, msA := newStore(t)
	stA.SetMergeFunc(Prefix+"/", Merge)
	u, _ := msA.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	var first *Message
	msA.Update(ctx, "alice", "a", func(w *Writer) error {
		_, err := w.Append(inbox, testMsg(0), nil, time.Time{})
		return err
	})
	first = inbox.msgs[0]

	stB, err := store.Clone(ctx, store.Remote{URL: stA.Path()}, filepath.Join(t.TempDir(), "b.git"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer stB.Close()
	stB.SetMergeFunc(Prefix+"/", Merge)
	msB, _ := Open(stB, Options{})
	defer msB.Close()
	uB, _ := msB.User(ctx, "alice")
	inB, _ := uB.Mailbox("INBOX")
	firstB := inB.msgs[0]
	for i := 1; i <= 2; i++ {
		msA.Update(ctx, "alice", "a", func(w *Writer) error {
			_, err := w.Append(inbox, testMsg(i), nil, time.Time{})
			return err
		})
		msB.Update(ctx, "alice", "b", func(w *Writer) error {
			_, err := w.Append(inB, testMsg(10+i), nil, time.Time{})
			return err
		})
	}
	msA.Update(ctx, "alice", "a", func(w *Writer) error { return w.SetFlags(inbox, first, []imap.Flag{imap.FlagSeen}, nil) })
	msB.Update(ctx, "alice", "b", func(w *Writer) error { return w.SetFlags(inB, firstB, []imap.Flag{imap.FlagFlagged}, nil) })

	if _, err := stA.Pull(ctx, store.Remote{URL: stB.Path()}, store.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	// The running index follows the merge commit.
	deadline := time.Now().Add(time.Minute) // only a hung watch fails it
	for {
		v, _ := inbox.Open(true)
		items := v.Items(nil)
		v.Close()
		var uids []int
		seen := map[imap.UID]bool{}
		dup := false
		for _, it := range items {
			uids = append(uids, int(it.Msg.UID))
			dup = dup || seen[it.Msg.UID]
			seen[it.Msg.UID] = true
		}
		sort.Ints(uids)
		// (The index takes the messages, then their flags.)
		if len(items) == 5 && !dup && fmt.Sprint(inbox.Flags(first)) == `[\Flagged \Seen]` {
			// Both sides appended UIDs 2 and 3 (each its own): A's
			// keep theirs, B's are new here, above them.
			if fmt.Sprint(uids) != "[1 2 3 4 5]" {
				t.Errorf("UIDs: got %v", uids)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the merge: got UIDs %v, flags %v", uids, inbox.Flags(first))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And so does a fresh index.
	ms2, _ := Open(stA, Options{})
	defer ms2.Close()
	u2, _ := ms2.User(ctx, "alice")
	in2, _ := u2.Mailbox("INBOX")
	if st := in2.Stats(); st.Messages != 5 {
		t.Errorf("fresh index: %d messages", st.Messages)
	}
}
