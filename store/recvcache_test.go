package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// A commit puts the trees it writes into the tree cache: the next commit
// in the same folder, and the diff that watchers get, read no tree again
// (each read is an inflate and a parse of what the store just encoded).
func TestCommitReadsNoTreeItWrote(t *testing.T) {
	s := newStore(t)
	put(t, s, "mail/inbox/cur/1", "one")
	prev := put(t, s, "mail/inbox/cur/2", "two")
	reads := s.trees.reads.Load()
	for i := 3; i < 10; i++ {
		h := put(t, s, fmt.Sprint("mail/inbox/cur/", i), "more")
		ch, err := s.DiffCommits(prev, h)
		if err != nil || len(ch) != 1 {
			t.Fatalf("DiffCommits = %v, %v", ch, err)
		}
		prev = h
	}
	if n := s.trees.reads.Load() - reads; n != 0 {
		t.Errorf("seven commits in one folder and their diffs read %d trees, want 0", n)
	}
}

// A push received whole (as replicas send them) puts the trees and commits
// it brings into the receiver's caches once its pack is readable:
// validating the push and the diff its watchers get read no tree.
func TestPushedTreesNeedNoRead(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "mail/inbox/cur/1", "one")
	rem, b := cloneOverHTTP(t, a)
	w, err := a.Watch(DefaultBranch, "") // its diffs read the pushed trees
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var validated []string
	a.SetValidateFunc("mail", func(p string, data []byte, _ func(string) ([]byte, error)) error {
		validated = append(validated, p+"="+string(data))
		return nil
	})
	for i := 2; i < 6; i++ {
		p := fmt.Sprint("mail/inbox/cur/", i)
		put(t, b, p, fmt.Sprint("message ", i))
		reads := a.trees.reads.Load()
		validated = nil
		if err := b.Push(ctx, rem, SyncOptions{}); err != nil {
			t.Fatal(err)
		}
		if n := a.trees.reads.Load() - reads; n != 0 {
			t.Errorf("push %d: the receiver read %d trees, want 0 (those the push brought are cached)", i, n)
		}
		// The message was validated as the push brought it, not read
		// again: none is left waiting.
		if want := fmt.Sprint(p, "=message ", i); len(validated) != 1 || validated[0] != want {
			t.Errorf("push %d: validated %q, want [%s]", i, validated, want)
		}
		if n := len(a.trees.fresh.cur) + len(a.trees.fresh.old); n != 0 {
			t.Errorf("push %d: %d received blobs left unread by validation", i, n)
		}
	}
	if got, want := contents(t, a, "main"), contents(t, b, "main"); got != want {
		t.Errorf("after the pushes: a = %s, b = %s", got, want)
	}
	fsckOpen(t, a)
}

// Trees built by merging changes into the base's entries are those git
// makes: random puts and deletes on names that sort differently as files
// and as folders ("a" as a folder sorts after "a.txt"), items becoming
// folders and back; git fsck checks the order and the store's listing the
// content, and DiffCommits matches a comparison of the listings.
func TestTreeBuildOrder(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	names := []string{"a", "a.txt", "a-b", "a0", "b", "a!"}
	want := map[string]string{}
	var prev Hash
	made := 0
	for i := 0; i < 300; i++ {
		var p string
		for d := r.IntN(3); d >= 0; d-- {
			p = joinPath(p, names[r.IntN(len(names))])
		}
		before := listing(t, s)
		h, err := s.Update(ctx, CommitOptions{Message: "c"}, func(tx *Tx) error {
			if _, ok := want[p]; ok && r.IntN(2) == 0 {
				return tx.Delete(p)
			}
			return tx.Put(p, []byte(fmt.Sprint(i)))
		})
		if err != nil {
			continue // an item where a folder is, or the reverse
		}
		want = listing(t, s)
		if h == prev {
			continue
		}
		made++
		ch, err := s.DiffCommits(prev, h)
		if err != nil {
			t.Fatal(err)
		}
		var got, exp []string
		for _, c := range ch {
			got = append(got, c.Path)
		}
		for p, v := range want {
			if before[p] != v {
				exp = append(exp, p)
			}
		}
		for p := range before {
			if _, ok := want[p]; !ok {
				exp = append(exp, p)
			}
		}
		slices.SortFunc(exp, func(x, y string) int { return slices.Compare(strings.Split(x, "/"), strings.Split(y, "/")) })
		if !slices.Equal(got, exp) {
			t.Fatalf("commit %d: DiffCommits paths %q, want %q", i, got, exp)
		}
		prev = h
	}
	if made < 100 || len(want) < 5 {
		t.Fatalf("%d commits made, %d items at the end", made, len(want))
	}
	fsckOpen(t, s)
}

