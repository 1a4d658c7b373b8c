package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// textItem makes 4 KiB of text-like content (words from a small
// vocabulary, which compresses about as well as mail or vCards do).
func textItem(rng *rand.Rand) []byte {
	b := make([]byte, 0, 4096)
	for len(b) < 4096-12 {
		w := rng.IntN(2000)
		b = append(b, strconv.FormatInt(int64(w*w*7919%1000003), 36)...)
		b = append(b, ' ')
		if rng.IntN(12) == 0 {
			b = append(b, '\n')
		}
	}
	return b[:4096-12]
}

// fill adds n items of 4 KiB under items/, sharded, 1000 per commit, without
// fsync (it only builds the starting point of a benchmark).
func fill(b *testing.B, s *Store, n int) {
	b.Helper()
	s.opts.noSync = true
	defer func() { s.opts.noSync = false }()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; i += 1000 {
		_, err := s.Update(context.Background(), CommitOptions{Message: "fill"}, func(tx *Tx) error {
			for j := i; j < i+1000 && j < n; j++ {
				item := append([]byte(fmt.Sprintf("%012d", j)), textItem(rng)...)
				if err := tx.Put("items/"+Shard(strconv.Itoa(j)), item); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommit measures one durable commit of one 4 KiB item into stores
// of 1k, 10k and 100k items. The goal: the cost at 100k within 1.5x of 1k.
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("items=%d", n), func(b *testing.B) {
			s, err := Init(filepath.Join(b.TempDir(), "r.git"), Options{GCLooseObjects: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			fill(b, s, n)
			// The starting point settled: the background writer done
			// with the fill's 4 MB commits, and the file system with
			// their writeback, before the clock starts.
			if err := s.Flush(); err != nil {
				b.Fatal(err)
			}
			if err := syncFS(s.Path()); err != nil { // and its writeback
				b.Fatal(err)
			}
			item := make([]byte, 4096)
			b.SetBytes(4096)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(item, "new "+strconv.Itoa(i))
				_, err := s.Update(context.Background(), CommitOptions{Message: "bench"}, func(tx *Tx) error {
					return tx.Put("items/"+Shard("new"+strconv.Itoa(i)), item)
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}

// BenchmarkRepack compares the repository's size before and after GC with
// git gc on a copy of the same repository (10k items of 4 KiB, 100 edits).
func BenchmarkRepack(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s, err := Init(filepath.Join(b.TempDir(), "r.git"), Options{GCLooseObjects: -1})
		if err != nil {
			b.Fatal(err)
		}
		fill(b, s, 10000)
		for j := 0; j < 100; j++ {
			put(b, s, "items/"+Shard(strconv.Itoa(j)), fmt.Sprintf("edited %d %04000d", j, j))
		}
		cp := filepath.Join(b.TempDir(), "copy.git")
		if out, err := exec.Command("cp", "-a", s.Path(), cp).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v %s", err, out)
		}
		b.StartTimer()
		st, err := s.GC(context.Background())
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if out, err := exec.Command("git", "-C", cp, "gc", "--quiet", "--prune=now").CombinedOutput(); err != nil {
			b.Fatalf("git gc: %v %s", err, out)
		}
		gitTook := time.Since(start)
		gitSize := dirSize(filepath.Join(cp, "objects"))
		b.ReportMetric(float64(st.SizeBefore)/1e6, "MB-before")
		b.ReportMetric(float64(st.SizeAfter)/1e6, "MB-after")
		b.ReportMetric(float64(gitSize)/1e6, "MB-git-gc")
		b.ReportMetric(float64(st.SizeAfter)/float64(gitSize), "size-ratio-vs-git")
		b.ReportMetric(st.Duration.Seconds(), "s-gc")
		b.ReportMetric(gitTook.Seconds(), "s-git-gc")
		s.Close()
		os.RemoveAll(cp)
	}
}

// BenchmarkMerge merges two branches with 1000 changed paths each.
func BenchmarkMerge(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := Init(filepath.Join(b.TempDir(), "r.git"), Options{GCLooseObjects: -1})
		if err != nil {
			b.Fatal(err)
		}
		fill(b, s, 10000)
		ctx := context.Background()
		s.CreateBranch(ctx, "other", "main")
		for _, br := range []string{"main", "other"} {
			_, err := s.Update(ctx, CommitOptions{Branch: br}, func(tx *Tx) error {
				for j := 0; j < 1000; j++ {
					tx.Put("items/"+Shard(br+strconv.Itoa(j)), []byte(br))
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if _, err := s.Merge(ctx, "other", CommitOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
	}
}

// BenchmarkPackObjectsLongHistory lists what a peer holding all but the
// last commit of a history of 5000 lacks: what each push does.
func BenchmarkPackObjectsLongHistory(b *testing.B) {
	s := newStore(b)
	var prev, head Hash
	for i := 0; i < 5000; i++ {
		prev, head = head, put(b, s, fmt.Sprintf("d/%d", i%100), fmt.Sprint(i))
	}
	for b.Loop() {
		if _, err := s.packObjects([]Hash{head}, []Hash{prev}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMergePacks merges 16 packs of 100 commits each (an item of 150
// bytes per commit in a sharded folder: its blob, the trees above it and
// the commit, as a mail APPEND writes), the background merge that follows
// a node's batches. Each iteration merges a fresh copy of the repository.
func BenchmarkMergePacks(b *testing.B) {
	src := filepath.Join(b.TempDir(), "r.git")
	s, err := Init(src, Options{GCLooseObjects: -1})
	if err != nil {
		b.Fatal(err)
	}
	s.opts.noSync = true
	n := 0
	for p := 0; p < 16; p++ {
		for c := 0; c < 100; c++ {
			if _, err := s.Update(context.Background(), CommitOptions{Message: "append"}, func(tx *Tx) error {
				return tx.Put("mail/u/box/"+Shard(fmt.Sprintf("%08d", n)), []byte(fmt.Sprintf("message %d: %0140d", n, n)))
			}); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if err := s.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	objects := 0
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "r.git")
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			b.Fatal(err)
		}
		s, err := Open(dir, Options{GCLooseObjects: -1})
		if err != nil {
			b.Fatal(err)
		}
		s.opts.noSync = true
		b.StartTimer()
		st, err := s.MergePacks(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		objects = st.Objects
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(objects), "objects")
}
