package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestGeometricSplit(t *testing.T) {
	for _, c := range []struct {
		sizes []int64
		want  int
	}{
		{nil, 0},
		{[]int64{10}, 0},
		{[]int64{10, 20}, 0},            // already a progression
		{[]int64{10, 15}, 2},            // too close: merge both
		{[]int64{1, 2, 4, 8, 16}, 0},    // progression
		{[]int64{1, 1, 4, 100}, 2},      // 1+1 < 4/2? no: 4 < 2*2 is false, stop
		{[]int64{1, 1, 3, 100}, 3},      // 1+1=2, 3 < 4: take it; 100 < 10? no
		{[]int64{5, 5, 5, 5, 40}, 4},    // four equal ones; 40 < 2*20? no
		{[]int64{5, 5, 5, 5, 39}, 5},    // 39 < 40: everything
		{[]int64{100, 1000, 1001}, 3},   // the break is at the top: all
		{[]int64{3, 100, 150, 1000}, 3}, // 100,150 too close: 3+100+150
	} {
		if got := geometricSplit(c.sizes); got != c.want {
			t.Errorf("geometricSplit(%v) = %d, want %d", c.sizes, got, c.want)
		}
	}
}

// packsOf lists the store's pack files and their sizes, smallest first.
func packsOf(t *testing.T, s *Store) (paths []string, sizes []int64) {
	t.Helper()
	ps, _ := filepath.Glob(filepath.Join(s.Path(), "objects", "pack", "pack-*.pack"))
	sort.Slice(ps, func(i, j int) bool {
		a, _ := os.Stat(ps[i])
		b, _ := os.Stat(ps[j])
		return a.Size() < b.Size()
	})
	for _, p := range ps {
		fi, _ := os.Stat(p)
		sizes = append(sizes, fi.Size())
	}
	return ps, sizes
}

// verifyPacks runs git verify-pack on every pack.
func verifyPacks(t *testing.T, s *Store) {
	t.Helper()
	ps, _ := packsOf(t, s)
	for _, p := range ps {
		runGit(t, s.Path(), "verify-pack", strings.TrimSuffix(p, ".pack")+".idx")
	}
}

// TestBatchPacks: logged commits reach the repository as packs, a batch
// per pack, never as loose objects; stock git reads them.
func TestBatchPacks(t *testing.T) {
	s := newStore(t)
	hs := commitItems(t, s, 100)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	loose, packs, _ := s.objectFiles()
	if len(loose) != 0 || len(packs) == 0 || len(packs) > 20 {
		t.Errorf("after 100 commits: %d loose objects, %d packs; want none loose, a few packs", len(loose), len(packs))
	}
	if got := strings.TrimSpace(runGit(t, s.Path(), "rev-parse", DefaultBranch)); got != hs[99].String() {
		t.Errorf("git sees %s, want %s", got, hs[99])
	}
	verifyPacks(t, s)
	fsckOpen(t, s)
}

