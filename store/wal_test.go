package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// crashAbandon drops s as a crash would: its files are closed but nothing
// is checkpointed.
func crashAbandon(t *testing.T, s *Store) {
	t.Helper()
	s.Flush() // what the background had written when the power went
	s.wmu.Lock()
	s.wal.f.Close()
	s.wal = nil
	s.wmu.Unlock()
	s.Close()
}

// commitItems makes n commits of one item each and returns their hashes.
func commitItems(t *testing.T, s *Store, n int) []Hash {
	t.Helper()
	var hs []Hash
	for i := 0; i < n; i++ {
		hs = append(hs, put(t, s, fmt.Sprintf("items/%02x/%d", i%3, i), fmt.Sprintf("item %d", i)))
	}
	return hs
}

// TestWALPowerCut simulates a power cut after commits that are durable only
// in the commit log: the packs their batches were written to are lost (their
// renames into objects/pack were never synced), any loose object is lost or
// left empty, and the branch file is empty. Open must replay the log and
// have every commit.
func TestWALPowerCut(t *testing.T) {
	s := newStore(t)
	path := s.Path()
	heads := commitItems(t, s, 20)
	data, err := os.ReadFile(filepath.Join(path, walName))
	if err != nil || len(data) == 0 {
		t.Fatalf("commit log is empty after 20 commits (%v)", err)
	}
	recs, dropped := readWAL(data)
	if len(recs) != 20 || dropped != 0 {
		t.Fatalf("commit log holds %d records (%d bytes dropped), want 20", len(recs), dropped)
	}
	crashAbandon(t, s)
	packs, _ := filepath.Glob(filepath.Join(path, "objects", "pack", "pack-*"))
	if len(packs) == 0 {
		t.Fatal("no batch packs written")
	}
	for _, p := range packs {
		os.Remove(p)
	}
	lost := 0
	for i, rec := range recs {
		for j, o := range rec.objects {
			hx := o.Hash().String()
			p := filepath.Join(path, "objects", hx[:2], hx[2:])
			if (i+j)%2 == 0 {
				os.Remove(p)
			} else {
				os.Chmod(p, 0o644)
				os.Truncate(p, 0)
			}
			lost++
		}
	}
	if err := os.WriteFile(filepath.Join(path, "refs", "heads", DefaultBranch), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open after the power cut: %v", err)
	}
	defer s2.Close()
	head, err := s2.Resolve("")
	if err != nil || head != heads[len(heads)-1] {
		t.Fatalf("head after replay = %s (%v), want %s", head, err, heads[len(heads)-1])
	}
	for i := 0; i < 20; i++ {
		got, err := s2.Read("", fmt.Sprintf("items/%02x/%d", i%3, i))
		if err != nil || string(got) != fmt.Sprintf("item %d", i) {
			t.Fatalf("item %d after replay: %q, %v", i, got, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(path, walName)); err != nil || fi.Size() != 0 {
		t.Fatalf("commit log not emptied after replay: %v", err)
	}
	fsck(t, path)
	if n := len(runGit(t, path, "rev-list", "--all")); n == 0 {
		t.Fatal("no commits")
	}
	t.Logf("replayed %d records, %d objects lost, %d pack files lost", len(recs), lost, len(packs))
}

// TestWALTornTail: a record cut short by a crash (never acknowledged) is
// dropped; the records before it are replayed.
func TestWALTornTail(t *testing.T) {
	s := newStore(t)
	path := s.Path()
	heads := commitItems(t, s, 5)
	crashAbandon(t, s)
	data, _ := os.ReadFile(filepath.Join(path, walName))
	f, _ := os.OpenFile(filepath.Join(path, walName), os.O_APPEND|os.O_WRONLY, 0)
	f.Write(data[:len(data)/7])
	f.Close()
	// The last commit's branch move was lost; replay must redo it.
	if err := os.WriteFile(filepath.Join(path, "refs", "heads", DefaultBranch), []byte(heads[1].String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s2.Close()
	if head, _ := s2.Resolve(""); head != heads[4] {
		t.Fatalf("head = %s, want %s", head, heads[4])
	}
	fsck(t, path)
}

// TestWALReplayTwice: replaying a log whose work is already in the
// repository changes nothing.
func TestWALReplayTwice(t *testing.T) {
	s := newStore(t)
	path := s.Path()
	commitItems(t, s, 5)
	crashAbandon(t, s)
	data, _ := os.ReadFile(filepath.Join(path, walName))
	for i := 0; i < 2; i++ {
		if err := os.WriteFile(filepath.Join(path, walName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		// A commit after the replay: the old records must not move the
		// branch back when replayed again.
		put(t, s2, fmt.Sprintf("after/%d", i), "x")
		s2.Close()
	}
	s3, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	for i := 0; i < 2; i++ {
		if _, err := s3.Read("", fmt.Sprintf("after/%d", i)); err != nil {
			t.Fatalf("after/%d: %v", i, err)
		}
	}
	fsck(t, path)
}

// TestWALCheckpoint: a full log is emptied, and other kinds of writes
// (a branch) empty it first.
func TestWALCheckpoint(t *testing.T) {
	s := newStore(t)
	commitItems(t, s, 3)
	if s.wal.size == 0 {
		t.Fatal("commit log empty after commits")
	}
	if _, err := s.CreateBranch(context.Background(), "b", DefaultBranch); err != nil {
		t.Fatal(err)
	}
	if s.wal.size != 0 {
		t.Fatalf("commit log holds %d bytes after another kind of write", s.wal.size)
	}
}

// TestWALEarlyCheckpoint: once the log is half full, the batch writer
// empties it after a batch, so that no client's commit waits for the
// queue to be written and the file system synced (the checkpoint a full
// log forces); the log is a new file, and the commits are all there
// after a reopen.
func TestWALEarlyCheckpoint(t *testing.T) {
	s := newStore(t)
	before, err := os.Stat(filepath.Join(s.Path(), walName))
	if err != nil {
		t.Fatal(err)
	}
	hs := commitItems(t, s, walMaxRecords/2+1)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	// The batch writer checkpoints after the batch Flush waited for.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		s.wmu.Lock()
		size, recs := s.wal.size, s.wal.records
		s.wmu.Unlock()
		if size == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the commit log still holds %d records (%d bytes) a minute after the batch", recs, size)
		}
	}
	after, err := os.Stat(filepath.Join(s.Path(), walName))
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Error("the emptied log is the same file: truncated in place under the writer lock")
	}
	hs = append(hs, put(t, s, "items/last", "after the checkpoint"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if head, _ := s2.Resolve(DefaultBranch); head != hs[len(hs)-1] {
		t.Fatalf("head after reopen %s, want %s", short(head), short(hs[len(hs)-1]))
	}
	fsckOpen(t, s2)
}

// TestWALSharedWithAnotherOpen: a second Store on the same repository
// (another process, or a pull, push or clone by path in this one) takes
// the flock while the first is idle, replays the commit log and empties it
// as it closes. The first then appends at the log's real end: a blob it
// reads back from the log (larger than streamThreshold) is read from
// where it was written, not from where the log ended before, and reaches
// the repository whole.
func TestWALSharedWithAnotherOpen(t *testing.T) {
	a := newStore(t)
	put(t, a, "x/1", "one")
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	b, err := Open(a.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "x/2", "two")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	big := noise(3*streamThreshold, 7)
	var h Hash
	_, err = a.Update(context.Background(), CommitOptions{Message: "big"}, func(tx *Tx) error {
		var err error
		h, err = tx.PutBlob("x/big", big)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// b's checkpoint put a new file in the log's place: a's record is
	// there, not in the file a had open before.
	if fi, err := os.Stat(filepath.Join(a.Path(), walName)); err != nil || fi.Size() == 0 {
		t.Fatalf("the commit log holds nothing after a's commit (%v): it went to the old file", err)
	}
	for _, when := range []string{"pending", "written"} {
		got, err := a.ReadBlob(h)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if !bytes.Equal(got, big) {
			t.Fatalf("%s: the blob read back differs from the one put", when)
		}
		if err := a.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := a.Snapshot("")
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"x/1": "one", "x/2": "two"} {
		if got, err := sn.Read(p); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", p, got, err, want)
		}
	}
	fsckOpen(t, a)
}

// TestPushToOtherBranchNoCheckpoint: a push to a branch that no record
// of the commit log moves (a replica's push to replica/PEER) leaves the
// log as it is (no checkpoint under the writer lock, where local commits
// wait); one to a branch the log moves (main, here) empties it first.
func TestPushToOtherBranchNoCheckpoint(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "x/1", "one")
	rem, b := cloneOverHTTP(t, a)
	put(t, b, "y/1", "from b")
	put(t, a, "x/2", "two") // a record of main in a's log
	logSize := func() int64 {
		a.wmu.Lock()
		defer a.wmu.Unlock()
		return a.wal.size
	}
	if logSize() == 0 {
		t.Fatal("a's commit log is empty after a commit")
	}
	if err := b.Push(ctx, rem, SyncOptions{RemoteBranch: "replica/b"}); err != nil {
		t.Fatal(err)
	}
	hb, _ := b.Resolve("")
	if h, err := a.Resolve("replica/b"); err != nil || h != hb {
		t.Fatalf("a's replica/b: %v, %v; want %v", h, err, hb)
	}
	if logSize() == 0 {
		t.Error("a push to replica/b emptied the commit log (a checkpoint)")
	}
	// b's main fast-forwards a's after a pull: a push of it to main must
	// come after the log's record of x/2.
	if _, err := b.Pull(ctx, rem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx, rem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if logSize() != 0 {
		t.Error("a push to main did not empty the commit log first")
	}
	sn, err := a.Snapshot("")
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"x/1": "one", "x/2": "two", "y/1": "from b"} {
		if got, err := sn.Read(p); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", p, got, err, want)
		}
	}
	fsckOpen(t, a)
}