// listing reads every item of main.
func listing(t *testing.T, s *Store) map[string]string {
	t.Helper()
	es, err := s.List("", "")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range es {
		data, err := s.Read("", e.Path)
		if err != nil {
			t.Fatal(err)
		}
		m[e.Path] = string(data)
	}
	return m
}

// The trees and commits of a refused push leave the caches with its pack:
// a later push must not find them present (a push that refers to them
// without bringing them is refused as before).
func TestRefusedPushLeavesNoCachedTrees(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "x/1", "one")
	a.SetValidateFunc("bad", func(string, []byte, func(string) ([]byte, error)) error {
		return fmt.Errorf("not here")
	})
	rem, b := cloneOverHTTP(t, a)
	h, err := b.Update(ctx, CommitOptions{Message: "refused"}, func(tx *Tx) error {
		if err := tx.Put("other/1", []byte("not validated")); err != nil {
			return err
		}
		return tx.Put("bad/deep/1", []byte("refused"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx, rem, SyncOptions{}); err == nil {
		t.Fatal("push of a refused item succeeded")
	}
	var trees []Hash
	if err := b.readObjs(func(o *objReader) error {
		root, err := o.commitTree(h)
		if err != nil {
			return err
		}
		trees = append(trees, root)
		for _, p := range []string{"bad", "bad/deep"} {
			e, ok, err := o.entry(root, p)
			if err != nil || !ok {
				return fmt.Errorf("%s: %v, %v", p, ok, err)
			}
			trees = append(trees, e.Hash)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, th := range trees {
		if a.trees.get(th) != nil {
			t.Errorf("tree %s of the refused push is in the receiver's cache", short(th))
		}
	}
	if _, ok := a.trees.commits.get(h); ok {
		t.Errorf("commit %s of the refused push is in the receiver's cache", short(h))
	}
	if _, ok := a.trees.fresh.take(BlobHash([]byte("not validated"))); ok {
		t.Errorf("a blob of the refused push is kept for validation")
	}
	if a.has(h) {
		t.Errorf("the refused commit is in the receiver")
	}
}

// find answers as a scan does, in a tree in git's order (searched by
// halves: "a" as an item, "a.txt", then "a" as a folder; indexed after
// findSearches lookups) and in one out of order or naming an entry twice
// (indexed).
func TestTreeFind(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := []string{"a", "a.txt", "a-b", "a0", "b", "a!", "ab", "a.", "c", "b.d"}
	for round := 0; round < 200; round++ {
		var es []object.TreeEntry
		seen := map[string]bool{}
		for _, n := range alphabet {
			for _, m := range []filemode.FileMode{filemode.Regular, filemode.Dir, filemode.Executable} {
				if r.IntN(3) == 0 && (!seen[n] || round%3 == 0) {
					seen[n] = true
					var h Hash
					h[0], h[1] = byte(round), byte(len(es))
					es = append(es, object.TreeEntry{Name: n, Mode: m, Hash: h})
				}
			}
		}
		for len(es) <= findScan { // long enough not to be scanned
			es = append(es, object.TreeEntry{Name: fmt.Sprint("z", len(es)), Mode: filemode.Regular})
		}
		if round%2 == 0 {
			sortTreeEntries(es)
		} else {
			r.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
		}
		tr := &tree{entries: es}
		names := append(alphabet, "z3", "zz", "")
		for _, n := range append(names, names...) { // searched, then indexed

			want, wantOK := object.TreeEntry{}, false
			for _, e := range es {
				if e.Name == n {
					want, wantOK = e, true
					break
				}
			}
			if got, ok := tr.find(n); ok != wantOK || got != want {
				t.Fatalf("round %d (in order: %v): find(%q) = %v, %v; want %v, %v", round, tr.inOrder, n, got, ok, want, wantOK)
			}
		}
	}
}

// cloneOverHTTP serves a over git's smart HTTP (gitServer) and clones it
// into a new store.
func cloneOverHTTP(t *testing.T, a *Store) (Remote, *Store) {
	t.Helper()
	srv := gitServer(t, a)
	rem := Remote{URL: srv.URL + "/store.git", Username: "alice", Password: "alice-password"}
	b, err := Clone(context.Background(), rem, filepath.Join(t.TempDir(), "b.git"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return rem, b
}