// TestMergePacks: many small packs are merged into a geometric
// progression; every object stays readable and git agrees.
func TestMergePacks(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for i := 0; i < 24; i++ {
		put(t, s, fmt.Sprintf("items/%02d/%d", i%7, i), strings.Repeat(fmt.Sprint(i), 100*(i+1)))
		if err := s.Flush(); err != nil { // one pack per commit
			t.Fatal(err)
		}
	}
	// Background merges may have run; one more settles the rest.
	waitIdle(t, s)
	if _, err := s.MergePacks(ctx); err != nil {
		t.Fatal(err)
	}
	_, sizes := packsOf(t, s)
	if len(sizes) > mergeAbove+1 || geometricSplit(sizes) != 0 {
		t.Errorf("packs after merging: %v; want a geometric progression", sizes)
	}
	for i := 0; i < 24; i++ {
		got, err := s.Read("", fmt.Sprintf("items/%02d/%d", i%7, i))
		if err != nil || string(got) != strings.Repeat(fmt.Sprint(i), 100*(i+1)) {
			t.Fatalf("item %d after merging: %v", i, err)
		}
	}
	verifyPacks(t, s)
	fsckOpen(t, s)
	// A fresh open (another process) reads the same.
	s2, err := Open(s.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, want := contents(t, s2, "main"), contents(t, s, "main"); got != want {
		t.Error("a reopened store reads other contents")
	}
}

// TestMergePacksWithDeltas: merging GC's pack (with deltas) and batch
// packs writes the deltas' objects whole.
func TestMergePacksWithDeltas(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	// (Under gcWholeAbove: GC keeps larger blobs whole.)
	base := strings.Repeat("a line of a long text that changes a little\n", 40)
	for i := 0; i < 10; i++ {
		put(t, s, "doc", base+fmt.Sprint(i))
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	gcPacks, _ := packsOf(t, s)
	if len(gcPacks) != 1 {
		t.Fatalf("%d packs after GC", len(gcPacks))
	}
	if out := runGit(t, s.Path(), "verify-pack", "-v", strings.TrimSuffix(gcPacks[0], ".pack")+".idx"); !strings.Contains(out, "chain length") {
		t.Skip("GC wrote no deltas here; nothing to test")
	}
	for i := 0; i < 3; i++ {
		put(t, s, fmt.Sprint("new/", i), base)
		s.Flush()
	}
	waitIdle(t, s)
	all, _ := packsOf(t, s)
	st, err := s.mergePackFiles(ctx, all, GCStats{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ps, _ := packsOf(t, s); len(ps) != 1 || st.Objects == 0 {
		t.Fatalf("after merging every pack: %d packs, %+v", len(ps), st)
	}
	log, err := s.Log(LogOptions{})
	if err != nil || len(log) != 13 {
		t.Fatalf("history after merging: %d commits, %v", len(log), err)
	}
	if got, _ := s.Read("", "doc"); string(got) != base+"9" {
		t.Error("doc changed across the merge")
	}
	verifyPacks(t, s)
	fsckOpen(t, s)
}

// TestFlockHeldWhilePending: while commits are durable only in the log,
// another process cannot take the repository's lock (it would write on a
// branch head this process is about to move, or replay the log under it).
func TestFlockHeldWhilePending(t *testing.T) {
	s := newStore(t)
	put(t, s, "a", "1")
	f, err := os.Open(filepath.Join(s.Path(), lockName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tryLock := func() error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) }
	if s.pend.busy() {
		if err := tryLock(); !errors.Is(err, syscall.EWOULDBLOCK) {
			t.Fatalf("flock with a commit pending: %v, want EWOULDBLOCK", err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for tryLock() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the store still holds its lock with nothing pending")
		}
		time.Sleep(5 * time.Millisecond)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// waitIdle waits until no background repack or merge runs.
func waitIdle(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.gcState.running.Load() {
		if time.Now().After(deadline) {
			t.Fatal("background repack still running after 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOrphanPack: a pack without its index (a crash between deleting a
// pack's files, or between writing them, by an older version) is removed at
// Open instead of making the repository unreadable to go-git.
func TestOrphanPack(t *testing.T) {
	s := newStore(t)
	commitItems(t, s, 5)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	packs, _ := packsOf(t, s)
	if len(packs) == 0 {
		t.Fatal("no packs")
	}
	data, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(s.Path(), "objects", "pack", "pack-"+strings.Repeat("ab", 20)+".pack")
	if err := os.WriteFile(orphan, data, 0o444); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(s.Path(), Options{})
	if err != nil {
		t.Fatalf("Open with a pack without its index: %v", err)
	}
	defer s2.Close()
	if _, err := os.Stat(orphan); err == nil {
		t.Error("the pack without an index is still there")
	}
	if got := contents(t, s2, "main"); got == "" {
		t.Error("store reads empty")
	}
	fsckOpen(t, s2)
}
