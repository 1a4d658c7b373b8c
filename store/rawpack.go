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

// writeRawPack writes n objects, the i-th given by next, to f as a version 2
// pack without deltas, and returns its checksum and index. next vouches
// for the hashes (a batch's objects were hashed from their content when
// they were made; PackLoose checks what it reads). Each object is read and
// compressed once, and the index comes from what was written,
// where go-git's encoder reads every object again and the pack must then be
// parsed back to index it: the incremental repack, which runs while commits
// go on, costs a third of the CPU it did.
func writeRawPack(f *os.File, n int, next func(i int) (Hash, plumbing.ObjectType, []byte, error)) (Hash, *idxfile.MemoryIndex, error) {
	pw, err := newPackWriter(f, n)
	if err != nil {
		return Hash{}, nil, err
	}
	crc := crc32.NewIEEE()
	cw := &countWriter{}
	zw := zlibWriters.Get().(*zlib.Writer)
	defer zlibWriters.Put(zw)
	for i := 0; i < n; i++ {
		h, t, data, err := next(i)
		if err != nil {
			return Hash{}, nil, fmt.Errorf("object %s: %w", h, err)
		}
		crc.Reset()
		cw.w, cw.n = io.MultiWriter(pw.bw, crc), 0
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
		if err := pw.add(h, cw.n, crc.Sum32()); err != nil {
			return Hash{}, nil, err
		}
	}
	return pw.finish()
}

// packWriter writes a version 2 pack to a file and indexes it as it goes:
// entries are written to bw, then announced with add.
type packWriter struct {
	f   *os.File
	sum hash.Hash
	bw  *bufio.Writer
	iw  *idxfile.Writer
	off int64
}

// newPackWriter writes the header of a pack of n objects.
func newPackWriter(f *os.File, n int) (*packWriter, error) {
	p := &packWriter{f: f, sum: sha1.New(), iw: new(idxfile.Writer)}
	p.bw = bufio.NewWriterSize(io.MultiWriter(f, p.sum), 256<<10)
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(n))
	if _, err := p.bw.Write(hdr[:]); err != nil {
		return nil, err
	}
	if err := p.iw.OnHeader(uint32(n)); err != nil {
		return nil, err
	}
	p.off = int64(len(hdr))
	return p, nil
}

// add indexes object h, whose entry of size bytes (CRC-32 crc) was just
// written.
func (p *packWriter) add(h Hash, size int64, crc uint32) error {
	if err := p.iw.OnInflatedObjectContent(h, p.off, crc, nil); err != nil {
		return err
	}
	p.off += size
	return nil
}

// finish writes the pack's checksum and returns it with the index.
func (p *packWriter) finish() (Hash, *idxfile.MemoryIndex, error) {
	if err := p.bw.Flush(); err != nil {
		return Hash{}, nil, err
	}
	var packSum Hash
	copy(packSum[:], p.sum.Sum(nil))
	if _, err := p.f.Write(packSum[:]); err != nil {
		return Hash{}, nil, err
	}
	if err := p.iw.OnFooter(packSum); err != nil {
		return Hash{}, nil, err
	}
	idx, err := p.iw.Index()
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
