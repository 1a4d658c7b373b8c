package store

import (
	"bufio"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// writeRawPack writes the objects hashes (each readable through o) to f as
// a version 2 pack without deltas, and returns its checksum and index.
// Each object is read and compressed once, and the index comes from what
// was written, where go-git's encoder reads every object again and the pack
// must then be parsed back to index it: the incremental repack, which runs
// while commits go on, costs a third of the CPU it did.
func writeRawPack(f *os.File, o *objReader, hashes []Hash) (Hash, *idxfile.MemoryIndex, error) {
	sum := sha1.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 256<<10)
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(hashes)))
	if _, err := bw.Write(hdr[:]); err != nil {
		return Hash{}, nil, err
	}
	iw := new(idxfile.Writer)
	if err := iw.OnHeader(uint32(len(hashes))); err != nil {
		return Hash{}, nil, err
	}
	off := int64(len(hdr))
	crc := crc32.NewIEEE()
	cw := &countWriter{}
	zw := zlibWriters.Get().(*zlib.Writer)
	defer zlibWriters.Put(zw)
	for _, h := range hashes {
		t, data, err := o.read(h)
		if err != nil {
			return Hash{}, nil, fmt.Errorf("object %s: %w", h, err)
		}
		if got := plumbing.ComputeHash(t, data); got != h {
			return Hash{}, nil, fmt.Errorf("object %s: content hashes to %s: %w", h, got, ErrCorrupt)
		}
		crc.Reset()
		cw.w, cw.n = io.MultiWriter(bw, crc), 0
		if _, err := cw.Write(packEntryHeader(t, int64(len(data)))); err != nil {
			return Hash{}, nil, err
		}
		zw.Reset(cw)
		if _, err := zw.Write(data); err != nil {
			return Hash{}, nil, err
		}
		if err := zw.Close(); err != nil {
			return Hash{}, nil, err
		}
		if err := iw.OnInflatedObjectContent(h, off, crc.Sum32(), nil); err != nil {
			return Hash{}, nil, err
		}
		off += cw.n
	}
	if err := bw.Flush(); err != nil {
		return Hash{}, nil, err
	}
	var packSum Hash
	copy(packSum[:], sum.Sum(nil))
	if _, err := f.Write(packSum[:]); err != nil {
		return Hash{}, nil, err
	}
	if err := iw.OnFooter(packSum); err != nil {
		return Hash{}, nil, err
	}
	idx, err := iw.Index()
	return packSum, idx, err
}

// zlibWriters compress at zlib's fastest level: incremental packs are
// written while commits go on, and the full repack rewrites them anyway.
var zlibWriters = sync.Pool{New: func() any {
	w, _ := zlib.NewWriterLevel(io.Discard, zlib.BestSpeed)
	return w
}}

// packEntryHeader is a pack entry's type and size: 3 bits of type and 4
// of size, then 7 bits of size per byte.
func packEntryHeader(t plumbing.ObjectType, size int64) []byte {
	b := []byte{byte(t)<<4 | byte(size&0x0f)}
	size >>= 4
	for size > 0 {
		b[len(b)-1] |= 0x80
		b = append(b, byte(size&0x7f))
		size >>= 7
	}
	return b
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

var _ hash.Hash = sha1.New()
