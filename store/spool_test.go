package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// noise returns n bytes that do not compress.
func noise(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// spoolOf writes data into a new spool.
func spoolOf(t *testing.T, s *Store, data []byte) *Spool {
	t.Helper()
	sp, err := s.NewSpool()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	if _, err := io.Copy(sp, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return sp
}

// TestPutBlobSpool: blobs of every size class put from a spool read back
// as they were, before and after the background writes them into a pack
// (and the log is emptied), and git fsck accepts the repository. The
// spool's file is gone from the folder at once.
func TestPutBlobSpool(t *testing.T) {
	s := newStore(t)
	for _, tc := range []struct {
		name string
		size int
	}{{"small", 100}, {"in memory at most", spoolMem}, {"spilled to its file", spoolMem + 1}, {"at the threshold", streamThreshold}, {"large", 3 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			data := noise(tc.size, uint64(tc.size))
			sp := spoolOf(t, s, data)
			if inMem := tc.size <= spoolMem; (sp.f == nil) != inMem {
				t.Errorf("%d bytes: spool in memory %v, want %v", tc.size, sp.f == nil, inMem)
			}
			if ents, _ := os.ReadDir(filepath.Join(s.Path(), tmpDir)); len(ents) != 0 {
				t.Errorf("the spool left %d files in %s", len(ents), tmpDir)
			}
			var h Hash
			_, err := s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error {
				var err error
				h, err = tx.PutBlobSpool("blobs/"+Shard(tc.name), sp)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			sp.Close() // the pending commit must not need it any more
			for _, when := range []string{"pending", "written"} {
				got, err := s.ReadBlob(h)
				if err != nil {
					t.Fatalf("%s: %v", when, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("%s: read back %d bytes that differ from the %d put", when, len(got), len(data))
				}
				if err := s.Flush(); err != nil {
					t.Fatal(err)
				}
				s.wmu.Lock()
				err = s.checkpoint()
				s.wmu.Unlock()
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	fsckOpen(t, s)
}

// TestSpoolSpill: content written in pieces of odd sizes across the
// point where the spool moves it from memory to its file reads back
// whole, at every offset.
func TestSpoolSpill(t *testing.T) {
	s := newStore(t)
	data := noise(3*spoolMem+7, 3)
	sp, err := s.NewSpool()
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for rest, n := data, 1; len(rest) > 0; n = n*3 + 1 {
		k := min(n, len(rest))
		if _, err := sp.Write(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	if sp.f == nil || sp.mem != nil {
		t.Fatalf("%d bytes: spool not moved to its file", len(data))
	}
	for _, off := range []int{0, 1, spoolMem - 1, spoolMem, spoolMem + 1, len(data) - 1} {
		got, err := io.ReadAll(io.NewSectionReader(sp, int64(off), int64(len(data))))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[off:]) {
			t.Fatalf("from %d: read %d bytes that differ from the %d written", off, len(got), len(data)-off)
		}
	}
	if h, err := sp.BlobHash(); err != nil || h != BlobHash(data) {
		t.Fatalf("BlobHash: %v, %v; want %v", h, err, BlobHash(data))
	}
}

// TestPutBlobSpoolMemory: putting a 32 MiB blob from a spool allocates a
// small part of its size (buffers), where holding it would take several
// times its size.
func TestPutBlobSpoolMemory(t *testing.T) {
	s := newStore(t)
	const size = 32 << 20
	sp, err := s.NewSpool()
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	for i := 0; i < size/len(chunk); i++ {
		for j := range chunk {
			chunk[j] = byte(rng.Uint32())
		}
		sp.Write(chunk)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error {
		_, err := tx.PutBlobSpool("big/blob", sp)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MiB blob: %d KiB allocated to commit it and write its pack", size>>20, alloc>>10)
	if alloc > size/4 {
		t.Errorf("committing a %d MiB blob from a spool allocated %d MiB, want under %d MiB", size>>20, alloc>>20, size/4>>20)
	}
	fsckOpen(t, s)
}

// TestSpoolPowerCut: a large blob that is durable only in the commit log
// (its pack lost in a power cut) is rewritten from the log at Open, which
// reads it without holding the log in memory.
func TestSpoolPowerCut(t *testing.T) {
	s := newStore(t)
	path := s.Path()
	data := noise(2<<20, 7)
	sp := spoolOf(t, s, data)
	var h Hash
	_, err := s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error {
		var err error
		h, err = tx.PutBlobSpool("big/blob", sp)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sp.Close()
	crashAbandon(t, s)
	packs, _ := filepath.Glob(filepath.Join(path, "objects", "pack", "pack-*"))
	for _, p := range packs {
		os.Remove(p)
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Read("", "big/blob")
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("the blob replayed from the commit log differs from what was put")
	}
	if e, _ := s2.ReadBlob(h); !bytes.Equal(e, data) {
		t.Fatal("ReadBlob by hash differs")
	}
	fsckOpen(t, s2)
}

// TestReserve: below the reserve, data writes (a spool, PutBlobSpool,
// CheckSpace) fail with ErrNoSpace, saying how much is free, while small
// writes of the store's own records still commit.
func TestReserve(t *testing.T) {
	var avail uint64 = 1 << 30
	const total = 10 << 30 // reserve: 5% = 512 MiB
	dir := filepath.Join(t.TempDir(), "repo.git")
	s, err := Init(dir, Options{statFS: func(string) (uint64, uint64, error) { return avail, total, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sp := spoolOf(t, s, noise(1000, 1))
	if err := s.CheckSpace(100 << 20); err != nil {
		t.Fatalf("1 GiB free, 512 MiB reserve, 100 MiB wanted: %v", err)
	}
	if err := s.CheckSpace(600 << 20); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("1 GiB free, 512 MiB reserve, 600 MiB wanted: got %v, want ErrNoSpace", err)
	}
	avail = 500 << 20
	err = s.CheckSpace(0)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("500 MiB free under a 512 MiB reserve: got %v, want ErrNoSpace", err)
	}
	t.Logf("refused: %v", err)
	if _, err := s.NewSpool(); !errors.Is(err, ErrNoSpace) {
		t.Errorf("NewSpool below the reserve: got %v, want ErrNoSpace", err)
	}
	_, err = s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error {
		_, err := tx.PutBlobSpool("data/blob", sp)
		return err
	})
	if !errors.Is(err, ErrNoSpace) {
		t.Errorf("PutBlobSpool below the reserve: got %v, want ErrNoSpace", err)
	}
	put(t, s, "meta/record", "the store's own records still commit")

	// A spool that crosses into the reserve stops there.
	avail = 1 << 30
	sp2 := spoolOf(t, s, nil)
	avail = 512<<20 + 512<<10 // half a MiB above the reserve
	chunk := make([]byte, 1<<20)
	var werr error
	for i := 0; i < 2*spoolCheckEvery>>20 && werr == nil; i++ {
		_, werr = sp2.Write(chunk)
	}
	if !errors.Is(werr, ErrNoSpace) {
		t.Errorf("a spool growing into the reserve: got %v, want ErrNoSpace", werr)
	}
	for _, tc := range []struct {
		opts  Options
		total uint64
		want  uint64
	}{
		{Options{}, 100 << 30, 5 << 30},
		{Options{}, 1 << 30, 64 << 20},
		{Options{}, 128 << 20, 32 << 20},
		{Options{Reserve: 1 << 20}, 1 << 30, 1 << 20},
		{Options{Reserve: -1}, 1 << 30, 0},
	} {
		if got := reserveFor(tc.opts, tc.total); got != tc.want {
			t.Errorf("reserve of %d MiB with %+v: got %d MiB, want %d MiB", tc.total>>20, tc.opts.Reserve, got>>20, tc.want>>20)
		}
	}
}

// TestReserveRealFS: on a real 8 MiB file system (tmpfs, as root), the
// store refuses a blob that would eat into its reserve, and a write that
// hits ENOSPC in the commit log is cut off cleanly: the log still replays,
// and git fsck accepts the repository.
func TestReserveRealFS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small file system needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	dir := filepath.Join(mnt, "repo.git")
	s, err := Init(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// 8 MiB: the reserve is 2 MiB. A 4 MiB blob needs 8 MiB more.
	sp, err := s.NewSpool()
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if _, err := sp.Write(noise(3<<20, 3)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error {
		_, err := tx.PutBlobSpool("big", sp)
		return err
	})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a 3 MiB blob on an 8 MiB file system: got %v, want ErrNoSpace", err)
	}
	sp.Close()
	put(t, s, "small", "fits")
	// Without the reserve the disk fills for real: the commit log's
	// append fails with ENOSPC and is cut off.
	s.opts.Reserve = -1
	_, err = s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error {
		return tx.Put("huge", noise(9<<20, 4))
	})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a 9 MiB commit on an 8 MiB file system: got %v, want ENOSPC", err)
	}
	put(t, s, "after", "the log takes records again")
	crashAbandon(t, s)
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, p := range []string{"small", "after"} {
		if _, err := s2.Read("", p); err != nil {
			t.Errorf("%s after replay: %v", p, err)
		}
	}
	fsckOpen(t, s2)
}
