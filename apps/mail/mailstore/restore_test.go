package mailstore

import (
	"context"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestRestoreMailbox: a mailbox brought back to an earlier commit gets its
// expunged messages back (new UIDs, old flags and dates), loses the ones
// added since, and has its flags as they were; a second restore to the same
// point changes nothing; an open view sees the change.
func TestRestoreMailbox(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, err := ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := u.Mailbox("INBOX")
	if err := ms.Update(ctx, "alice", "append", func(w *Writer) error {
		for i := 1; i <= 4; i++ {
			if _, err := w.Append(inbox, testMsg(i), []imap.Flag{imap.FlagSeen}, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	point, err := st.Snapshot("")
	if err != nil {
		t.Fatal(err)
	}
	msgs := inbox.Messages()
	if err := ms.Update(ctx, "alice", "change", func(w *Writer) error {
		if err := w.Expunge(inbox, msgs[0]); err != nil {
			return err
		}
		if err := w.SetFlags(inbox, msgs[1], []imap.Flag{imap.FlagFlagged}, nil); err != nil {
			return err
		}
		_, err := w.Append(inbox, testMsg(9), nil, time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	v, _ := inbox.Open(true)
	defer v.Close()
	old, err := ReadMailboxMessages(point, "alice", inbox.ID)
	if err != nil || len(old) != 4 {
		t.Fatalf("old messages: %d, %v", len(old), err)
	}
	var res RestoreResult
	if err := ms.Update(ctx, "alice", "restore", func(w *Writer) error {
		res, err = w.RestoreMailbox(inbox, old)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if res != (RestoreResult{Added: 1, Expunged: 1, Reflagged: 1}) {
		t.Errorf("restore: %+v, want 1 added, 1 expunged, 1 reflagged", res)
	}
	select {
	case <-v.Wake():
	case <-time.After(time.Minute):
		t.Fatal("an open view was not woken by the restore")
	}
	now := inbox.Messages()
	if len(now) != 4 {
		t.Fatalf("after restore: %d messages, want 4", len(now))
	}
	back := now[len(now)-1]
	if back.UID <= 5 || back.Summary().Envelope.Subject != "hello 1" || !back.Date.Equal(msgs[0].Date) {
		t.Errorf("restored message: uid %d subject %q date %v", back.UID, back.Summary().Envelope.Subject, back.Date)
	}
	if f := inbox.Flags(back); len(f) != 1 || f[0] != imap.FlagSeen {
		t.Errorf("restored flags: %v", f)
	}
	raw, err := ms.ReadRaw(inbox, back)
	if err != nil || string(raw) != string(testMsg(1)) {
		t.Errorf("restored content: %q, %v", raw, err)
	}
	if err := ms.Update(ctx, "alice", "restore again", func(w *Writer) error {
		res, err = w.RestoreMailbox(inbox, old)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if res != (RestoreResult{}) {
		t.Errorf("second restore changed %+v", res)
	}
	// The index agrees with a fresh load from the store.
	ms2, err := Open(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ms2.Close()
	u2, _ := ms2.User(ctx, "alice")
	in2, _ := u2.Mailbox("INBOX")
	if n := len(in2.Messages()); n != 4 {
		t.Errorf("reloaded: %d messages, want 4", n)
	}
}
