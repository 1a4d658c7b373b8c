package store

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/format/idxfile"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// TestObjReaderMatchesGit reads every object of a repository that stock git
// packed with deltas (offset deltas, then reference deltas) through the
// store's own object reader and through go-git, and compares them.
func TestObjReaderMatchesGit(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"loose", nil},
		{"ofs-delta", []string{"repack", "-adf", "--depth=20", "--window=50"}},
		{"ref-delta", []string{"-c", "repack.useDeltaBaseOffset=false", "repack", "-adf", "--depth=20", "--window=50"}},
		{"loose-and-packed", []string{"repack", "-d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			ctx := context.Background()
			text := strings.Repeat("the quick brown fox jumps over the lazy dog\n", 200)
			for i := 0; i < 30; i++ {
				_, err := s.Update(ctx, CommitOptions{Message: fmt.Sprint(i)}, func(tx *Tx) error {
					for j := 0; j < 5; j++ {
						b := []byte(fmt.Sprintf("%d %d\n%s%d", i, j, text[:len(text)-i*40], i*j))
						if err := tx.Put(fmt.Sprintf("d%d/f%d", j, i%7), b); err != nil {
							return err
						}
					}
					return tx.Put("empty", nil)
				})
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "loose-and-packed" && i == 15 {
					s.pend.drain()
					runGit(t, s.Path(), "repack", "-adf")
				}
			}
			if tc.args != nil {
				s.pend.drain() // stock git must see every object
				runGit(t, s.Path(), tc.args...)
				if out := runGit(t, s.Path(), "verify-pack", "-v", globOne(t, s.Path()+"/objects/pack/*.idx")); tc.name != "loose-and-packed" && !strings.Contains(out, "chain length") {
					t.Fatalf("git made no deltas:\n%s", out)
				}
			}
			if err := s.pend.drain(); err != nil {
				t.Fatal(err)
			}
			if err := s.reload(); err != nil {
				t.Fatal(err)
			}
			n := 0
			iter, err := s.st.IterEncodedObjects(plumbing.AnyObject)
			if err != nil {
				t.Fatal(err)
			}
			err = iter.ForEach(func(want plumbing.EncodedObject) error {
				wantData, err := readAll(want)
				if err != nil {
					return err
				}
				typ, got, err := s.objs.read(want.Hash())
				if err != nil {
					return fmt.Errorf("objReader: %w", err)
				}
				if typ != want.Type() || !bytes.Equal(got, wantData) {
					return fmt.Errorf("object %s: objReader gives %s of %d bytes, go-git %s of %d", want.Hash(), typ, len(got), want.Type(), len(wantData))
				}
				n++
				return nil
			})
			if err != nil && err != storer.ErrStop {
				t.Fatal(err)
			}
			if n < 100 {
				t.Fatalf("compared only %d objects", n)
			}
			if _, _, err := s.objs.read(plumbing.NewHash("0123456789012345678901234567890123456789")); err == nil {
				t.Fatal("reading a missing object did not fail")
			}
		})
	}
}

func TestParseTreeRejectsGarbage(t *testing.T) {
	for _, bad := range []string{"100644 name", "100644 x\x00short", "abc x\x00" + strings.Repeat("a", 20)} {
		if _, err := parseTree(Hash{}, []byte(bad)); err == nil {
			t.Errorf("parseTree(%q) did not fail", bad)
		}
	}
}

func globOne(t *testing.T, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("no file matches %s", pattern)
	}
	return m[0]
}

// TestPackOffset checks the object reader's lookups in a pack index
// (packIndex, over the file's bytes) against go-git's, offsets beyond 2 GiB
// included, and that damaged index files are refused.
func TestPackOffset(t *testing.T) {
	w := new(idxfile.Writer)
	want := map[Hash]int64{}
	for i := 0; i < 3000; i++ {
		h := BlobHash([]byte(fmt.Sprint(i)))
		off := int64(12 + i*97)
		if i%7 == 0 {
			off += 1 << 32 // beyond 2 GiB: in the 64-bit table
		}
		w.Add(h, uint64(off), uint32(i))
		want[h] = off
	}
	// Names alike in their first eight bytes (the search's first
	// comparison), every other one in the index.
	var alike []Hash
	for j := range 40 {
		h := Hash{0xab, 1, 2, 3, 4, 5, 6, 7}
		h[8+j%12] = byte(j + 1)
		h[19] = byte(j)
		alike = append(alike, h)
		if j%2 == 0 {
			w.Add(h, uint64(5+j), 0)
			want[h] = int64(5 + j)
		}
	}
	if err := w.OnFooter(Hash{}); err != nil {
		t.Fatal(err)
	}
	idx, err := w.Index()
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	if _, err := idxfile.NewEncoder(&file).Encode(idx); err != nil {
		t.Fatal(err)
	}
	x, err := newPackIndex(file.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for h, off := range want {
		got, ok := x.offset(h)
		if x.contains(h) != ok {
			t.Fatalf("%s: contains and offset disagree", h)
		}
		lib, err := idx.FindOffset(h)
		if !ok || got != off || err != nil || lib != off {
			t.Fatalf("%s: packOffset %d %v, FindOffset %d %v, want %d", h, got, ok, lib, err, off)
		}
	}
	for j, h := range alike {
		if _, ok := x.offset(h); ok != (j%2 == 0) {
			t.Fatalf("%s (alike in its first eight bytes): found %v, want %v", h, ok, j%2 == 0)
		}
	}
	for i := 3000; i < 3100; i++ {
		if off, ok := x.offset(BlobHash([]byte(fmt.Sprint(i)))); ok {
			t.Fatalf("a hash not in the index found at %d", off)
		}
	}
	if x.n != len(want) {
		t.Fatalf("index of %d objects, want %d", x.n, len(want))
	}
	for i := range x.n {
		h := x.hash(i)
		var prev Hash
		if i > 0 {
			prev = x.hash(i - 1)
		}
		if _, ok := want[h]; !ok || (i > 0 && bytes.Compare(prev[:], h[:]) >= 0) {
			t.Fatalf("hash %d (%s) not one of the index's, or out of order", i, h)
		}
	}
	// Damaged files are refused, not read out of bounds.
	good := file.Bytes()
	bad := map[string][]byte{
		"truncated":   good[:len(good)-100],
		"short":       good[:500],
		"version 3":   append([]byte{0xff, 't', 'O', 'c', 0, 0, 0, 3}, good[8:]...),
		"fanout down": append(append(append([]byte{}, good[:8+4*10]...), 0, 0, 0, 0), good[8+4*11:]...),
	}
	for name, data := range bad {
		if _, err := newPackIndex(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
