package mailstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/mailstore/mailfill"
	"github.com/nymote/nymote/store"
)

func testMsg(i int) []byte {
	return []byte(fmt.Sprintf("From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: hello %d\r\n\r\nbody %d\r\n", i, i))
}

// items counts mailbox id's message items by layout.
func items(t *testing.T, st *store.Store, id string) map[int]int {
	t.Helper()
	n, err := mailfill.ItemsByLayout(st, "alice", id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// state is what a mailbox's sessions see: UIDs, flags, subjects.
func state(t *testing.T, ms *mailstore.Store, mb *mailstore.Mailbox) string {
	t.Helper()
	v, _ := mb.Open(true)
	defer v.Close()
	var b strings.Builder
	for _, it := range v.Items(nil) {
		raw, err := ms.ReadRaw(mb, it.Msg)
		if err != nil {
			t.Fatalf("UID %d: %v", it.Msg.UID, err)
		}
		fmt.Fprintf(&b, "%d %v %s|", it.Msg.UID, it.Flags, it.Msg.Summary().Envelope.Subject)
		if !strings.Contains(string(raw), it.Msg.Summary().Envelope.Subject) {
			t.Fatalf("UID %d: content %q is not its message's", it.Msg.UID, raw)
		}
	}
	return b.String()
}

// A store written by an earlier version (mailstore.Layout256) reads and writes as
// before; new mailboxes are in mailstore.Layout16; items of either layout that a
// commit from elsewhere brings are read; Relayout moves a mailbox to
// mailstore.Layout16 without changing what its sessions see.
func TestLayouts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddUser(ctx, "alice", "password1", store.GitNone); err != nil {
		t.Fatal(err)
	}
	ms, err := mailstore.Open(st, mailstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := u.Mailbox("INBOX")
	archive, _ := u.Mailbox("Archive")
	appendTo := func(ms *mailstore.Store, mb *mailstore.Mailbox, i int, flags ...imap.Flag) {
		t.Helper()
		err := ms.Update(ctx, "alice", "append", func(w *mailstore.Writer) error {
			_, err := w.Append(mb, testMsg(i), flags, time.Time{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 20; i++ {
		appendTo(ms, inbox, i, imap.Flag(fmt.Sprintf("$k%d", i%3)))
	}
	if l := items(t, st, inbox.ID); l[mailstore.Layout16] != 40 || l[mailstore.Layout256] != 0 {
		t.Fatalf("a new mailbox's items: %d in Layout16, %d in Layout256; want 40 and 0", l[mailstore.Layout16], l[mailstore.Layout256])
	}
	want := state(t, ms, inbox)
	ms.Close()

	// As an earlier version wrote it.
	if err := mailfill.ToLayout256(ctx, st, "alice", inbox.ID); err != nil {
		t.Fatal(err)
	}
	ms, err = mailstore.Open(st, mailstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ms.Close() }()
	u, _ = ms.User(ctx, "alice")
	inbox, _ = u.Mailbox("INBOX")
	archive, _ = u.Mailbox("Archive")
	if got := state(t, ms, inbox); got != want {
		t.Fatalf("in Layout256:\n got %s\nwant %s", got, want)
	}
	// Written as it is: an APPEND in mailstore.Layout256, an EXPUNGE where the
	// message is.
	appendTo(ms, inbox, 21)
	first := inbox.Messages()[0]
	err = ms.Update(ctx, "alice", "expunge", func(w *mailstore.Writer) error { return w.Expunge(inbox, first) })
	if err != nil {
		t.Fatal(err)
	}
	if l := items(t, st, inbox.ID); l[mailstore.Layout256] != 40 || l[mailstore.Layout16] != 0 {
		t.Fatalf("a Layout256 mailbox's items after an APPEND and an EXPUNGE: %d in Layout256, %d in Layout16; want 40 and 0", l[mailstore.Layout256], l[mailstore.Layout16])
	}

	// A commit from elsewhere (an earlier version's node) puts a
	// message in mailstore.Layout256 into a mailstore.Layout16 mailbox.
	sn, err := st.Snapshot("")
	if err != nil {
		t.Fatal(err)
	}
	src := inbox.Messages()[2]
	_, err = st.Update(ctx, store.CommitOptions{Message: "from an earlier version"}, func(tx *store.Tx) error {
		for _, ext := range []string{"eml", "meta"} {
			e, err := sn.Stat(mailstore.LayoutPath(mailstore.Layout256, "alice", inbox.ID, src.Key, ext))
			if err != nil {
				return err
			}
			if err := tx.PutHash(mailstore.LayoutPath(mailstore.Layout256, "alice", archive.ID, src.Key, ext), e.Hash); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); len(archive.Messages()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the Layout256 message that a commit put in a Layout16 mailbox did not reach the index in a minute")
		}
	}
	if got := state(t, ms, archive); !strings.HasSuffix(got, "hello 4|") {
		t.Fatalf("archive: got %s, want message 4", got)
	}
	appendTo(ms, archive, 30)
	if l := items(t, st, archive.ID); l[mailstore.Layout256] != 2 || l[mailstore.Layout16] != 2 {
		t.Fatalf("archive's items: %d in Layout256, %d in Layout16; want 2 and 2", l[mailstore.Layout256], l[mailstore.Layout16])
	}

	// Relayout: nothing while ok says no; then every item in mailstore.Layout16,
	// and nothing a session sees changed, also after a reload.
	wantInbox, wantArchive := state(t, ms, inbox), state(t, ms, archive)
	if n, err := ms.Relayout(ctx, "alice", func() bool { return false }); n != 0 || err != nil {
		t.Fatalf("Relayout with ok false: %d, %v; want 0, nil", n, err)
	}
	n, err := ms.Relayout(ctx, "alice", func() bool { return true })
	if err != nil || n != 21 {
		t.Fatalf("Relayout: %d, %v; want 21 (20 in INBOX, 1 in Archive), nil", n, err)
	}
	for _, mb := range []*mailstore.Mailbox{inbox, archive} {
		if l := items(t, st, mb.ID); l[mailstore.Layout256] != 0 {
			t.Fatalf("%s after Relayout: %d items in Layout256", mb.Name(), l[mailstore.Layout256])
		}
		if mb.Layout() != mailstore.Layout16 {
			t.Fatalf("%s after Relayout: layout %d", mb.Name(), mb.Layout())
		}
	}
	if got := state(t, ms, inbox); got != wantInbox {
		t.Fatalf("INBOX after Relayout:\n got %s\nwant %s", got, wantInbox)
	}
	appendTo(ms, inbox, 40)
	wantInbox = state(t, ms, inbox)
	ms.Close()
	ms, err = mailstore.Open(st, mailstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ = ms.User(ctx, "alice")
	inbox, _ = u.Mailbox("INBOX")
	archive, _ = u.Mailbox("Archive")
	if got := state(t, ms, inbox); got != wantInbox {
		t.Fatalf("INBOX reloaded after Relayout:\n got %s\nwant %s", got, wantInbox)
	}
	if got := state(t, ms, archive); got != wantArchive {
		t.Fatalf("Archive reloaded after Relayout:\n got %s\nwant %s", got, wantArchive)
	}
	if l := items(t, st, inbox.ID); l[mailstore.Layout16] != 42 {
		t.Fatalf("INBOX's items after Relayout and an APPEND: %v", l)
	}
}
