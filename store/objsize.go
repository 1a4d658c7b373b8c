package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
)

// size returns the size of object h's content without reading the
// content: from a pending object, from its pack entry's header (for a
// delta, from the target size at the start of the delta, the one part of
// it inflated), or from a loose object's header. ok is false when h is
// not in the store.
func (o *objReader) size(h Hash) (n int64, ok bool, err error) {
	if o.pend != nil {
		if obj := o.pend.object(h); obj != nil {
			return obj.Size(), true, nil
		}
	}
	for _, p := range o.packs {
		off, found := p.idx.offset(h)
		if !found {
			continue
		}
		n, err := p.entrySize(off)
		return n, err == nil, err
	}
	return looseSize(o.dir, h)
}

// entrySize reads the size of the object whose entry is at off.
func (p *packReader) entrySize(off int64) (int64, error) {
	br := packBufs.Get().(*bufio.Reader)
	br.Reset(io.NewSectionReader(p.f, off, 1<<62))
	defer putPackBuf(br)
	fail := func(err error) (int64, error) {
		return 0, fmt.Errorf("pack %s offset %d: %w", p.name, off, err)
	}
	t, size, err := readEntryHeader(br)
	if err != nil {
		return fail(err)
	}
	var c byte
	switch t {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
		return size, nil
	case plumbing.OFSDeltaObject:
		for c, err = br.ReadByte(); err == nil && c&0x80 != 0; c, err = br.ReadByte() {
		}
	case plumbing.REFDeltaObject:
		_, err = br.Discard(20)
	default:
		return fail(fmt.Errorf("bad object type %d", t))
	}
	if err != nil {
		return fail(err)
	}
	// The delta begins with the base's size, then the target's (7 bits
	// a byte, little end first): 20 bytes of it are enough.
	zr, err := newZlibReader(br)
	if err != nil {
		return fail(err)
	}
	defer zlibReaders.Put(zr)
	var head [20]byte
	k, err := io.ReadFull(zr, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fail(err)
	}
	b := head[:k]
	for i := 0; i < 2; i++ {
		var v int64
		shift := 0
		for {
			if len(b) == 0 || shift > 56 {
				return fail(errors.New("bad delta header"))
			}
			c := b[0]
			b = b[1:]
			v |= int64(c&0x7f) << shift
			shift += 7
			if c&0x80 == 0 {
				break
			}
		}
		if i == 1 {
			return v, nil
		}
	}
	return 0, nil // not reached
}

// readEntryHeader reads a pack entry's header: 3 bits of type and 4 of
// size, then 7 bits of size a byte while the high bit is set.
func readEntryHeader(r io.ByteReader) (plumbing.ObjectType, int64, error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	t := plumbing.ObjectType((c >> 4) & 7)
	size := int64(c & 0x0f)
	for shift := 4; c&0x80 != 0; shift += 7 {
		if shift > 56 {
			return 0, 0, errors.New("entry size too large")
		}
		if c, err = r.ReadByte(); err != nil {
			return 0, 0, err
		}
		size |= int64(c&0x7f) << shift
	}
	return t, size, nil
}
