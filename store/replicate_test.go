package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/revlist"
)

// packObjects must list every object that the wants reach and the haves
// do not (it may list more), on a history with criss-cross merges.
func TestPackObjectsComplete(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	put := func(branch string, i int) {
		t.Helper()
		if _, err := s.Update(ctx, CommitOptions{Branch: branch, Message: "c"}, func(tx *Tx) error {
			p := fmt.Sprintf("d%d/e%d/f%d", r.IntN(3), r.IntN(3), r.IntN(5))
			if r.IntN(4) == 0 {
				return tx.Delete(p)
			}
			return tx.Put(p, []byte(fmt.Sprint(branch, i, r.Int())))
		}); err != nil {
			t.Fatal(err)
		}
	}
	put("main", 0)
	if _, err := s.CreateBranch(ctx, "b", "main"); err != nil {
		t.Fatal(err)
	}
	s.SetMergeFunc("", func(_ string, _, ours, theirs []byte) ([]byte, error) { return ours, nil })
	var heads []Hash
	for i := 1; i < 40; i++ {
		put("main", i)
		put("b", i)
		if i%5 == 0 {
			if _, err := s.Merge(ctx, "b", CommitOptions{Message: "m"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Merge(ctx, "main", CommitOptions{Branch: "b", Message: "m"}); err != nil {
				t.Fatal(err)
			}
		}
		h, _ := s.Resolve("main")
		hb, _ := s.Resolve("b")
		heads = append(heads, h, hb)
	}
	// mergeBases agrees with go-git's MergeBase, and isAncestor and
	// Reaches with its IsAncestor (generation.go).
	for k := 0; k < 150; k++ {
		a, b := heads[r.IntN(len(heads))], heads[r.IntN(len(heads))]
		got, err := s.mergeBases(a, b)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		err = s.read(func(rp *git.Repository) error {
			ca, _ := rp.CommitObject(a)
			cb, _ := rp.CommitObject(b)
			bs, err := ca.MergeBase(cb)
			for _, c := range bs {
				want = append(want, c.Hash.String())
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(want)
		if fmt.Sprint(got) != "["+strings.Join(want, " ")+"]" {
			t.Errorf("merge bases of %s and %s: %v, go-git %v", short(a), short(b), got, want)
		}
		anc, err := s.isAncestor(a, b)
		if err != nil {
			t.Fatal(err)
		}
		var wantAnc bool
		err = s.read(func(rp *git.Repository) error {
			ca, _ := rp.CommitObject(a)
			cb, _ := rp.CommitObject(b)
			var err error
			wantAnc, err = ca.IsAncestor(cb)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if anc != wantAnc {
			t.Errorf("isAncestor(%s, %s) = %v, go-git %v", short(a), short(b), anc, wantAnc)
		}
		if got := s.Reaches(b, a); got != wantAnc {
			t.Errorf("Reaches(%s, %s) = %v, go-git %v", short(b), short(a), got, wantAnc)
		}
	}
	for k := 0; k < 30; k++ {
		want := heads[len(heads)-1-r.IntN(6)]
		var haves []Hash
		for j := 0; j < 1+r.IntN(3); j++ {
			haves = append(haves, heads[r.IntN(len(heads)-6)])
		}
		got, err := s.packObjects([]Hash{want}, haves)
		if err != nil {
			t.Fatal(err)
		}
		// The commits listed are exactly those want reaches and no have
		// does.
		var cs []commitNode
		if err := s.readObjs(func(o *objReader) error {
			cs, _, err = newCommitsSince(o, []Hash{want}, haves, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var gotCommits []string
		for _, c := range cs {
			gotCommits = append(gotCommits, c.hash.String())
		}
		sort.Strings(gotCommits)
		var wantCommits []string
		err = s.read(func(rp *git.Repository) error {
			old := map[Hash]bool{}
			for _, h := range haves {
				c, err := rp.CommitObject(h)
				if err != nil {
					return err
				}
				old[h] = true
				if err := object.NewCommitPreorderIter(c, nil, nil).ForEach(func(c *object.Commit) error {
					old[c.Hash] = true
					return nil
				}); err != nil {
					return err
				}
			}
			c, err := rp.CommitObject(want)
			if err != nil {
				return err
			}
			return object.NewCommitPreorderIter(c, nil, nil).ForEach(func(c *object.Commit) error {
				if !old[c.Hash] {
					wantCommits = append(wantCommits, c.Hash.String())
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(wantCommits)
		if fmt.Sprint(gotCommits) != fmt.Sprint(wantCommits) {
			t.Errorf("want %s haves %v: new commits %v, go-git %v", short(want), haves, gotCommits, wantCommits)
		}
		have := map[Hash]bool{}
		for _, h := range got {
			have[h] = true
		}
		err = s.read(func(rp *git.Repository) error {
			ex, err := revlist.Objects(rp.Storer, haves, nil)
			if err != nil {
				return err
			}
			need, err := revlist.Objects(rp.Storer, []Hash{want}, ex)
			if err != nil {
				return err
			}
			for _, h := range need {
				if !have[h] {
					return fmt.Errorf("want %s haves %v: object %s missing from the list", short(want), haves, h)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Listing what a peer lacks walks the new commits, not the history the
// peer holds (a push used to read all of it, each time).
func TestNewCommitsSinceWalksNewOnly(t *testing.T) {
	s := newStore(t)
	var heads []Hash
	for i := 0; i < 300; i++ {
		heads = append(heads, put(t, s, "f", fmt.Sprint(i)))
	}
	err := s.readObjs(func(o *objReader) error {
		for _, k := range []int{0, 1, 5} {
			cs, walked, err := newCommitsSince(o, []Hash{heads[len(heads)-1]}, []Hash{heads[len(heads)-1-k]}, 0)
			if err != nil {
				return err
			}
			if len(cs) != k || walked > k+1 {
				t.Errorf("%d new commits: listed %d, walked %d of 300", k, len(cs), walked)
			}
		}
		// Haves far back, and one the wants do not reach.
		cs, _, err := newCommitsSince(o, []Hash{heads[200]}, []Hash{heads[10], heads[250]}, 0)
		if err != nil {
			return err
		}
		if len(cs) != 0 {
			t.Errorf("a want below a have: listed %d commits", len(cs))
		}
		cs, walked, err := newCommitsSince(o, []Hash{heads[200]}, []Hash{heads[10]}, 0)
		if err != nil {
			return err
		}
		if len(cs) != 190 || walked > 191 {
			t.Errorf("190 new commits: listed %d, walked %d", len(cs), walked)
		}
		// A count that stops at a limit walks no further.
		cs, walked, err = newCommitsSince(o, []Hash{heads[200]}, []Hash{heads[10]}, 20)
		if err != nil {
			return err
		}
		if len(cs) != 20 || walked > 21 {
			t.Errorf("limit 20: listed %d, walked %d", len(cs), walked)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A folder changed and changed back: commit A brings d/z and d/x, B
// changes d/x, C changes it back, so C's folder is A's again. Walking the
// commits from the newest, C's folder was compared with B's and B's with
// C's (d/z unchanged each time), and A's folder, already listed, was
// skipped: d/z, which only A brought, was missing from the pack (a fetch
// then lacked it: "object not found" in the merge that followed).
func TestPackObjectsFolderChangedBack(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	put := func(files map[string]string) Hash {
		t.Helper()
		h, err := s.Update(ctx, CommitOptions{Message: "c"}, func(tx *Tx) error {
			for p, v := range files {
				if err := tx.Put(p, []byte(v)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	base := put(map[string]string{"d/a": "a"})
	put(map[string]string{"d/z": "z", "d/x": "1"})
	put(map[string]string{"d/x": "2"})
	head := put(map[string]string{"d/x": "1"})
	got, err := s.packObjects([]Hash{head}, []Hash{base})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[Hash]bool{}
	for _, h := range got {
		listed[h] = true
	}
	err = s.read(func(rp *git.Repository) error {
		ex, err := revlist.Objects(rp.Storer, []Hash{base}, nil)
		if err != nil {
			return err
		}
		need, err := revlist.Objects(rp.Storer, []Hash{head}, ex)
		if err != nil {
			return err
		}
		for _, h := range need {
			if !listed[h] {
				return fmt.Errorf("object %s missing from the list", h)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCommitChangesCached: what a commit notes at once as new in its tree
// (cacheChanges, for the pushes to replicas) holds everything the walk of
// its tree against its parent's finds (commitChanges, uncached), over
// random commits: items put, changed back, removed, moved between item
// and folder, put by hash from a branch the pushes would not send (the
// case where a blob is not among the objects the commit wrote), deep and
// sharded paths.
func TestCommitChangesCached(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 11))
	// A blob only another branch holds.
	if _, err := s.Update(ctx, CommitOptions{Message: "other", Branch: "other"}, func(tx *Tx) error {
		return tx.Put("elsewhere", []byte("a blob of another branch"))
	}); err != nil {
		t.Fatal(err)
	}
	sn, err := s.Snapshot("other")
	if err != nil {
		t.Fatal(err)
	}
	es, err := sn.List("")
	if err != nil || len(es) != 1 {
		t.Fatalf("other branch: %v, %v", es, err)
	}
	otherBlob := es[0].Hash
	paths := []string{"a", "d/x", "d/y", "d/e/f", "d/e", Shard("k1"), Shard("k2"), "m/" + Shard("k3"), "z"}
	var commits []Hash
	for i := 0; i < 200; i++ {
		c, err := s.Update(ctx, CommitOptions{Message: fmt.Sprint(i)}, func(tx *Tx) error {
			for n := 1 + r.IntN(3); n > 0; n-- {
				p := paths[r.IntN(len(paths))]
				var err error
				switch r.IntN(5) {
				case 0:
					err = tx.Delete(p)
				case 1:
					err = tx.PutHash(p, otherBlob)
				default:
					err = tx.Put(p, []byte(fmt.Sprint(r.IntN(3))))
				}
				if err != nil && !errors.Is(err, ErrInvalidPath) && !errors.Is(err, ErrNotExist) {
					return err
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrInvalidPath) {
			t.Fatal(err)
		}
		if err == nil && (len(commits) == 0 || commits[len(commits)-1] != c) {
			commits = append(commits, c)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	o, err := openObjReader(s.path, newTreeCache(1024))
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	checked := 0
	for _, c := range commits {
		cached, ok := s.trees.commits.changes(c)
		if !ok {
			t.Fatalf("commit %s noted no changes", c)
		}
		has := map[Hash]bool{}
		for _, h := range cached {
			has[h] = true
		}
		n, err := readCommit(o, c)
		if err != nil {
			t.Fatal(err)
		}
		walked, err := commitChanges(o, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range walked {
			if !has[h] {
				t.Fatalf("commit %s: %s is new in its tree but was not noted (noted %d, walked %d)", c, h, len(cached), len(walked))
			}
		}
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d commits checked", checked)
	}
}
