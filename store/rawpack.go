package store

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// writeRawPack writes n objects, the i-th given by next, to f (a file, or
// a fetch's or push's stream) as a version 2
// pack without deltas, and returns its checksum and index. next vouches
// for the hashes (a batch's objects were hashed from their content when
// they were made; PackLoose checks what it reads). Each object is read and
// compressed once, and the index comes from what was written,
// where go-git's encoder reads every object again and the pack must then be
// parsed back to index it: the incremental repack, which runs while commits
// go on, costs a third of the CPU it did.
func writeRawPack(f io.Writer, n int, writers *freeList[*zlib.Writer], next func(i int) (Hash, plumbing.ObjectType, []byte, error)) (Hash, *idxfile.MemoryIndex, error) {
	pw, err := newPackWriter(f, n)
	if err != nil {
		return Hash{}, nil, err
	}
	zw := writers.get()
	defer writers.put(zw)
	for i := 0; i < n; i++ {
		h, t, data, err := next(i)
		if err != nil {
			return Hash{}, nil, fmt.Errorf("object %s: %w", h, err)
		}
		if _, err := pw.compress(zw, h, t, int64(len(data)), bytes.NewReader(data), nil); err != nil {
			return Hash{}, nil, err
		}
	}
	return pw.finish()
}

// packWriter writes a version 2 pack to a file and indexes it as it goes:
// entries are written to bw, then announced with add.
type packWriter struct {
	f   io.Writer
	sum hash.Hash
	bw  *bufio.Writer
	iw  *idxBuilder // nil: a pack sent to a peer, not indexed
	off int64
}

// newPackWriter writes the header of a pack of n objects, to be indexed.
func newPackWriter(f io.Writer, n int) (*packWriter, error) {
	return startPack(f, n, &idxBuilder{ents: make([]idxfile.Entry, 0, n)})
}

// newStreamPackWriter is newPackWriter for a pack that goes to a peer:
// the receiver indexes it, so no index is built here (a sorted map of
// every object, which cost a push a sixth of its CPU); finish returns a
// nil index.
func newStreamPackWriter(f io.Writer, n int) (*packWriter, error) {
	return startPack(f, n, nil)
}

func startPack(f io.Writer, n int, iw *idxBuilder) (*packWriter, error) {
	p := &packWriter{f: f, sum: sha1.New(), iw: iw}
	p.bw = packWriteBufs.get()
	p.bw.Reset(io.MultiWriter(f, p.sum))
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(n))
	if _, err := p.bw.Write(hdr[:]); err != nil {
		return nil, err
	}
	p.off = int64(len(hdr))
	return p, nil
}

// add indexes object h, whose entry of size bytes (CRC-32 crc) was just
// written.
func (p *packWriter) add(h Hash, size int64, crc uint32) error {
	if p.iw != nil {
		p.iw.add(h, p.off, crc)
	}
	p.off += size
	return nil
}

// finish writes the pack's checksum and returns it with the index.
func (p *packWriter) finish() (Hash, *idxfile.MemoryIndex, error) {
	if err := p.bw.Flush(); err != nil {
		return Hash{}, nil, err
	}
	p.bw.Reset(nil)
	packWriteBufs.put(p.bw)
	p.bw = nil
	var packSum Hash
	copy(packSum[:], p.sum.Sum(nil))
	if _, err := p.f.Write(packSum[:]); err != nil {
		return Hash{}, nil, err
	}
	if p.iw == nil {
		return packSum, nil, nil
	}
	return packSum, p.iw.index(packSum), nil
}

// packWriteBufs are packWriters' buffers, 256 KiB each: a node with peers
// writes a pack per push and per batch, several a second.
var packWriteBufs = newFreeList(2, func() *bufio.Writer { return bufio.NewWriterSize(nil, 256<<10) })

// zlibWriters compress at zlib's fastest level: incremental packs are
// written while commits go on, and the full repack rewrites them anyway.
// gcWriters compress at zlib's default level, as git does, for what the
// full repack keeps whole (gc.go).
var zlibWriters = newFreeList(2, func() *zlib.Writer {
	w, _ := zlib.NewWriterLevel(io.Discard, zlib.BestSpeed)
	return w
})

var gcWriters = newFreeList(0, func() *zlib.Writer { // (GC is rare: none kept)
	w, _ := zlib.NewWriterLevel(io.Discard, zlib.DefaultCompression)
	return w
})

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

// packKeeper is told of the objects indexWholePack reads: the receiving
// store decodes the trees and commits a push brings as they go by, which it
// would otherwise read and inflate again at once to check them.
type packKeeper interface {
	// wants reports whether it wants the content of an object of type t
	// and size bytes (it must bound what it takes).
	wants(t plumbing.ObjectType, size int64) bool
	// got hands over the content of object h, lent: it is overwritten
	// after got returns.
	got(h Hash, t plumbing.ObjectType, data []byte)
}

// maxInflated is the largest object indexWholePack inflates into memory
// to hash it; a larger one is hashed as it is inflated.
const maxInflated = 1 << 20

