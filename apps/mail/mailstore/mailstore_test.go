package mailstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

func newStore(t testing.TB) (*store.Store, *Store) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(context.Background(), "alice", "password1", store.GitNone); err != nil {
		t.Fatal(err)
	}
	ms, err := Open(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close(); st.Close() })
	return st, ms
}

func testMsg(i int) []byte {
	return []byte(fmt.Sprintf("From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: hello %d\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <%d@example.org>\r\n\r\nbody %d\r\n", i, i, i))
}

func TestAppendFlagsExpungeReload(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, err := ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mb := range u.Mailboxes() {
		names = append(names, mb.Name())
	}
	if got, want := fmt.Sprint(names), "[Archive Drafts INBOX Junk Sent Trash]"; got != want {
		t.Fatalf("mailboxes: got %s, want %s", got, want)
	}
	inbox, _ := u.Mailbox("inbox")
	for i := 1; i <= 5; i++ {
		var uid imap.UID
		err := ms.Update(ctx, "alice", "append", func(w *Writer) error {
			var err error
			uid, err = w.Append(inbox, testMsg(i), []imap.Flag{"\\seen"}, time.Time{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if uid != imap.UID(i) {
			t.Fatalf("uid: got %d, want %d", uid, i)
		}
	}
	v, si := inbox.Open(false)
	defer v.Close()
	if si.NumMessages != 5 || si.NumRecent != 5 || si.Info.UIDNext != 6 {
		t.Fatalf("select: got %+v", si)
	}
	items := v.Items(imap.UIDSetNum(2, 4))
	if len(items) != 2 || items[0].Msg.Summary().Envelope.Subject != "hello 2" {
		t.Fatalf("items: got %+v", items)
	}
	err = ms.Update(ctx, "alice", "expunge", func(w *Writer) error {
		if err := w.SetFlags(inbox, items[1].Msg, []imap.Flag{imap.FlagFlagged}, nil); err != nil {
			return err
		}
		return w.Expunge(inbox, items[0].Msg)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A fresh index from the store must agree.
	ms2, err := Open(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ms2.Close()
	u2, err := ms2.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	in2, _ := u2.Mailbox("INBOX")
	v2, si2 := in2.Open(true)
	defer v2.Close()
	if si2.NumMessages != 4 || si2.Info.UIDNext != 6 || si2.Info.UIDValidity != si.Info.UIDValidity {
		t.Fatalf("reloaded: got %+v", si2)
	}
	its := v2.Items(nil)
	var uids []imap.UID
	for _, it := range its {
		uids = append(uids, it.Msg.UID)
	}
	if fmt.Sprint(uids) != "[1 3 4 5]" {
		t.Fatalf("uids: got %v", uids)
	}
	if fmt.Sprint(its[2].Flags) != `[\Flagged]` {
		t.Fatalf("flags of 4: got %v", its[2].Flags)
	}
	raw, err := ms2.ReadRaw(in2, its[0].Msg)
	if err != nil || string(raw) != string(testMsg(1)) {
		t.Fatalf("raw: got %q, %v", raw, err)
	}
	_ = filepath.Join
}

// TestExternalCommit: a commit made outside the mailstore (here a second
// mailstore on the same store, as a git push would be) reaches the index.
func TestExternalCommit(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	v, _ := inbox.Open(false)
	defer v.Close()
	ms2, _ := Open(st, Options{})
	defer ms2.Close()
	u2, _ := ms2.User(ctx, "alice")
	in2, _ := u2.Mailbox("INBOX")
	if err := ms2.Update(ctx, "alice", "append", func(w *Writer) error {
		_, err := w.Append(in2, testMsg(1), nil, time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute) // only a hung watch fails it
	for len(v.Items(nil)) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the external append never reached the index")
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkReadByBlob(t, ms, inbox, "followed")
}

// TestReadByBlob: every way a message reaches the index (its APPEND, a
// fresh load) records its blob's hash, and bodies read by it match what
// was appended, from loose objects and from a pack.
func TestReadByBlob(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	for i := 1; i <= 3; i++ {
		if err := ms.Update(ctx, "alice", "append", func(w *Writer) error {
			_, err := w.Append(inbox, testMsg(i), nil, time.Time{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	checkReadByBlob(t, ms, inbox, "appended")
	if _, err := st.GC(ctx); err != nil {
		t.Fatal(err)
	}
	ms2, _ := Open(st, Options{})
	defer ms2.Close()
	u2, _ := ms2.User(ctx, "alice")
	in2, _ := u2.Mailbox("INBOX")
	checkReadByBlob(t, ms2, in2, "loaded")
}

func checkReadByBlob(t *testing.T, ms *Store, mb *Mailbox, how string) {
	t.Helper()
	ms.cache = newRawCache(-1)
	v, _ := mb.Open(true)
	defer v.Close()
	for i, it := range v.Items(nil) {
		if it.Msg.blob.IsZero() {
			t.Errorf("%s: message %d has no blob hash", how, it.Msg.UID)
		}
		raw, err := ms.ReadRaw(mb, it.Msg)
		if want := testMsg(i + 1); err != nil || string(raw) != string(want) {
			t.Errorf("%s: message %d: got %q, %v; want %q", how, it.Msg.UID, raw, err, want)
		}
	}
}

// TestGroupCommit: concurrent appends all get distinct UIDs, in fewer
// commits than appends, and one failing update fails alone.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	before, _ := st.Log(store.LogOptions{})
	const n = 40
	var wg sync.WaitGroup
	uids := make([]imap.UID, n) // fn may run twice: it sets results only
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := ms.Update(ctx, "alice", fmt.Sprint("append ", i), func(w *Writer) error {
				if i == 7 {
					return errors.New("refused")
				}
				var err error
				uids[i], err = w.Append(inbox, testMsg(i), nil, time.Time{})
				return err
			})
			if err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	if len(errs) != 1 {
		t.Errorf("got %d failures, want 1", len(errs))
	}
	v, si := inbox.Open(true)
	defer v.Close()
	if si.NumMessages != n-1 {
		t.Errorf("got %d messages, want %d", si.NumMessages, n-1)
	}
	seen := map[imap.UID]bool{}
	for _, it := range v.Items(nil) {
		if seen[it.Msg.UID] {
			t.Errorf("UID %d twice", it.Msg.UID)
		}
		seen[it.Msg.UID] = true
	}
	for i, uid := range uids {
		if i != 7 && !seen[uid] {
			t.Errorf("append %d was told UID %d, which is not in the mailbox", i, uid)
		}
	}
	after, _ := st.Log(store.LogOptions{})
	t.Logf("%d appends in %d commits", n-1, len(after)-len(before))
	// A fresh index agrees.
	ms2, _ := Open(st, Options{})
	defer ms2.Close()
	u2, _ := ms2.User(ctx, "alice")
	in2, _ := u2.Mailbox("INBOX")
	if got := in2.Stats().Messages; got != n-1 {
		t.Errorf("reloaded: %d messages, want %d", got, n-1)
	}
}

// TestRecentAcrossRestart: \Recent survives a restart of the mailstore:
// messages no read-write session has seen are \Recent to the first one
// after it, and messages that one had are \Recent to nobody after it,
// whether it took them at SELECT or as they arrived.
func TestRecentAcrossRestart(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	reopen := func() *Mailbox {
		t.Helper()
		ms.Close()
		var err error
		if ms, err = Open(st, Options{}); err != nil {
			t.Fatal(err)
		}
		u, err := ms.User(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		mb, _ := u.Mailbox("INBOX")
		return mb
	}
	add := func(mb *Mailbox, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if err := ms.Update(ctx, "alice", "append", func(w *Writer) error {
				_, err := w.Append(mb, testMsg(i), nil, time.Time{})
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// recent selects mb (or examines it), and closes the view unless
	// keep is set.
	recent := func(mb *Mailbox, readOnly, keep bool) uint32 {
		v, si := mb.Open(readOnly)
		if !keep {
			v.Close()
		}
		return si.NumRecent
	}
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	add(inbox, 2)
	inbox = reopen()
	if n := recent(inbox, true, false); n != 0 {
		t.Errorf("EXAMINE after a restart: %d recent, want 0 (EXAMINE does not take them)", n)
	}
	if n := recent(inbox, false, false); n != 2 {
		t.Errorf("first SELECT after a restart: %d recent, want 2", n)
	}
	inbox = reopen()
	if n := recent(inbox, false, true); n != 0 {
		t.Errorf("SELECT after the one that took them and a restart: %d recent, want 0", n)
	}
	add(inbox, 1) // arrives while selected: that session's \Recent
	if got := inbox.Stats().Recent; got != 0 {
		t.Errorf("after a live delivery: %d messages nobody took, want 0", got)
	}
	inbox = reopen()
	if n := recent(inbox, false, false); n != 0 {
		t.Errorf("after a live delivery and a restart: %d recent, want 0", n)
	}
	add(inbox, 3)
	inbox = reopen()
	if n := recent(inbox, false, false); n != 3 {
		t.Errorf("after 3 deliveries and a restart: %d recent, want 3", n)
	}
	ms.Close()
}
