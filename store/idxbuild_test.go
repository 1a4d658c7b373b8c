package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// TestIdxBuilder: the index idxBuilder makes is, byte for byte, the one
// go-git's idxfile.Writer makes from the same entries: names in order,
// a name added twice once (the first), offsets of 2 GiB and above in the
// 64-bit table, empty fanout buckets, and none at all.
func TestIdxBuilder(t *testing.T) {
	for _, n := range []int{0, 1, 7, 3000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(n), 5))
			var b idxBuilder
			w := new(idxfile.Writer)
			if err := w.OnHeader(uint32(n)); err != nil {
				t.Fatal(err)
			}
			off := int64(12)
			for i := range n {
				h := BlobHash([]byte(fmt.Sprint(i)))
				if i%11 == 5 { // a name seen before, at another offset
					h = BlobHash([]byte(fmt.Sprint(i - 3)))
				}
				if i%97 == 0 && i > 0 {
					off += 1 << 31 // past 2 GiB, and on
				}
				crc := rng.Uint32()
				b.add(h, off, crc)
				if err := w.OnInflatedObjectContent(h, off, crc, nil); err != nil {
					t.Fatal(err)
				}
				off += int64(1 + rng.IntN(500))
			}
			sum := BlobHash([]byte("pack"))
			if err := w.OnFooter(sum); err != nil {
				t.Fatal(err)
			}
			want, err := w.Index()
			if err != nil {
				t.Fatal(err)
			}
			var got, lib bytes.Buffer
			if _, err := idxfile.NewEncoder(&got).Encode(b.index(sum)); err != nil {
				t.Fatal(err)
			}
			if _, err := idxfile.NewEncoder(&lib).Encode(want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), lib.Bytes()) {
				t.Fatalf("index of %d entries: %d bytes differ from go-git's %d", n, got.Len(), lib.Len())
			}
			if n > 0 {
				if _, err := newPackIndex(got.Bytes()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
