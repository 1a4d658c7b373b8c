package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestObjectSize: the size read from an object's header (pending, whole
// in a pack, a delta in a pack after GC, loose) is its content's length.
func TestObjectSize(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	want := map[Hash]int{}
	for i := range 12 {
		// Similar blobs, so that GC stores most as deltas (small
		// enough for that: gcWholeAbove).
		data := strings.Repeat(fmt.Sprintf("line %d of a long enough item\n", i%3), 40+i)
		h, err := s.Update(ctx, CommitOptions{}, func(tx *Tx) error {
			_, err := tx.PutBlob(fmt.Sprintf("items/%d", i), []byte(data))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		_ = h
		want[BlobHash([]byte(data))] = len(data)
	}
	check := func(when string) (deltas int) {
		t.Helper()
		err := s.readObjs(func(o *objReader) error {
			for h, n := range want {
				got, ok, err := o.size(h)
				if err != nil || !ok || got != int64(n) {
					t.Errorf("%s: size of %s: %d, %v, %v; want %d", when, h, got, ok, err, n)
				}
				for _, p := range o.packList() {
					if off, found := p.idx.offset(h); found {
						var b [1]byte
						p.f.ReadAt(b[:], off)
						if typ := plumbing.ObjectType((b[0] >> 4) & 7); typ == plumbing.OFSDeltaObject || typ == plumbing.REFDeltaObject {
							deltas++
						}
					}
				}
			}
			if _, ok, err := o.size(Hash{1, 2, 3}); ok || err != nil {
				t.Errorf("%s: an object not in the store: ok %v, %v", when, ok, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return deltas
	}
	check("pending or in batches")
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	check("in packs")
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if d := check("after GC"); d == 0 {
		t.Error("GC stored no blob as a delta: the delta case went untested")
	}
}

// TestPushItemTooLarge: a pushed item larger than the store takes is
// refused whatever its prefix (a pack's item under a prefix with no
// validator was never read, so never measured), and the store is left as
// it was.
func TestPushItemTooLarge(t *testing.T) {
	defer func(n int64) { maxPushItem = n }(maxPushItem)
	maxPushItem = 1000
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "x/1", "one")
	rem, b := cloneOverHTTP(t, a)
	put(t, b, "free/big", strings.Repeat("b", 2000))
	before, _ := a.Resolve("")
	err := b.Push(ctx, rem, SyncOptions{})
	if err == nil || !strings.Contains(err.Error(), "at most 1000 bytes") {
		t.Fatalf("push of a 2000-byte item: %v; want a refusal naming the limit", err)
	}
	if after, _ := a.Resolve(""); after != before {
		t.Fatalf("the refused push moved main from %s to %s", before, after)
	}
	// (b's history holds the refused item: a fresh clone writes a small one.)
	c, err := Clone(ctx, rem, filepath.Join(t.TempDir(), "c.git"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	put(t, c, "free/big", strings.Repeat("s", 900))
	if err := c.Push(ctx, rem, SyncOptions{}); err != nil {
		t.Fatalf("push of a 900-byte item: %v", err)
	}
	fsckOpen(t, a)
}
