package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

func TestGC(t *testing.T) {
	s := newStore(t)
	s.opts.PruneAfter = time.Nanosecond
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		_, err := s.Update(ctx, CommitOptions{Message: fmt.Sprint("batch ", i)}, func(tx *Tx) error {
			for j := 0; j < 4; j++ {
				tx.Put("items/"+Shard(fmt.Sprint(i, "-", j)), []byte(fmt.Sprintf("item %d %d %0100d", i, j, 0)))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A deleted branch leaves unreachable objects behind; GC prunes them.
	s.CreateBranch(ctx, "tmp", "main")
	s.Update(ctx, CommitOptions{Branch: "tmp"}, func(tx *Tx) error { return tx.Put("only-on-tmp", []byte("x")) })
	s.DeleteBranch(ctx, "tmp")
	want := contents(t, s, "main")

	// Readers keep reading while GC runs and never see an error.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, failures atomic.Int64
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sn, err := s.Snapshot("")
				if err == nil {
					_, err = sn.Read("items/" + Shard("7-3"))
				}
				if err != nil {
					failures.Add(1)
					t.Errorf("read during GC: %v", err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	st, err := s.GC(ctx)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.Objects == 0 || st.PacksBefore < 2 || st.Pruned == 0 || st.SizeAfter >= st.SizeBefore {
		t.Errorf("GC stats %+v: want objects packed, unreachable ones pruned and a smaller repository", st)
	}
	loose, packs, _ := s.objectFiles()
	if len(loose) != 0 || len(packs) != 1 {
		t.Errorf("after GC: %d loose objects, %d packs; want 0 and 1", len(loose), len(packs))
	}
	if got := contents(t, s, "main"); got != want {
		t.Error("contents changed across GC")
	}
	// Writes after GC go on; a second GC folds them into one pack again.
	put(t, s, "after", "gc")
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if _, packs, _ := s.objectFiles(); len(packs) != 1 {
		t.Errorf("%d packs after the second GC", len(packs))
	}
	fsckOpen(t, s)
	// Another process's view: a store opened before GC still reads.
	s2, err := Open(s.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := contents(t, s2, "main"); got == "" {
		t.Error("reopened store is empty")
	}
	t.Logf("%d reads during GC", reads.Load())
}

func TestConcurrentWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("5000 durable commits take a while")
	}
	s := newStore(t)
	const writers, each = 50, 100
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				p := fmt.Sprintf("w%02d/%03d", w, i)
				_, err := s.Update(context.Background(), CommitOptions{Message: p}, func(tx *Tx) error {
					// Read-modify-write of a shared counter checks that
					// transactions are serialised.
					n := 0
					if b, err := tx.Get("counter"); err == nil {
						fmt.Sscan(string(b), &n)
					}
					tx.Put("counter", []byte(fmt.Sprint(n+1)))
					return tx.Put(p, []byte(p))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	es, err := s.List("", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != writers*each+1 {
		t.Errorf("%d items, want %d", len(es), writers*each+1)
	}
	if b, _ := s.Read("", "counter"); string(b) != fmt.Sprint(writers*each) {
		t.Errorf("counter = %s, want %d: an update was lost", b, writers*each)
	}
	log, _ := s.Log(LogOptions{})
	if len(log) != writers*each {
		t.Errorf("%d commits, want %d", len(log), writers*each)
	}
	fsckOpen(t, s)
}

func TestGCKeepsYoungUnreachableObjects(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	put(t, s, "a", "1")
	s.CreateBranch(ctx, "tmp", "main")
	h, _ := s.Update(ctx, CommitOptions{Branch: "tmp"}, func(tx *Tx) error { return tx.Put("b", []byte("only on tmp")) })
	sn, err := s.Snapshot(h.String())
	if err != nil {
		t.Fatal(err)
	}
	s.DeleteBranch(ctx, "tmp")
	st, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pruned != 0 {
		t.Errorf("pruned %d young objects", st.Pruned)
	}
	// A reader still holding the deleted branch's snapshot can read it.
	if b, err := sn.Read("b"); err != nil || string(b) != "only on tmp" {
		t.Errorf("read from a snapshot of a deleted branch after GC: %q, %v", b, err)
	}
	fsckOpen(t, s)
}

func TestGCWithConcurrentWriters(t *testing.T) {
	s := newStore(t)
	s.opts.PruneAfter = time.Nanosecond
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		put(t, s, "items/"+Shard(fmt.Sprint(i)), fmt.Sprint("item ", i))
	}
	done := make(chan struct{})
	var written []string
	go func() {
		defer close(done)
		for i := 0; i < 30; i++ {
			p := "during/" + Shard(fmt.Sprint(i))
			if _, err := s.Update(ctx, CommitOptions{}, func(tx *Tx) error { return tx.Put(p, []byte(p)) }); err != nil {
				t.Error(err)
				return
			}
			written = append(written, p)
		}
	}()
	for i := 0; i < 3; i++ {
		if _, err := s.GC(ctx); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	for _, p := range written {
		if b, err := s.Read("", p); err != nil || string(b) != p {
			t.Errorf("%s after GC: %q, %v", p, b, err)
		}
	}
	fsckOpen(t, s)
}

func TestPackLoose(t *testing.T) {
	// Without the commit log, commits are written as loose objects (with
	// it, as a pack per batch): what merges and older stores leave.
	s, err := Init(filepath.Join(t.TempDir(), "repo.git"), Options{noSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		put(t, s, "a/"+Shard(fmt.Sprint(i)), fmt.Sprint("first ", i))
	}
	// An unreachable object is packed too; GC drops it later.
	s.CreateBranch(ctx, "tmp", "main")
	s.Update(ctx, CommitOptions{Branch: "tmp"}, func(tx *Tx) error { return tx.Put("only-on-tmp", []byte("x")) })
	s.DeleteBranch(ctx, "tmp")
	st, err := s.PackLoose(ctx)
	if err != nil {
		t.Fatal(err)
	}
	loose, packs, _ := s.objectFiles()
	if st.Objects == 0 || st.Objects != st.LooseBefore || len(packs) != 1 || len(loose) != 0 {
		t.Fatalf("after PackLoose: %+v, %d loose, %d packs; want every loose object packed", st, len(loose), len(packs))
	}
	want := contents(t, s, "main")
	for i := 0; i < 5; i++ {
		put(t, s, "b/"+Shard(fmt.Sprint(i)), fmt.Sprint("second ", i))
	}
	st2, err := s.PackLoose(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Only what was written since is packed: 5 commits, 5 blobs and their
	// trees, not the first 10 items again.
	if st2.Objects >= st.Objects || st2.Objects < 10 {
		t.Errorf("second PackLoose packed %d objects (first: %d)", st2.Objects, st.Objects)
	}
	_, packs, _ = s.objectFiles()
	if len(packs) != 2 {
		t.Errorf("%d packs, want 2", len(packs))
	}
	if got := contents(t, s, "main~5"); got != want {
		t.Error("contents changed across PackLoose")
	}
	fsckOpen(t, s)
	// Stock git agrees with the packs and indexes PackLoose wrote itself
	// (checksums, offsets, CRCs).
	for _, p := range packs {
		if strings.HasSuffix(p, ".pack") {
			runGit(t, s.Path(), "verify-pack", strings.TrimSuffix(p, ".pack")+".idx")
		}
	}
	s.opts.PruneAfter = time.Nanosecond
	gst, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, packs, _ := s.objectFiles(); len(packs) != 1 || gst.Pruned == 0 {
		t.Errorf("after GC: %d packs, %d pruned; want 1 pack and the unreachable object pruned", len(packs), gst.Pruned)
	}
	fsckOpen(t, s)
}

// TestGCKeepsLargeBlobsWhole: GC stores blobs larger than gcWholeAbove
// whole, however alike (reading one then resolves no chain of deltas),
// and the rest (trees, small blobs) with deltas; git reads both packs,
// and every item reads back.
func TestGCKeepsLargeBlobsWhole(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	body := strings.Repeat("Dear reader, this week's news is much like last week's.\n", 100)
	want := map[string]string{}
	for i := 0; i < 30; i++ {
		large := body + fmt.Sprint("issue ", i)
		small := fmt.Sprintf("flags of %d: seen", i)
		if _, err := s.Update(ctx, CommitOptions{}, func(tx *Tx) error {
			if err := tx.Put(fmt.Sprintf("box/%d.eml", i), []byte(large)); err != nil {
				return err
			}
			return tx.Put(fmt.Sprintf("box/%d.meta", i), []byte(small))
		}); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprintf("box/%d.eml", i)] = large
		want[fmt.Sprintf("box/%d.meta", i)] = small
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	var largeDeltas, largeWhole, treeDeltas int
	err := s.readObjs(func(o *objReader) error {
		for _, p := range o.packList() {
			for i := 0; i < p.idx.n; i++ {
				off, _ := p.idx.offsetAt(i)
				var b [1]byte
				if _, err := p.f.ReadAt(b[:], off); err != nil {
					return err
				}
				et := plumbing.ObjectType((b[0] >> 4) & 7)
				isDelta := et == plumbing.OFSDeltaObject || et == plumbing.REFDeltaObject
				typ, n, err := o.kind(p.idx.hash(i))
				if err != nil {
					return err
				}
				switch {
				case typ == plumbing.BlobObject && n > gcWholeAbove && isDelta:
					largeDeltas++
				case typ == plumbing.BlobObject && n > gcWholeAbove:
					largeWhole++
				case typ == plumbing.TreeObject && isDelta:
					treeDeltas++
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if largeDeltas != 0 || largeWhole != 30 {
		t.Errorf("after GC: %d large blobs stored as deltas, %d whole; want 0 and 30", largeDeltas, largeWhole)
	}
	if treeDeltas == 0 {
		t.Error("after GC: no tree stored as a delta")
	}
	for p, w := range want {
		if got, err := s.Read("", p); err != nil || string(got) != w {
			t.Errorf("%s after GC: %v", p, err)
		}
	}
	verifyPacks(t, s)
	fsckOpen(t, s)
}
