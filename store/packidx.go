package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
)

// packIndex is a pack's index file (git's version 2 .idx) as the object
// reader looks objects up in it: the file itself, mapped into memory where
// the system allows (mapIdx), and searched in place. Decoding it into
// go-git's MemoryIndex instead cost about 100 bytes of heap a message in a
// mailbox (three to four objects each); a mapping costs page cache, which
// the kernel drops under pressure and reads back when needed.
//
// The mapping is released when the packIndex is garbage (a cleanup), not
// by a close: a reader that took the packs of an object reader being
// replaced (GC does) may still look things up in them.
type packIndex struct {
	data  []byte
	n     int // objects
	n64   int // entries of the 64-bit offset table
	names int // where the table of names starts in data
}

const idxHeader = 8 + 256*4 // magic, version, fanout

// openPackIndex maps the index file at path and checks its layout.
func openPackIndex(path string) (*packIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, unmap, err := mapIdx(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	x, err := newPackIndex(data)
	if err != nil {
		unmap()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	runtime.AddCleanup(x, func(unmap func()) { unmap() }, unmap)
	return x, nil
}

// newPackIndex checks that data is a version 2 pack index and returns it
// as one.
func newPackIndex(data []byte) (*packIndex, error) {
	if len(data) < idxHeader+2*20 {
		return nil, fmt.Errorf("pack index of %d bytes: too short", len(data))
	}
	if !bytes.Equal(data[:8], []byte{0xff, 't', 'O', 'c', 0, 0, 0, 2}) {
		return nil, fmt.Errorf("not a version 2 pack index (header %x)", data[:8])
	}
	prev := uint32(0)
	for i := range 256 {
		c := binary.BigEndian.Uint32(data[8+4*i:])
		if c < prev {
			return nil, fmt.Errorf("pack index: fanout entry %d (%d) below the one before (%d)", i, c, prev)
		}
		prev = c
	}
	n := int(prev)
	rest := len(data) - idxHeader - n*(20+4+4) - 2*20
	if rest < 0 || rest%8 != 0 {
		return nil, fmt.Errorf("pack index of %d bytes cannot hold %d objects", len(data), n)
	}
	return &packIndex{data: data, n: n, n64: rest / 8, names: idxHeader}, nil
}

func (x *packIndex) fanout(b int) int {
	if b < 0 {
		return 0
	}
	return int(binary.BigEndian.Uint32(x.data[8+4*b:]))
}

// find returns h's position in the index. The binary search compares
// the names' first eight bytes as one number and only ties byte by byte
// (a call of bytes.Compare at every step was most of a lookup's time).
func (x *packIndex) find(h Hash) (int, bool) {
	lo, end := x.fanout(int(h[0])-1), x.fanout(int(h[0]))
	key := binary.BigEndian.Uint64(h[:8])
	d := x.data
	for hi := end; lo < hi; {
		m := int(uint(lo+hi) >> 1)
		p := x.names + m*20
		if k := binary.BigEndian.Uint64(d[p : p+8]); k < key || k == key && bytes.Compare(d[p+8:p+20], h[8:]) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	ok := lo < end && bytes.Equal(d[x.names+lo*20:x.names+lo*20+20], h[:])
	runtime.KeepAlive(x)
	return lo, ok
}

// hash is the i-th hash of the index, in order.
func (x *packIndex) hash(i int) Hash {
	var h Hash
	copy(h[:], x.data[x.names+i*20:])
	runtime.KeepAlive(x)
	return h
}

// contains reports whether the pack holds h.
func (x *packIndex) contains(h Hash) bool {
	_, ok := x.find(h)
	return ok
}

// offset returns where h starts in the pack.
func (x *packIndex) offset(h Hash) (int64, bool) {
	i, ok := x.find(h)
	if !ok {
		return 0, false
	}
	return x.offsetAt(i)
}

// crcAt is the CRC-32 of the i-th entry's bytes in the pack.
func (x *packIndex) crcAt(i int) uint32 {
	defer runtime.KeepAlive(x)
	return binary.BigEndian.Uint32(x.data[x.names+x.n*20+i*4:])
}

// offsetAt returns where the i-th object starts in the pack.
func (x *packIndex) offsetAt(i int) (int64, bool) {
	defer runtime.KeepAlive(x)
	off32 := x.names + x.n*20 + x.n*4 // after the names and the CRCs
	off := binary.BigEndian.Uint32(x.data[off32+i*4:])
	if off&(1<<31) == 0 {
		return int64(off), true
	}
	j := int(off &^ (1 << 31))
	if j >= x.n64 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(x.data[off32+x.n*4+j*8:])), true
}
