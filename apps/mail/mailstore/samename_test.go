package mailstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nymote/nymote/store"
)

func TestSameNames(t *testing.T) {
	for _, tc := range []struct {
		names, want map[string]string
	}{
		{map[string]string{"a1": "P", "b2": "Q"}, nil},
		{map[string]string{"bbbbbbbbbbbb": "P", "aaaaaaaaaaaa": "P"}, map[string]string{"bbbbbbbbbbbb": "P-bbbbbbbb"}},
		{map[string]string{"c": "P", "a": "P", "b": "P"}, map[string]string{"b": "P-b", "c": "P-c"}},
		// The short name is taken: the whole id; that too: a number.
		{map[string]string{"aaaaaaaaaaaa": "P", "bbbbbbbbbbbb": "P", "x": "P-bbbbbbbb"}, map[string]string{"bbbbbbbbbbbb": "P-bbbbbbbbbbbb"}},
		{map[string]string{"a": "P", "b": "P", "x": "P-b", "y": "P-b-2"}, map[string]string{"b": "P-b-3"}},
		// INBOX made twice (stores from before its id was fixed).
		{map[string]string{"1234567890ab": "INBOX", "0234567890ab": "INBOX"}, map[string]string{"1234567890ab": "INBOX-12345678"}},
	} {
		for range 5 { // map order varies: the result must not
			got := sameNames(tc.names)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) && (len(got) != 0 || len(tc.want) != 0) {
				t.Errorf("%v: %v, want %v", tc.names, got, tc.want)
			}
		}
	}
}

// TestReplicaSameName: a mailbox CREATEd under one name on two nodes apart
// (different ids) is two mailboxes after the merge; each node, following
// the merge it made (a merged b's head, b merged a's: each side "ours"
// once), renames the one with the higher id to NAME-ID in a commit of its
// own, the same commit content on both (the trees are equal), with no UID
// or UIDVALIDITY changed and each message where it was; the renames merge
// cleanly.
func TestReplicaSameName(t *testing.T) {
	ctx := context.Background()
	a, b := replicaPair(t, 0)
	made := map[*node]*Mailbox{}
	for i, n := range []*node{a, b} {
		u, err := n.ms.User(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		n.update(t, func(w *Writer) error {
			var err error
			made[n], err = w.Create(u, "Projects", "")
			return err
		})
		n.append(t, "Projects", 10+i)
	}
	if made[a].ID == made[b].ID {
		t.Fatal("one id on both nodes")
	}
	low, high := a, b
	if made[b].ID < made[a].ID {
		low, high = b, a
	}
	wantHigh := "Projects-" + made[high].ID[:8]
	before := map[*node]string{}
	uv := map[*node]uint32{}
	for _, n := range []*node{a, b} {
		before[n] = n.view(t, "Projects")
		uv[n] = made[n].Info().UIDValidity
	}
	// Each merges the other's head as it was: a copy of a's store for b.
	aCopy, err := store.Clone(ctx, store.Remote{URL: a.st.Path()}, filepath.Join(t.TempDir(), "copy"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer aCopy.Close()
	if _, err := a.st.Pull(ctx, store.Remote{URL: b.st.Path()}, store.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.st.Pull(ctx, store.Remote{URL: aCopy.Path()}, store.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	names := func(n *node) map[string]string { // id → name
		u, _ := n.ms.User(ctx, "alice")
		m := map[string]string{}
		for _, mb := range u.Mailboxes() {
			m[mb.ID] = mb.Name()
		}
		return m
	}
	for _, n := range []*node{a, b} {
		deadline := time.Now().Add(time.Minute) // only a hung index
		for {
			m := names(n)
			if m[made[low].ID] == "Projects" && m[made[high].ID] == wantHigh {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("names %v; want %s as Projects and %s as %s", m, made[low].ID, made[high].ID, wantHigh)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	tree := func(n *node) store.Hash {
		sn, err := n.st.Snapshot("")
		if err != nil {
			t.Fatal(err)
		}
		return sn.Tree()
	}
	if ta, tb := tree(a), tree(b); ta != tb {
		t.Errorf("trees after each node's rename differ: a %s, b %s", ta, tb)
	}
	merge(t, a, b)
	if ta, tb := tree(a), tree(b); ta != tb {
		t.Errorf("trees after merging the renames differ: a %s, b %s", ta, tb)
	}
	for _, n := range []*node{a, b} {
		u, _ := n.ms.User(ctx, "alice")
		for _, mb := range u.Mailboxes() {
			if mb.ID != made[n].ID {
				continue
			}
			if got := mb.Info().UIDValidity; got != uv[n] {
				t.Errorf("UIDVALIDITY %d after the rename, was %d", got, uv[n])
			}
			name := mb.Name()
			if got := n.view(t, name); got != before[n] {
				t.Errorf("%s: %q after the rename, was %q", name, got, before[n])
			}
		}
	}
	// The other node's message is in the other mailbox, under a UID of this
	// node's.
	if got := low.view(t, wantHigh); got != "1:"+fmt.Sprint(map[bool]int{true: 11, false: 10}[high == b]) {
		t.Errorf("%s on the node that kept Projects: %q", wantHigh, got)
	}
}
