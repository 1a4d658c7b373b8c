package mailstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// The IMAP invariants across replicas (see the package doc, "Replicas"),
// each checked on two nodes that merge through the store's own merge
// (Pull, with Merge registered), as package replica makes them merge.

// node is one replica in these tests: its store and its mail.
type node struct {
	st *store.Store
	ms *Store
}

// replicaPair makes node a (user alice, the messages given appended to
// INBOX) and node b, a clone of a, each with its own data directory.
func replicaPair(t *testing.T, msgs ...int) (a, b *node) {
	t.Helper()
	ctx := context.Background()
	stA, msA := newStore(t)
	stA.SetMergeFunc(Prefix+"/", Merge)
	a = &node{stA, msA}
	for _, i := range msgs {
		a.append(t, "INBOX", i)
	}
	stB, err := store.Clone(ctx, store.Remote{URL: stA.Path()}, filepath.Join(t.TempDir(), "repo"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stB.SetMergeFunc(Prefix+"/", Merge)
	msB, err := Open(stB, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { msB.Close(); stB.Close() })
	return a, &node{stB, msB}
}

func (n *node) box(t *testing.T, name string) *Mailbox {
	t.Helper()
	u, err := n.ms.User(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := u.Mailbox(name)
	if err != nil {
		t.Fatal(err)
	}
	return mb
}

func (n *node) update(t *testing.T, fn func(w *Writer) error) {
	t.Helper()
	if err := n.ms.Update(context.Background(), "alice", "test", fn); err != nil {
		t.Fatal(err)
	}
}

func (n *node) append(t *testing.T, box string, i int) imap.UID {
	t.Helper()
	mb := n.box(t, box)
	var uid imap.UID
	n.update(t, func(w *Writer) error {
		var err error
		uid, err = w.Append(mb, testMsg(i), nil, time.Time{})
		return err
	})
	return uid
}

// msg finds message i (testMsg(i)) in mailbox box.
func (n *node) msg(t *testing.T, box string, i int) *Message {
	t.Helper()
	mb := n.box(t, box)
	want := fmt.Sprintf("<%d@example.org>", i)
	for _, m := range mb.Messages() {
		if s := m.Summary(); s != nil && s.Envelope != nil && "<"+s.Envelope.MessageID+">" == want {
			return m
		}
	}
	return nil
}

// view is "UID:i" of each message of box, in UID order.
func (n *node) view(t *testing.T, box string) string {
	t.Helper()
	var out []string
	for _, m := range n.box(t, box).Messages() {
		var i int
		fmt.Sscanf(strings.Trim(m.Summary().Envelope.MessageID, "<>"), "%d@", &i)
		out = append(out, fmt.Sprintf("%d:%d", m.UID, i))
	}
	return strings.Join(out, " ")
}

// merge has each node pull the other's head (a, then b), as replicas do.
func merge(t *testing.T, a, b *node) {
	t.Helper()
	ctx := context.Background()
	if _, err := a.st.Pull(ctx, store.Remote{URL: b.st.Path()}, store.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.st.Pull(ctx, store.Remote{URL: a.st.Path()}, store.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitView waits (a bound only a hung index reaches) until the index of
// n shows box as want.
func waitView(t *testing.T, n *node, box, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := n.view(t, box)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %q, want %q", box, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReplicaUIDs: UIDs are each node's own. A clone gives the messages it
// got UIDs of its own under a UIDVALIDITY of its own; messages appended on
// two nodes apart get, on each, UIDs above every UID it had, in the order
// it learns of them; a merge changes no UID a node gave and not its
// UIDVALIDITY; an expunged UID is never given again; all of it survives a
// restart.
func TestReplicaUIDs(t *testing.T) {
	a, b := replicaPair(t, 0)
	uvA, uvB := a.box(t, "INBOX").Info().UIDValidity, b.box(t, "INBOX").Info().UIDValidity
	if uvA == uvB {
		t.Errorf("the clone has the UIDVALIDITY of the node it was cloned from (%d)", uvA)
	}
	waitView(t, b, "INBOX", "1:0")
	a.append(t, "INBOX", 1)
	a.append(t, "INBOX", 2)
	b.append(t, "INBOX", 3)
	b.append(t, "INBOX", 4)
	merge(t, a, b)
	waitView(t, a, "INBOX", "1:0 2:1 3:2 4:3 5:4")
	waitView(t, b, "INBOX", "1:0 2:3 3:4 4:1 5:2")
	for _, n := range []*node{a, b} {
		i := n.box(t, "INBOX").Info()
		if i.UIDNext != 6 {
			t.Errorf("UIDNEXT %d, want 6", i.UIDNext)
		}
	}
	if uv := a.box(t, "INBOX").Info().UIDValidity; uv != uvA {
		t.Errorf("a: UIDVALIDITY %d after the merge, was %d", uv, uvA)
	}
	if uv := b.box(t, "INBOX").Info().UIDValidity; uv != uvB {
		t.Errorf("b: UIDVALIDITY %d after the merge, was %d", uv, uvB)
	}

	// An expunge on a: message 1 is UID 2 there, UID 4 on b; neither UID
	// names another message afterwards.
	inA := a.box(t, "INBOX")
	m1 := a.msg(t, "INBOX", 1)
	a.update(t, func(w *Writer) error { return w.Expunge(inA, m1) })
	a.append(t, "INBOX", 5)
	merge(t, a, b)
	waitView(t, a, "INBOX", "1:0 3:2 4:3 5:4 6:5")
	waitView(t, b, "INBOX", "1:0 2:3 3:4 5:2 6:5")
	if gone, _ := b.box(t, "INBOX").VanishedSince(0); !gone.Contains(4) {
		t.Errorf("b: VANISHED %v, want UID 4 in it", gone)
	}
	b.append(t, "INBOX", 6)
	waitView(t, b, "INBOX", "1:0 2:3 3:4 5:2 6:5 7:6")

	// A restart (a new index over the same store and node files) gives
	// every message the UID it had, under the same UIDVALIDITY.
	for name, n := range map[string]*node{"a": a, "b": b} {
		want := n.view(t, "INBOX")
		before := n.box(t, "INBOX").Info()
		n.ms.Close()
		ms, err := Open(n.st, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ms.Close() })
		n.ms = ms
		if got := n.view(t, "INBOX"); got != want {
			t.Errorf("%s after a restart: %q, want %q", name, got, want)
		}
		if got := n.box(t, "INBOX").Info(); got.UIDValidity != before.UIDValidity || got.UIDNext != before.UIDNext {
			t.Errorf("%s after a restart: UIDVALIDITY %d, UIDNEXT %d; was %d, %d", name, got.UIDValidity, got.UIDNext, before.UIDValidity, before.UIDNext)
		}
	}
	// And a UID expunged before the restart is not given again.
	b.append(t, "INBOX", 7)
	waitView(t, b, "INBOX", "1:0 2:3 3:4 5:2 6:5 7:6 8:7")
}

// TestReplicaFlags: flag changes merge per flag, whichever node made them,
// on a message appended on either node.
func TestReplicaFlags(t *testing.T) {
	a, b := replicaPair(t, 0)
	inA := a.box(t, "INBOX")
	m0 := a.msg(t, "INBOX", 0)
	a.update(t, func(w *Writer) error {
		return w.SetFlags(inA, m0, []imap.Flag{imap.FlagSeen, "$x"}, nil)
	})
	b.append(t, "INBOX", 1)
	merge(t, a, b)
	waitView(t, a, "INBOX", "1:0 2:1")
	waitView(t, b, "INBOX", "1:0 2:1")
	wait := func(n *node, i int, want string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			m := n.msg(t, "INBOX", i)
			got := fmt.Sprint(n.box(t, "INBOX").Flags(m))
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %d: flags %s, want %s", i, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait(b, 0, `[$x \Seen]`)
	// Apart: a drops $x and adds $a; b drops \Seen and adds $b, on
	// message 0; on message 1 (b's), each adds one.
	inB := b.box(t, "INBOX")
	a.update(t, func(w *Writer) error {
		m1 := a.msg(t, "INBOX", 1)
		if err := w.SetFlags(inA, m1, []imap.Flag{"$fromA"}, nil); err != nil {
			return err
		}
		return w.SetFlags(inA, m0, []imap.Flag{imap.FlagSeen, "$a"}, nil)
	})
	b.update(t, func(w *Writer) error {
		m1 := b.msg(t, "INBOX", 1)
		if err := w.SetFlags(inB, m1, []imap.Flag{imap.FlagFlagged}, nil); err != nil {
			return err
		}
		return w.SetFlags(inB, b.msg(t, "INBOX", 0), []imap.Flag{"$x", "$b"}, nil)
	})
	merge(t, a, b)
	for _, n := range []*node{a, b} {
		wait(n, 0, `[$a $b]`)
		wait(n, 1, `[$fromA \Flagged]`)
	}
}

// TestReplicaExpungeWins: a message expunged on one node while another
// changed its flags is gone on both, and its UID is VANISHED on the other.
func TestReplicaExpungeWins(t *testing.T) {
	a, b := replicaPair(t, 0, 1)
	waitView(t, b, "INBOX", "1:0 2:1")
	inA, inB := a.box(t, "INBOX"), b.box(t, "INBOX")
	a.update(t, func(w *Writer) error { return w.Expunge(inA, a.msg(t, "INBOX", 0)) })
	b.update(t, func(w *Writer) error {
		return w.SetFlags(inB, b.msg(t, "INBOX", 0), []imap.Flag{imap.FlagFlagged}, nil)
	})
	merge(t, a, b)
	waitView(t, a, "INBOX", "2:1")
	waitView(t, b, "INBOX", "2:1")
	gone, _ := inB.VanishedSince(0)
	if !gone.Contains(1) {
		t.Errorf("b: VANISHED %v, want UID 1 in it", gone)
	}
	// The merge may leave b's line for it in the flags chunk (a merge of
	// one chunk cannot tell an expunge from no flags); the index ignores
	// it, and the next write of the chunk drops it.
	for _, n := range []*node{a, b} {
		mb := n.box(t, "INBOX")
		m1 := n.msg(t, "INBOX", 1)
		n.update(t, func(w *Writer) error { return w.SetFlags(mb, m1, []imap.Flag{"$later"}, nil) })
	}
	merge(t, a, b)
	for _, n := range []*node{a, b} {
		sn, err := n.st.Snapshot("")
		if err != nil {
			t.Fatal(err)
		}
		entries, err := sn.List(boxDir("alice", inA.ID) + "/flags")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			data, _ := sn.Read(e.Path)
			for _, l := range parseChunk(data) {
				if slices.Contains(l.flags, imap.FlagFlagged) {
					t.Errorf("%s: a flags line of the expunged message: %q", e.Path, data)
				}
			}
		}
	}
}

// TestReplicaMoveAndFlag: a MOVE on one node and a flag change of the same
// message on another give one moved message with the flag, on both.
func TestReplicaMoveAndFlag(t *testing.T) {
	a, b := replicaPair(t, 0, 1)
	waitView(t, b, "INBOX", "1:0 2:1")
	inA, arA, inB := a.box(t, "INBOX"), a.box(t, "Archive"), b.box(t, "INBOX")
	a.update(t, func(w *Writer) error {
		if err := w.SetFlags(inA, a.msg(t, "INBOX", 0), []imap.Flag{imap.FlagSeen}, nil); err != nil {
			return err
		}
		_, err := w.Move(inA, a.msg(t, "INBOX", 0), arA)
		return err
	})
	b.update(t, func(w *Writer) error {
		return w.SetFlags(inB, b.msg(t, "INBOX", 0), []imap.Flag{imap.FlagFlagged}, nil)
	})
	// The node that moved it learns of the flag at the merge and makes it
	// follow; the other learns that at the next.
	mergeUntil(t, a, b, func(n *node) string {
		in, ar := n.view(t, "INBOX"), n.view(t, "Archive")
		var flags []imap.Flag
		if m := n.msg(t, "Archive", 0); m != nil {
			flags = n.box(t, "Archive").Flags(m)
		}
		if strings.Contains(in, ":0") || !strings.HasSuffix(ar, ":0") || fmt.Sprint(flags) != `[\Flagged \Seen]` {
			return fmt.Sprintf("INBOX %q, Archive %q, flags of the moved message %v; want it in Archive only, flagged and seen", in, ar, flags)
		}
		return ""
	})
	// No stray line stays in INBOX's chunks.
	for _, n := range []*node{a, b} {
		if s := flagLines(t, n, "INBOX"); strings.Contains(s, n.msg(t, "Archive", 0).Key) {
			t.Errorf("INBOX's flags still have a line of the moved message: %q", s)
		}
	}
}

// TestReplicaCopyExpungeAndFlag: a COPY of a message and an EXPUNGE of
// the original on one node, a flag change of the original on another: the
// expunge wins, and the flag does not land on the copy (a copy is another
// message; only a MOVE carries the original's changes along).
func TestReplicaCopyExpungeAndFlag(t *testing.T) {
	a, b := replicaPair(t, 0, 1)
	waitView(t, b, "INBOX", "1:0 2:1")
	inA, arA, inB := a.box(t, "INBOX"), a.box(t, "Archive"), b.box(t, "INBOX")
	key := a.msg(t, "INBOX", 0).Key
	a.update(t, func(w *Writer) error {
		if _, err := w.Copy(inA, a.msg(t, "INBOX", 0), arA); err != nil {
			return err
		}
		return w.Expunge(inA, a.msg(t, "INBOX", 0))
	})
	b.update(t, func(w *Writer) error {
		return w.SetFlags(inB, b.msg(t, "INBOX", 0), []imap.Flag{imap.FlagFlagged}, nil)
	})
	// Until both hold one head and follow it; then a write of INBOX's
	// flags on each drops a line of the original that the merge left
	// there (TestReplicaExpungeWins), and they merge again, until no such
	// line is left (a stray line a node folds into a message elsewhere
	// goes too, at the commit that folds it in).
	converged := func(clean bool) {
		t.Helper()
		mergeUntil(t, a, b, func(n *node) string {
			ha, _ := a.st.Resolve("")
			hb, _ := b.st.Resolve("")
			in, ar := n.view(t, "INBOX"), n.view(t, "Archive")
			if ha != hb || in != "2:1" || !strings.HasSuffix(ar, ":0") || clean && strings.Contains(flagLines(t, n, "INBOX"), key) {
				return fmt.Sprintf("heads %s and %s, INBOX %q, Archive %q, INBOX's flags %q", ha, hb, in, ar, flagLines(t, n, "INBOX"))
			}
			return ""
		})
	}
	converged(false)
	for _, n := range []*node{a, b} {
		mb := n.box(t, "INBOX")
		m1 := n.msg(t, "INBOX", 1)
		n.update(t, func(w *Writer) error { return w.SetFlags(mb, m1, []imap.Flag{"$later"}, nil) })
	}
	converged(true)
	for name, n := range map[string]*node{"a": a, "b": b} {
		m := n.msg(t, "Archive", 0)
		if f := n.box(t, "Archive").Flags(m); slices.Contains(f, imap.FlagFlagged) {
			t.Errorf("%s: the copy has the flag set on the expunged original: %v", name, f)
		}
		if m.Key == key {
			t.Errorf("%s: the copy has the original's key %s", name, key)
		}
	}
}

// flagLines is the content of a mailbox's flags chunks on n's head.
func flagLines(t *testing.T, n *node, box string) string {
	t.Helper()
	sn, err := n.st.Snapshot("")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	entries, _ := sn.List(boxDir("alice", n.box(t, box).ID) + "/flags")
	for _, e := range entries {
		data, _ := sn.Read(e.Path)
		out = append(out, string(data))
	}
	return strings.Join(out, "")
}

// TestReplicaSameMessage: one message appended on two nodes apart (one
// delivery retried to both) is one message once they merge, under the UID
// each node gave it, also after a restart; appended twice on one node it is
// two messages.
func TestReplicaSameMessage(t *testing.T) {
	a, b := replicaPair(t, 0)
	waitView(t, b, "INBOX", "1:0")
	a.append(t, "INBOX", 1)
	a.append(t, "INBOX", 7)
	b.append(t, "INBOX", 7)
	b.append(t, "INBOX", 8)
	b.append(t, "INBOX", 8)
	inB := b.box(t, "INBOX")
	b.update(t, func(w *Writer) error {
		return w.SetFlags(inB, b.msg(t, "INBOX", 7), []imap.Flag{imap.FlagSeen}, nil)
	})
	merge(t, a, b)
	waitView(t, a, "INBOX", "1:0 2:1 3:7 4:8 5:8")
	waitView(t, b, "INBOX", "1:0 2:7 3:8 4:8 5:1")
	// b's flag on it stays (both records put its line in one chunk).
	deadline := time.Now().Add(time.Minute)
	for _, n := range []*node{a, b} {
		for fmt.Sprint(n.box(t, "INBOX").Flags(n.msg(t, "INBOX", 7))) != `[\Seen]` {
			if time.Now().After(deadline) {
				t.Fatalf("flags of the message appended on both: %v", n.box(t, "INBOX").Flags(n.msg(t, "INBOX", 7)))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for name, n := range map[string]*node{"a": a, "b": b} {
		want := n.view(t, "INBOX")
		n.ms.Close()
		ms, err := Open(n.st, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ms.Close() })
		n.ms = ms
		if got := n.view(t, "INBOX"); got != want {
			t.Errorf("%s after a restart: %q, want %q", name, got, want)
		}
	}
}

// mergeUntil merges a and b (merge) until check, asked of each node,
// finds nothing wrong with either ("" from both); the bound (a minute)
// only fails a hung index, with what check last said.
func mergeUntil(t *testing.T, a, b *node, check func(n *node) string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		merge(t, a, b)
		why := ""
		for name, n := range map[string]*node{"a": a, "b": b} {
			if w := check(n); w != "" {
				why = name + ": " + w
			}
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFlags waits (a bound only a hung index reaches) until message i of
// box on n has the flags want, merging a and b each round (a node that
// follows a merge may make a commit that the other must learn of).
func waitFlags(t *testing.T, a, b *node, box string, i int, want string) {
	t.Helper()
	mergeUntil(t, a, b, func(n *node) string {
		m := n.msg(t, box, i)
		if m == nil {
			return fmt.Sprintf("message %d not in %s", i, box)
		}
		if got := fmt.Sprint(n.box(t, box).Flags(m)); got != want {
			return fmt.Sprintf("message %d in %s has flags %s, want %s", i, box, got, want)
		}
		return ""
	})
}

// TestReplicaMoveAndFlagRemoved: a flag removed on one node while another
// MOVEd the message is removed from the moved message too (a removal is a
// flag change), and one added meanwhile is added.
func TestReplicaMoveAndFlagRemoved(t *testing.T) {
	a, b := replicaPair(t, 0, 1)
	inA := a.box(t, "INBOX")
	a.update(t, func(w *Writer) error {
		return w.SetFlags(inA, a.msg(t, "INBOX", 0), []imap.Flag{imap.FlagSeen, imap.FlagFlagged, "$keep"}, nil)
	})
	waitFlags(t, a, b, "INBOX", 0, `[$keep \Flagged \Seen]`)
	arA, inB := a.box(t, "Archive"), b.box(t, "INBOX")
	a.update(t, func(w *Writer) error {
		_, err := w.Move(inA, a.msg(t, "INBOX", 0), arA)
		return err
	})
	b.update(t, func(w *Writer) error {
		return w.SetFlags(inB, b.msg(t, "INBOX", 0), []imap.Flag{imap.FlagSeen, "$keep", "$new"}, nil)
	})
	waitFlags(t, a, b, "Archive", 0, `[$keep $new \Seen]`)
	for _, n := range []*node{a, b} {
		if m := n.msg(t, "INBOX", 0); m != nil {
			t.Errorf("the moved message is still in INBOX (UID %d)", m.UID)
		}
	}
	// A removal alone (nothing added) follows too, the other way round:
	// b moves it back to INBOX while a removes \Seen.
	arB := b.box(t, "Archive")
	b.update(t, func(w *Writer) error {
		_, err := w.Move(arB, b.msg(t, "Archive", 0), b.box(t, "INBOX"))
		return err
	})
	arA = a.box(t, "Archive")
	a.update(t, func(w *Writer) error {
		return w.SetFlags(arA, a.msg(t, "Archive", 0), []imap.Flag{"$keep", "$new"}, nil)
	})
	waitFlags(t, a, b, "INBOX", 0, `[$keep $new]`)
}

// TestReplicaSameMessageFarChunks: one message appended on two nodes apart
// whose home UIDs fall in different flags chunks keeps the flags set on
// each node before the merge (per flag, whichever record the merge kept).
func TestReplicaSameMessageFarChunks(t *testing.T) {
	a, b := replicaPair(t, 0)
	waitView(t, b, "INBOX", "1:0")
	// b's UIDs run 300 and up (as on a node that took many messages):
	// its UID file says so before its index loads.
	id := b.box(t, "INBOX").ID
	b.ms.Close()
	p := filepath.Join(b.st.NodeDir(), filepath.FromSlash(spaceFile("alice", id)))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "n 300\n")
	f.Close()
	ms, err := Open(b.st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	b.ms = ms
	if uid := b.append(t, "INBOX", 7); chunkOf(uid) == chunkOf(2) {
		t.Fatalf("b gave UID %d, want one in another chunk than 2", uid)
	}
	if uid := a.append(t, "INBOX", 7); uid != 2 {
		t.Fatalf("a gave UID %d, want 2", uid)
	}
	inA, inB := a.box(t, "INBOX"), b.box(t, "INBOX")
	a.update(t, func(w *Writer) error {
		return w.SetFlags(inA, a.msg(t, "INBOX", 7), []imap.Flag{imap.FlagSeen, "$a"}, nil)
	})
	b.update(t, func(w *Writer) error {
		return w.SetFlags(inB, b.msg(t, "INBOX", 7), []imap.Flag{imap.FlagFlagged, "$b"}, nil)
	})
	waitFlags(t, a, b, "INBOX", 7, `[$a $b \Flagged \Seen]`)
	// Per flag afterwards too: a removal on one node reaches the other.
	a.update(t, func(w *Writer) error {
		return w.SetFlags(inA, a.msg(t, "INBOX", 7), []imap.Flag{imap.FlagSeen, "$b"}, nil)
	})
	waitFlags(t, a, b, "INBOX", 7, `[$b \Seen]`)
	// A node whose index was not running when it merged (down, or the
	// user not loaded) folds the lines in when it loads the user.
	b.append(t, "INBOX", 8)
	a.append(t, "INBOX", 8)
	a.update(t, func(w *Writer) error {
		return w.SetFlags(inA, a.msg(t, "INBOX", 8), []imap.Flag{"$a"}, nil)
	})
	inB = b.box(t, "INBOX")
	b.update(t, func(w *Writer) error {
		return w.SetFlags(inB, b.msg(t, "INBOX", 8), []imap.Flag{"$b"}, nil)
	})
	a.ms.Close()
	b.ms.Close()
	merge(t, a, b)
	for _, n := range []*node{a, b} {
		ms, err := Open(n.st, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ms.Close() })
		n.ms = ms
	}
	waitFlags(t, a, b, "INBOX", 8, `[$a $b]`)
	// And after a restart.
	for _, n := range []*node{a, b} {
		n.ms.Close()
		ms, err := Open(n.st, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ms.Close() })
		n.ms = ms
	}
	waitFlags(t, a, b, "INBOX", 7, `[$b \Seen]`)
}

// TestReplicaVanishedAfterCrash: a merge that expunges a node's own
// message while the node's index is not following it (the node crashed
// after the merge commit, or was closed) still gives that UID in VANISHED
// after the restart, and the UID is never given again.
func TestReplicaVanishedAfterCrash(t *testing.T) {
	a, b := replicaPair(t, 0, 1, 2, 3)
	waitView(t, b, "INBOX", "1:0 2:1 3:2 4:3")
	reopen := func(n *node) {
		ms, err := Open(n.st, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ms.Close() })
		n.ms = ms
	}
	inB := b.box(t, "INBOX")
	if got := a.view(t, "INBOX"); got != "1:0 2:1 3:2 4:3" {
		t.Fatalf("a: %q", got)
	}
	// 1. a crashes: its index stops following before b's expunge of
	// a's messages 3 (UID 4, the highest) and 1 (UID 2) merges.
	a.ms.cancel()
	<-a.ms.done
	b.update(t, func(w *Writer) error {
		if err := w.Expunge(inB, b.msg(t, "INBOX", 3)); err != nil {
			return err
		}
		return w.Expunge(inB, b.msg(t, "INBOX", 1))
	})
	merge(t, a, b)
	modseq := a.box(t, "INBOX").Info().HighestModSeq
	reopen(a) // (the crashed index is dropped, not closed)
	waitView(t, a, "INBOX", "1:0 3:2")
	if gone, _ := a.box(t, "INBOX").VanishedSince(modseq); !gone.Contains(2) || !gone.Contains(4) {
		t.Errorf("a after the crash: VANISHED (EARLIER) since %d is %v, want UIDs 2 and 4 in it", modseq, gone)
	}
	if uid := a.append(t, "INBOX", 4); uid <= 4 {
		t.Errorf("a after the crash gave UID %d to a new message, want above 4", uid)
	}
	// 2. a is closed (cleanly) and b expunges another of a's messages
	// meanwhile.
	modseq = a.box(t, "INBOX").Info().HighestModSeq
	a.ms.Close()
	b.update(t, func(w *Writer) error { return w.Expunge(inB, b.msg(t, "INBOX", 2)) })
	merge(t, a, b)
	reopen(a)
	if gone, _ := a.box(t, "INBOX").VanishedSince(modseq); !gone.Contains(3) {
		t.Errorf("a after a restart: VANISHED (EARLIER) since %d is %v, want UID 3 in it", modseq, gone)
	}
	// 3. A clean restart with nothing changed meanwhile reports nothing
	// new.
	modseq = a.box(t, "INBOX").Info().HighestModSeq
	want := a.view(t, "INBOX")
	a.ms.Close()
	reopen(a)
	if got := a.view(t, "INBOX"); got != want {
		t.Errorf("a after a clean restart: %q, want %q", got, want)
	}
	if gone, _ := a.box(t, "INBOX").VanishedSince(modseq); len(gone) != 0 {
		t.Errorf("a after a clean restart: VANISHED (EARLIER) since %d is %v, want none", modseq, gone)
	}
}

func TestVanishedGaps(t *testing.T) {
	for _, c := range []struct {
		live []imap.UID
		van  []VanishedRange
		next imap.UID
		want string
	}{
		{nil, nil, 1, "[]"},
		{nil, nil, 4, "[[1 3]]"},
		{[]imap.UID{1, 2, 3}, nil, 4, "[]"},
		{[]imap.UID{2, 5}, []VanishedRange{{3, 3, 9}}, 9, "[[1 1] [4 4] [6 8]]"},
		{[]imap.UID{1}, []VanishedRange{{2, 10, 9}, {4, 6, 7}}, 8, "[]"},
		{[]imap.UID{7}, nil, 5, "[[1 4]]"},
	} {
		if got := fmt.Sprint(vanishedGaps(c.live, c.van, c.next)); got != c.want {
			t.Errorf("vanishedGaps(%v, %v, %d) = %s, want %s", c.live, c.van, c.next, got, c.want)
		}
	}
}

// TestReplicaStrayBeforeFollow: a merge leaves a stray flags line (a flag
// added on b to a message that a moved) and a writes to the same chunk
// before its index follows the merge (the write won the race for the
// index, or the index had stopped: a crash after the merge commit). The
// write keeps the stray line, so the flag still follows the moved message
// when a's index catches up (here: at its next load).
func TestReplicaStrayBeforeFollow(t *testing.T) {
	a, b := replicaPair(t, 0, 1)
	waitView(t, b, "INBOX", "1:0 2:1")
	inA, arA, inB := a.box(t, "INBOX"), a.box(t, "Archive"), b.box(t, "INBOX")
	a.update(t, func(w *Writer) error {
		_, err := w.Move(inA, a.msg(t, "INBOX", 0), arA)
		return err
	})
	b.update(t, func(w *Writer) error {
		return w.SetFlags(inB, b.msg(t, "INBOX", 0), []imap.Flag{imap.FlagFlagged}, nil)
	})
	other := a.msg(t, "INBOX", 1) // in the same chunk as the stray line
	a.ms.cancel()
	<-a.ms.done
	ctx := context.Background()
	if _, err := a.st.Pull(ctx, store.Remote{URL: b.st.Path()}, store.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	a.update(t, func(w *Writer) error {
		return w.SetFlags(inA, other, []imap.Flag{imap.FlagSeen}, nil)
	})
	ms, err := Open(a.st, Options{}) // (the stopped index is dropped, not closed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	a.ms = ms
	waitFlags(t, a, b, "Archive", 0, `[\Flagged]`)
	waitFlags(t, a, b, "INBOX", 1, `[\Seen]`)
}
