package mailstore

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// TestModSeq: APPEND, flag changes (clearing included) and EXPUNGE each
// raise HIGHESTMODSEQ; a flag change raises only its messages' MODSEQ; all
// of it survives a restart; and values keep rising when the clock goes back.
func TestModSeq(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	if h := inbox.HighestModSeq(); h != 1 {
		t.Fatalf("empty mailbox: HIGHESTMODSEQ %d, want 1", h)
	}
	var msgs []*Message
	var last uint64
	for i := 0; i < 4; i++ {
		var flags []imap.Flag
		if i == 3 {
			flags = []imap.Flag{imap.FlagSeen}
		}
		if err := ms.Update(ctx, "alice", "a", func(w *Writer) error {
			_, err := w.Append(inbox, testMsg(i), flags, time.Time{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		m := inbox.msgs[len(inbox.msgs)-1]
		msgs = append(msgs, m)
		if n := inbox.ModSeq(m); n <= last || inbox.HighestModSeq() != n {
			t.Fatalf("append %d: MODSEQ %d after %d, HIGHESTMODSEQ %d", i, n, last, inbox.HighestModSeq())
		}
		last = inbox.ModSeq(m)
	}
	setFlags := func(m *Message, flags ...imap.Flag) {
		t.Helper()
		if err := ms.Update(ctx, "alice", "f", func(w *Writer) error { return w.SetFlags(inbox, m, flags, nil) }); err != nil {
			t.Fatal(err)
		}
	}
	before := inbox.ModSeq(msgs[1])
	setFlags(msgs[0], imap.FlagFlagged)
	if n := inbox.ModSeq(msgs[0]); n <= last || inbox.HighestModSeq() != n || inbox.ModSeq(msgs[1]) != before {
		t.Fatalf("flag change: MODSEQ %d (was below %d), HIGHESTMODSEQ %d, other message %d (was %d)",
			n, last, inbox.HighestModSeq(), inbox.ModSeq(msgs[1]), before)
	}
	setFlags(msgs[3]) // cleared: the MODSEQ must stay without flags
	cleared := inbox.ModSeq(msgs[3])
	if cleared <= inbox.ModSeq(msgs[0]) {
		t.Fatalf("clearing flags: MODSEQ %d not above %d", cleared, inbox.ModSeq(msgs[0]))
	}
	// The clock goes back an hour: values still rise.
	clock = func() time.Time { return time.Now().Add(-time.Hour) }
	defer func() { clock = time.Now }()
	setFlags(msgs[2], imap.FlagAnswered)
	if n := inbox.ModSeq(msgs[2]); n != cleared+1 {
		t.Fatalf("clock behind: MODSEQ %d, want %d", n, cleared+1)
	}
	clock = time.Now
	if err := ms.Update(ctx, "alice", "x", func(w *Writer) error { return w.Expunge(inbox, msgs[2]) }); err != nil {
		t.Fatal(err)
	}
	high := inbox.HighestModSeq()
	if high <= cleared+1 {
		t.Fatalf("expunge: HIGHESTMODSEQ %d, not above %d", high, cleared+1)
	}
	want := map[imap.UID]uint64{}
	for _, m := range []*Message{msgs[0], msgs[1], msgs[3]} {
		want[m.UID] = inbox.ModSeq(m)
	}

	// Restart.
	ms2, err := Open(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ms2.Close()
	u2, _ := ms2.User(ctx, "alice")
	in2, _ := u2.Mailbox("INBOX")
	if h := in2.HighestModSeq(); h != high {
		t.Errorf("after restart: HIGHESTMODSEQ %d, want %d", h, high)
	}
	for _, m := range in2.msgs {
		if got := in2.ModSeq(m); got != want[m.UID] {
			t.Errorf("after restart: MODSEQ of UID %d is %d, want %d", m.UID, got, want[m.UID])
		}
	}
	// A change after the restart goes above.
	if err := ms2.Update(ctx, "alice", "f", func(w *Writer) error { return w.SetFlags(in2, in2.msgs[1], []imap.Flag{"$x"}, nil) }); err != nil {
		t.Fatal(err)
	}
	if n := in2.ModSeq(in2.msgs[1]); n <= high {
		t.Errorf("after restart: new MODSEQ %d not above %d", n, high)
	}
	// The other index follows that commit, MODSEQ included.
	deadline := time.Now().Add(time.Minute) // only a hung watch fails it
	for inbox.ModSeq(msgs[1]) != in2.ModSeq(in2.msgs[1]) {
		if time.Now().After(deadline) {
			t.Fatalf("following a commit: MODSEQ %d, want %d", inbox.ModSeq(msgs[1]), in2.ModSeq(in2.msgs[1]))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if inbox.HighestModSeq() != in2.HighestModSeq() {
		t.Errorf("following a commit: HIGHESTMODSEQ %d, want %d", inbox.HighestModSeq(), in2.HighestModSeq())
	}
}

func TestChunkModSeqFormat(t *testing.T) {
	in := []chunkLine{{2, "b", 7, nil, nil}, {1, "a", 5, []imap.Flag{`\Seen`}, nil}, {3, "c", 0, []imap.Flag{"$x"}, nil}, {4, "d", 0, nil, nil}}
	data := formatChunk(in)
	if string(data) != "1 a %5 \\Seen\n2 b %7\n3 c $x\n" {
		t.Fatalf("format: got %q", data)
	}
	got := parseChunk(data)
	if len(got) != 3 || got[0].modseq != 5 || len(got[0].flags) != 1 || got[1].modseq != 7 || len(got[1].flags) != 0 || got[2].modseq != 0 {
		t.Fatalf("parse: got %+v", got)
	}
}

// TestMergeModSeq: a merged line that differs from a side's gets a fresh
// MODSEQ above every value in the chunk, even with the clock behind; one
// both sides agree on keeps the higher; a message expunged on a side loses
// its line.
func TestMergeModSeq(t *testing.T) {
	future := uint64(time.Now().Add(time.Hour).UnixMicro())
	base := []byte("1 a %10 \\Seen\n2 b %11 \\Seen\n3 c %12 \\Seen\n")
	ours := []byte("1 a %20 \\Seen \\Flagged\n2 b %21 \\Seen $x\n3 c %12 \\Seen\n")
	theirs := []byte("1 a %30 \\Seen\n2 b %" + itoa(future) + " \\Seen $x\n")
	got := parseChunk(mergeChunk(base, ours, theirs))
	if len(got) != 2 {
		t.Fatalf("merged: got %+v, want 2 lines (3 was expunged on theirs)", got)
	}
	if got[0].modseq <= future {
		t.Errorf("line changed by the merge: MODSEQ %d, want above %d", got[0].modseq, future)
	}
	if got[1].modseq != future {
		t.Errorf("line both sides agree on: MODSEQ %d, want %d", got[1].modseq, future)
	}
}

func itoa(n uint64) string {
	var b []byte
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// TestReplicaMergeModSeq: after two replicas change one message's flags
// differently and merge, the message's MODSEQ is above both replicas'
// HIGHESTMODSEQ, in the running index and in a fresh one.
func TestReplicaMergeModSeq(t *testing.T) {
	ctx := context.Background()
	stA, msA := newStore(t)
	stA.SetMergeFunc(Prefix+"/", Merge)
	u, _ := msA.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	msA.Update(ctx, "alice", "a", func(w *Writer) error {
		_, err := w.Append(inbox, testMsg(0), []imap.Flag{imap.FlagSeen}, time.Time{})
		return err
	})
	first := inbox.msgs[0]
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
	msA.Update(ctx, "alice", "a", func(w *Writer) error { return w.SetFlags(inbox, first, []imap.Flag{imap.FlagSeen, "$a"}, nil) })
	msB.Update(ctx, "alice", "b", func(w *Writer) error { return w.SetFlags(inB, firstB, []imap.Flag{imap.FlagSeen, "$b"}, nil) })
	high := max(inbox.HighestModSeq(), inB.HighestModSeq())
	if _, err := stA.Pull(ctx, store.Remote{URL: stB.Path()}, store.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute) // only a hung watch fails it
	for len(inbox.Flags(first)) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after the merge: flags %v", inbox.Flags(first))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := inbox.ModSeq(first); n <= high || inbox.HighestModSeq() < n {
		t.Errorf("running index: MODSEQ %d, HIGHESTMODSEQ %d; want above %d", n, inbox.HighestModSeq(), high)
	}
	ms2, _ := Open(stA, Options{})
	defer ms2.Close()
	u2, _ := ms2.User(ctx, "alice")
	in2, _ := u2.Mailbox("INBOX")
	if n := in2.ModSeq(in2.msgs[0]); n != inbox.ModSeq(first) || in2.HighestModSeq() != inbox.HighestModSeq() {
		t.Errorf("fresh index: MODSEQ %d, HIGHESTMODSEQ %d; want %d, %d", n, in2.HighestModSeq(), inbox.ModSeq(first), inbox.HighestModSeq())
	}
}

// TestWriterModSeq: inside one group commit, a later update sees an
// earlier one's flags and MODSEQ (what STORE UNCHANGEDSINCE checks), and
// Items reports MODSEQs.
func TestWriterModSeq(t *testing.T) {
	ctx := context.Background()
	_, ms := newStore(t)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	if err := ms.Update(ctx, "alice", "a", func(w *Writer) error {
		_, err := w.Append(inbox, testMsg(1), nil, time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	m := inbox.msgs[0]
	old := inbox.ModSeq(m)
	var seen, seenFlags string
	if err := ms.Update(ctx, "alice", "f", func(w *Writer) error {
		if w.ModSeq(inbox, m) != old || len(w.Flags(inbox, m)) != 0 {
			t.Errorf("before the change: MODSEQ %d, flags %v", w.ModSeq(inbox, m), w.Flags(inbox, m))
		}
		if err := w.SetFlags(inbox, m, []imap.Flag{imap.FlagSeen}, nil); err != nil {
			return err
		}
		seen = itoa(w.ModSeq(inbox, m))
		seenFlags = fmt.Sprint(w.Flags(inbox, m))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seen != itoa(inbox.ModSeq(m)) || seen == itoa(old) || seenFlags != `[\Seen]` {
		t.Errorf("in the commit: MODSEQ %s, flags %s; after it %d (before %d)", seen, seenFlags, inbox.ModSeq(m), old)
	}
	v, _ := inbox.Open(true)
	defer v.Close()
	if its := v.Items(nil); len(its) != 1 || its[0].ModSeq != inbox.ModSeq(m) {
		t.Errorf("Items: got %+v, want MODSEQ %d", its, inbox.ModSeq(m))
	}
}

// TestVanished: expunged UIDs are kept with the MODSEQ of their expunge
// (ranges within a commit), across a restart and a merge, and the oldest
// are forgotten beyond maxVanished.
func TestVanished(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	for i := 0; i < 5; i++ {
		if err := ms.Update(ctx, "alice", "a", func(w *Writer) error {
			_, err := w.Append(inbox, testMsg(i), nil, time.Time{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	msgs := append([]*Message(nil), inbox.msgs...)
	before := inbox.HighestModSeq()
	expunge := func(ms2 ...*Message) {
		t.Helper()
		if err := ms.Update(ctx, "alice", "x", func(w *Writer) error {
			for _, m := range ms2 {
				if err := w.Expunge(inbox, m); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	expunge(msgs[1], msgs[2])
	mid := inbox.HighestModSeq()
	expunge(msgs[4])
	check := func(mb *Mailbox, since uint64, want string) {
		t.Helper()
		got, complete := mb.VanishedSince(since)
		if got.String() != want || !complete {
			t.Errorf("VanishedSince(%d): %v (complete %v), want %s", since, got, complete, want)
		}
	}
	check(inbox, before, "2:3,5")
	check(inbox, mid, "5")
	check(inbox, inbox.HighestModSeq(), "")
	if n := len(inbox.Info().Vanished); n != 2 {
		t.Errorf("ranges: %d, want 2 (one per commit)", n)
	}
	ms2, err := Open(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ms2.Close()
	u2, _ := ms2.User(ctx, "alice")
	in2, _ := u2.Mailbox("INBOX")
	check(in2, before, "2:3,5")

	// The oldest are forgotten.
	var i MailboxInfo
	for k := 1; k <= maxVanished+10; k++ {
		i.addVanished(imap.UID(2*k), uint64(k))
	}
	if len(i.Vanished) != maxVanished || i.VanishedFloor != 10 || i.Vanished[0].Lo != 22 {
		t.Errorf("bounded: %d ranges, floor %d, first %+v", len(i.Vanished), i.VanishedFloor, i.Vanished[0])
	}
	// A merge keeps both sides'.
	got, err := Merge("mail/a/b/mailbox.json", []byte(`{"name":"INBOX","uidnext":5}`),
		[]byte(`{"name":"INBOX","uidnext":5,"vanished":[{"lo":1,"hi":1,"modseq":7}]}`),
		[]byte(`{"name":"INBOX","uidnext":5,"vanished":[{"lo":3,"hi":4,"modseq":5}]}`))
	var mi MailboxInfo
	if err != nil || json.Unmarshal(got, &mi) != nil || len(mi.Vanished) != 2 || mi.Vanished[0].Lo != 3 || mi.Vanished[1].Lo != 1 {
		t.Errorf("merge: %s, %v", got, err)
	}
}

// TestOpenTracked: a tracked view hands out the UIDs of the expunges queued
// on its queue, in order; an untracked one keeps none.
func TestOpenTracked(t *testing.T) {
	ctx := context.Background()
	_, ms := newStore(t)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	for i := 0; i < 4; i++ {
		if err := ms.Update(ctx, "alice", "a", func(w *Writer) error {
			_, err := w.Append(inbox, testMsg(i), nil, time.Time{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	tv, _ := inbox.OpenTracked(true)
	defer tv.Close()
	pv, _ := inbox.Open(true)
	defer pv.Close()
	msgs := append([]*Message(nil), inbox.msgs...)
	if err := ms.Update(ctx, "alice", "x", func(w *Writer) error {
		for _, m := range []*Message{msgs[2], msgs[0]} {
			if err := w.Expunge(inbox, m); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var got []imap.UID
	for {
		uid, ok := tv.PopExpunged()
		if !ok {
			break
		}
		got = append(got, uid)
	}
	if fmt.Sprint(got) != "[3 1]" {
		t.Errorf("tracked: %v, want [3 1] (expunge order)", got)
	}
	if _, ok := pv.PopExpunged(); ok {
		t.Errorf("untracked view: got an expunged UID")
	}
}
