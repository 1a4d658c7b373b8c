package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// indexWholePack indexes a pack without deltas as go-git's parser does, and
// refuses one whose checksum or content does not match.
func TestIndexWholePack(t *testing.T) {
	var objs []plumbing.EncodedObject
	for i := range 50 {
		objs = append(objs, memObject(plumbing.BlobObject, bytes.Repeat([]byte(fmt.Sprint("blob ", i, "\n")), i*40)))
	}
	objs = append(objs, memObject(plumbing.BlobObject, []byte{}))
	dir := t.TempDir()
	path := filepath.Join(dir, "p.pack")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantSum, _, err := writeObjectsPack(f, objs)
	if err != nil {
		t.Fatal(err)
	}
	sum, idx, ok, err := indexWholePack(f, nil)
	if err != nil || !ok || sum != wantSum {
		t.Fatalf("indexWholePack = %s, %v, %v; want %s", sum, ok, err, wantSum)
	}
	// go-git's parser, for comparison.
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	iw := new(idxfile.Writer)
	p, err := packfile.NewParser(packfile.NewScanner(f), iw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(); err != nil {
		t.Fatal(err)
	}
	ref, err := iw.Index()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		off, err := idx.FindOffset(o.Hash())
		roff, rerr := ref.FindOffset(o.Hash())
		crc, _ := idx.FindCRC32(o.Hash())
		rcrc, _ := ref.FindCRC32(o.Hash())
		if err != nil || rerr != nil || off != roff || crc != rcrc {
			t.Errorf("object %s: offset %d crc %x (%v), go-git: %d %x (%v)", o.Hash(), off, crc, err, roff, rcrc, rerr)
		}
	}
	// A flipped byte in an entry, and in the checksum.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{len(data) / 2, len(data) - 1} {
		bad := append([]byte(nil), data...)
		bad[at] ^= 0x40
		bp := filepath.Join(dir, fmt.Sprint("bad", at))
		if err := os.WriteFile(bp, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		bf, err := os.Open(bp)
		if err != nil {
			t.Fatal(err)
		}
		_, _, ok, err := indexWholePack(bf, nil)
		bf.Close()
		if err == nil {
			t.Errorf("byte %d of %d flipped: indexed (ok %v)", at, len(data), ok)
		} else if at == len(data)-1 && !errors.Is(err, ErrCorrupt) {
			t.Errorf("checksum flipped: %v, want ErrCorrupt", err)
		}
	}
}

// BenchmarkIndexWholePack indexes a pack as a replica receives them: a
// hundred commits' trees (six each, of 37 items) and messages, the trees
// kept decoded for the caches.
func BenchmarkIndexWholePack(b *testing.B) {
	var objs []plumbing.EncodedObject
	for i := range 600 {
		var es []object.TreeEntry
		for j := range 37 {
			var h Hash
			h[0], h[1], h[2] = byte(i), byte(j), byte(i*j)
			es = append(es, object.TreeEntry{Name: fmt.Sprintf("%016x", j*7919+i), Mode: filemode.Regular, Hash: h})
		}
		sortTreeEntries(es)
		o, _ := encodeTree(es)
		objs = append(objs, o)
		if i%6 == 0 {
			objs = append(objs, memObject(plumbing.BlobObject, []byte(fmt.Sprintf("From: x\r\nSubject: %d\r\n\r\n%0400d\r\n", i, i))))
		}
	}
	f, _ := os.Create(filepath.Join(b.TempDir(), "p.pack"))
	defer f.Close()
	writeObjectsPack(f, objs)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dec := newRecvDecoded(newTreeCache(1 << 16))
		if _, _, ok, err := indexWholePack(f, dec); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
