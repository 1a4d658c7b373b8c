package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
)

// holdPending stops s's background writer, so that the commits made next
// stay pending (in memory, not in a pack) until resume starts it again
// (once: later calls do nothing).
func holdPending(t *testing.T, s *Store) (resume func()) {
	t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.pendStop == nil {
		t.Fatal("the store has no background writer")
	}
	close(s.pendStop)
	<-s.pendDone
	s.pendStop = nil
	return sync.OnceFunc(func() {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		s.pendStop, s.pendDone = make(chan struct{}), make(chan struct{})
		stop, done := s.pendStop, s.pendDone
		go func() {
			defer close(done)
			s.runPending(stop)
		}()
	})
}

// peers makes n clones of a, served over HTTP (to anyone, with write
// access), and returns their remotes. They clone a over HTTP too: a clone
// by path opens a's folder a second time in this process, and that
// store's Close empties the commit log that a still appends to, after
// which a reads its pending large blobs back wrong from the log.
func peers(t *testing.T, a *Store, n int) ([]*Store, []Remote) {
	t.Helper()
	anyone := WithGitAuthenticator(func(r *http.Request, name, password string) (User, error) {
		return User{Name: name, Git: GitWrite}, nil
	})
	serve := func(s *Store) Remote {
		srv := httptest.NewServer(s.GitHandler(nil, anyone))
		t.Cleanup(srv.Close)
		return Remote{URL: srv.URL + "/store.git", Username: "peer", Password: "peer"}
	}
	origin := serve(a)
	var stores []*Store
	var rems []Remote
	for i := range n {
		b, err := Clone(context.Background(), origin, filepath.Join(t.TempDir(), fmt.Sprintf("peer%d.git", i)), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		stores = append(stores, b)
		rems = append(rems, serve(b))
	}
	return stores, rems
}

// TestPushCompressesOnce: a commit pushed to two peers while it is pending
// (not yet in a pack) has each object compressed once, by the first push;
// the second push and the pack the background writer makes copy that
// entry. Both peers and the pushing store pass git fsck.
func TestPushCompressesOnce(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "x/1", "one")
	bs, rems := peers(t, a, 2)
	resume := holdPending(t, a)
	defer resume()
	before := entriesCompressed.Load()
	head, err := a.Update(ctx, CommitOptions{Message: "three items"}, func(tx *Tx) error {
		for i := range 3 {
			if err := tx.Put(fmt.Sprintf("y/%d", i), fmt.Appendf(nil, "item %d of a commit that two peers get", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := bs[0].Resolve("")
	objs, err := a.packObjects([]Hash{head}, []Hash{old})
	if err != nil {
		t.Fatal(err)
	}
	for _, rem := range rems {
		if err := a.Push(ctx, rem, SyncOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range objs {
		if _, ok := a.pend.entry(h); !ok {
			t.Errorf("object %s: no entry kept while pending", h)
		}
	}
	resume()
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	// y/0..2, the trees y and the root, the commit.
	if got := entriesCompressed.Load() - before; got != int64(len(objs)) || len(objs) != 6 {
		t.Errorf("%d objects compressed %d times, want once each", len(objs), got)
	}
	for i, b := range bs {
		if h, _ := b.Resolve(""); h != head {
			t.Errorf("peer %d at %s, want %s", i, h, head)
		}
		if got, _ := b.Read("", "y/2"); string(got) != "item 2 of a commit that two peers get" {
			t.Errorf("peer %d: y/2 = %q", i, got)
		}
		fsckOpen(t, b)
	}
	fsckOpen(t, a)
	a.pend.mu.Lock()
	kept := a.pend.entryBytes
	a.pend.mu.Unlock()
	if kept != 0 {
		t.Errorf("%d bytes of entries kept after the batch was written", kept)
	}
}

// TestPushCorruptEntry: a pack entry whose bytes no longer match their
// CRC (the pack index's for a stored object, the one taken when a pending
// object's entry was kept) fails the push with ErrCorrupt before anything
// reaches the peer.
func TestPushCorruptEntry(t *testing.T) {
	ctx := context.Background()
	t.Run("stored", func(t *testing.T) {
		a := newStore(t)
		put(t, a, "x/1", "one")
		bs, rems := peers(t, a, 1)
		old, _ := bs[0].Resolve("")
		put(t, a, "y/1", "a blob stored in a pack, then damaged on disk")
		if err := a.Flush(); err != nil {
			t.Fatal(err)
		}
		blob := hashOf(t, a, "y/1")
		var pack string
		var off int64
		a.readObjsOnce(func(o *objReader) error {
			for _, p := range o.packList() {
				if i, ok := p.idx.find(blob); ok {
					pack = filepath.Join(a.Path(), "objects", "pack", p.name)
					off, _ = p.idx.offsetAt(i)
				}
			}
			return nil
		})
		if pack == "" {
			t.Fatal("y/1 is not in a pack")
		}
		flipByte(t, pack, off+4) // in the zlib stream
		err := a.Push(ctx, rems[0], SyncOptions{})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("push of a damaged entry = %v, want ErrCorrupt", err)
		}
		if h, _ := bs[0].Resolve(""); h != old {
			t.Errorf("peer moved to %s", h)
		}
	})
	t.Run("pending", func(t *testing.T) {
		a := newStore(t)
		put(t, a, "x/1", "one")
		bs, rems := peers(t, a, 2)
		resume := holdPending(t, a)
		defer resume()
		old, _ := bs[1].Resolve("")
		put(t, a, "y/1", "a pending blob whose kept entry is damaged")
		if err := a.Push(ctx, rems[0], SyncOptions{}); err != nil {
			t.Fatal(err)
		}
		e, ok := a.pend.entry(hashOf(t, a, "y/1"))
		if !ok {
			t.Fatal("no entry kept")
		}
		e.data[len(e.data)/2] ^= 0x40
		a.pushPacks.body = nil // the pack built before the damage would go
		err := a.Push(ctx, rems[1], SyncOptions{})
		e.data[len(e.data)/2] ^= 0x40 // for the batch writer
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("push of a damaged kept entry = %v, want ErrCorrupt", err)
		}
		if h, _ := bs[1].Resolve(""); h != old {
			t.Errorf("peer moved to %s", h)
		}
	})
}

// hashOf is the hash of the blob at path on s's main branch.
func hashOf(t *testing.T, s *Store, path string) Hash {
	t.Helper()
	var h Hash
	err := s.readObjs(func(o *objReader) error {
		head, err := s.head(DefaultBranch)
		if err != nil {
			return err
		}
		root, err := o.commitTree(head)
		if err != nil {
			return err
		}
		e, ok, err := o.entry(root, path)
		if err == nil && !ok {
			err = fmt.Errorf("%s: no such path", path)
		}
		h = e.Hash
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// flipByte changes one bit of the byte at off in the file at path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// TestDrainQueuedBefore: drain waits for the commits queued when it was
// called, not for an empty queue: commits that keep coming (a client
// writing while a replica's push drains) do not hold it up.
func TestDrainQueuedBefore(t *testing.T) {
	p := newPending()
	commit := func(i int) pendingCommit {
		o := memObject(plumbing.BlobObject, fmt.Appendf(nil, "blob %d", i))
		return pendingCommit{branch: DefaultBranch, head: o.Hash(), objects: []plumbing.EncodedObject{o}}
	}
	p.add(commit(1))
	drained := make(chan error, 1)
	go func() { drained <- p.drain() }()
	// The writer's part, once drain asks for haste: the first commit is
	// written while a second comes.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		hurry := p.hurry
		p.mu.Unlock()
		if hurry == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("drain did not ask for haste")
		}
	}
	p.add(commit(2))
	p.mu.Lock()
	p.done(p.queue[:1:1])
	p.idle.Broadcast()
	p.mu.Unlock()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("drain still waits, for a commit queued after it was called")
	}
	if !p.busy() {
		t.Error("the second commit is no longer queued")
	}
}

// TestPushPackShared: a push of the same objects to a second peer sends
// the pack built for the first (kept in memory when small); a pack larger
// than maxSharedPack goes through a temporary file, is not kept, and the
// file is removed after the push. Every peer passes git fsck.
func TestPushPackShared(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "x/1", "one")
	bs, rems := peers(t, a, 4)
	h1 := put(t, a, "y/1", "small")
	if err := a.Push(ctx, rems[0], SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	kept := a.pushPacks.body
	if kept == nil {
		t.Fatal("the small pack was not kept")
	}
	before := entriesCompressed.Load()
	if err := a.Push(ctx, rems[1], SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := entriesCompressed.Load() - before; got != 0 || &a.pushPacks.body[0] != &kept[0] {
		t.Errorf("the second push built its pack again (%d entries compressed)", got)
	}
	// A large pack: spilled, not kept.
	defer func(m int) { maxSharedPack = m }(maxSharedPack)
	maxSharedPack = 1 << 10
	big := make([]byte, 128<<10) // more than the least limit, compressed
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	put(t, a, "z/1", string(big))
	for _, rem := range rems[2:] {
		if err := a.Push(ctx, rem, SyncOptions{}); err != nil {
			t.Fatal(err)
		}
		if a.pushPacks.body != nil {
			t.Errorf("a pack of more than %d bytes was kept", maxSharedPack)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(a.Path(), tmpDir, "push-*")); len(left) != 0 {
		t.Errorf("left in %s: %v", tmpDir, left)
	}
	head, _ := a.Resolve("")
	for i, b := range bs {
		want := head
		if i < 2 {
			want = h1
		}
		if h, _ := b.Resolve(""); h != want {
			t.Errorf("peer %d at %s, want %s", i, h, want)
		}
		fsckOpen(t, b)
	}
}

// TestKeepEntryBounded: a pending object's entry is kept only while the
// kept entries stay within the limit, and only for an object still
// pending; the bytes are counted back when its batch is written.
func TestKeepEntryBounded(t *testing.T) {
	p := newPending()
	p.entryLimit = 100
	var hs []Hash
	for i := range 3 {
		o := memObject(plumbing.BlobObject, fmt.Appendf(nil, "blob %d", i))
		p.add(pendingCommit{branch: DefaultBranch, head: o.Hash(), objects: []plumbing.EncodedObject{o}})
		hs = append(hs, o.Hash())
	}
	p.keepEntry(hs[0], packEntry{data: make([]byte, 60)})
	p.keepEntry(hs[1], packEntry{data: make([]byte, 60)})   // over the limit
	p.keepEntry(Hash{1}, packEntry{data: make([]byte, 10)}) // not pending
	if _, ok := p.entry(hs[0]); !ok {
		t.Error("the first entry was not kept")
	}
	if _, ok := p.entry(hs[1]); ok {
		t.Error("an entry past the limit was kept")
	}
	if _, ok := p.entry(Hash{1}); ok || p.entryBytes != 60 {
		t.Errorf("kept %d bytes, want 60", p.entryBytes)
	}
	p.mu.Lock()
	p.done(p.queue)
	p.mu.Unlock()
	if p.entryBytes != 0 {
		t.Errorf("%d bytes kept after the batch was written", p.entryBytes)
	}
}

// TestStoredEntries: trees, whatever their size, and objects under
// storeWhole are written in stored zlib blocks (no Huffman tables built),
// a larger blob is compressed; the pack indexes and reads back (go-git's
// parser too).
func TestStoredEntries(t *testing.T) {
	tree := func(n int) plumbing.EncodedObject {
		var b bytes.Buffer
		for i := range n {
			fmt.Fprintf(&b, "100644 message-%04d\x00", i)
			b.Write(bytes.Repeat([]byte{byte(i)}, 20))
		}
		return memObject(plumbing.TreeObject, b.Bytes())
	}
	small, large := tree(8), tree(200)
	blob := memObject(plumbing.BlobObject, bytes.Repeat([]byte("a line of a message\n"), 20))
	bigBlob := memObject(plumbing.BlobObject, bytes.Repeat([]byte("a line of a message\n"), 100))
	objs := []plumbing.EncodedObject{small, large, blob, bigBlob}
	f, err := os.Create(filepath.Join(t.TempDir(), "p.pack"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := writeObjectsPack(f, objs); err != nil {
		t.Fatal(err)
	}
	_, idx, ok, err := indexWholePack(f, nil)
	if err != nil || !ok {
		t.Fatalf("indexWholePack: %v, %v", ok, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	p, err := packfile.NewParser(packfile.NewScanner(f), new(idxfile.Writer))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		off, err := idx.FindOffset(o.Hash())
		if err != nil {
			t.Fatal(err)
		}
		var b [16]byte
		if _, err := f.ReadAt(b[:], int64(off)); err != nil {
			t.Fatal(err)
		}
		i := 1
		for b[i-1]&0x80 != 0 { // the entry's type and size
			i++
		}
		stored := (b[i+2]>>1)&3 == 0 // after zlib's 2-byte header: BTYPE
		if want := o != bigBlob; stored != want {
			t.Errorf("%s of %d bytes: stored %v, want %v", o.Type(), o.Size(), stored, want)
		}
	}
}