// indexWholePack indexes the pack in f when its entries are all whole
// objects (no deltas), as the packs that replicas send are: each object is
// inflated and hashed once (go-git's parser inflates each twice), and
// the entries' CRCs and the pack's checksum are computed in one pass over
// the file's bytes. ok is false, and f is to be parsed otherwise, at the
// first delta.
//
// keep, if not nil, is handed the objects it wants as they are read,
// before the pack's checksum is checked: what it keeps must wait for
// indexWholePack to succeed.
func indexWholePack(f *os.File, keep packKeeper) (sum Hash, idx *idxfile.MemoryIndex, ok bool, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Hash{}, nil, false, err
	}
	// The file is read through br, whose position (what was taken from
	// it) is where each entry starts; the zlib reader reads br byte by
	// byte, so no further than its stream's end.
	bufSize := int64(256 << 10)
	if fi, err := f.Stat(); err == nil {
		bufSize = min(max(fi.Size(), 4096), bufSize) // a push's pack is often smaller
	}
	fc := &countReader{r: f}
	sc := bufio.NewReaderSize(fc, int(bufSize))
	pos := func() int64 { return fc.n - int64(sc.Buffered()) }
	var hdr [12]byte
	if _, err := io.ReadFull(sc, hdr[:]); err != nil {
		return Hash{}, nil, false, fmt.Errorf("pack header: %w", err)
	}
	if string(hdr[:4]) != "PACK" || binary.BigEndian.Uint32(hdr[4:]) != 2 {
		return Hash{}, nil, false, fmt.Errorf("not a version 2 pack (header %x)", hdr[:8])
	}
	n := binary.BigEndian.Uint32(hdr[8:])
	type ent struct {
		h   Hash
		off int64
	}
	ents := make([]ent, 0, min(n, 1<<16)) // n is the sender's word
	zr, err := zlib.NewReader(bytes.NewReader(emptyZlib))
	if err != nil {
		return Hash{}, nil, false, err
	}
	var (
		one     [1]byte
		content []byte // the object's content, the buffer reused
		buf     []byte // for copying, made when needed
		ohdr    []byte // the object's header, hashed before its content
		sumBuf  = make([]byte, 0, 20)
	)
	hs := plumbing.NewHasher(plumbing.BlobObject, 0) // reset for each object
	for i := uint32(0); i < n; i++ {
		off := pos()
		t, size, err := readEntryHeader(sc)
		if err != nil {
			return Hash{}, nil, false, fmt.Errorf("pack entry %d: %w", i, err)
		}
		switch t {
		case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
		default:
			return Hash{}, nil, false, nil
		}
		if err := zr.(zlib.Resetter).Reset(sc, nil); err != nil {
			return Hash{}, nil, false, fmt.Errorf("pack entry %d: %w", i, err)
		}
		// The object's hash: of "type size\0" and the content (as
		// plumbing.NewHasher makes it).
		hs.Reset()
		ohdr = append(append(append(append(ohdr[:0], t.String()...), ' '), strconv.FormatInt(size, 10)...), 0)
		hs.Write(ohdr)
		want := keep != nil && keep.wants(t, size)
		if want || size <= maxInflated {
			if int64(cap(content)) < size {
				content = make([]byte, size)
			}
			content = content[:size]
			if _, err := io.ReadFull(zr, content); err != nil {
				return Hash{}, nil, false, fmt.Errorf("pack entry %d: %w", i, err)
			}
			hs.Write(content)
		} else {
			if buf == nil {
				buf = make([]byte, 64<<10)
			}
			m, err := io.CopyBuffer(hs, io.LimitReader(zr, size), buf)
			if err == nil && m < size {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return Hash{}, nil, false, fmt.Errorf("pack entry %d: %w", i, err)
			}
		}
		// The stream ends here (its checksum is read and checked).
		if k, err := zr.Read(one[:]); k != 0 || err != io.EOF {
			return Hash{}, nil, false, fmt.Errorf("pack entry %d: more data than its size %d", i, size)
		}
		var h Hash
		copy(h[:], hs.Hash.Sum(sumBuf[:0]))
		if want {
			keep.got(h, t, content)
		}
		ents = append(ents, ent{h, off})
	}
	end := pos()
	var trailer Hash
	if _, err := io.ReadFull(sc, trailer[:]); err != nil {
		return Hash{}, nil, false, fmt.Errorf("pack checksum: %w", err)
	}
	if k, _ := sc.Read(one[:]); k != 0 {
		return Hash{}, nil, false, errors.New("pack: data after the checksum")
	}
	// The checksum and the CRCs, in one pass over the file's bytes.
	if buf == nil {
		buf = make([]byte, 64<<10)
	}
	ps := sha1.New()
	crcs := make([]uint32, len(ents))
	k := -1 // the entry being read (-1: the pack's header)
	for pos := int64(0); pos < end; {
		m := int(min(int64(len(buf)), end-pos))
		if _, err := f.ReadAt(buf[:m], pos); err != nil {
			return Hash{}, nil, false, err
		}
		ps.Write(buf[:m])
		for chunk := buf[:m]; len(chunk) > 0; {
			next := end
			if k+1 < len(ents) {
				next = ents[k+1].off
			}
			take := min(int64(len(chunk)), next-pos)
			if k >= 0 {
				crcs[k] = crc32.Update(crcs[k], crc32.IEEETable, chunk[:take])
			}
			chunk, pos = chunk[take:], pos+take
			if pos == next && k+1 < len(ents) {
				k++
			}
		}
	}
	if !bytes.Equal(ps.Sum(nil), trailer[:]) {
		return Hash{}, nil, false, fmt.Errorf("pack checksum mismatch: %w", ErrCorrupt)
	}
	b := idxBuilder{ents: make([]idxfile.Entry, 0, len(ents))}
	for i, e := range ents {
		b.add(e.h, e.off, crcs[i])
	}
	return trailer, b.index(trailer), true, nil
}

// emptyZlib is a zlib stream of nothing, to make a reader to reset.
var emptyZlib = []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
