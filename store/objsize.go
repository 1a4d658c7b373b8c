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
	p, _, off, err := o.entryAt(h)
	if err != nil {
		return 0, false, err
	}
	if p != nil {
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

// kind returns object h's type and size without reading its content: a
// delta's type is its chain's first object's, found from the entries'
// headers (the base's offset, or its hash for a delta by reference). GC
// uses it to choose which objects may be stored as deltas.
func (o *objReader) kind(h Hash) (plumbing.ObjectType, int64, error) {
	if o.pend != nil {
		if obj := o.pend.object(h); obj != nil {
			return obj.Type(), obj.Size(), nil
		}
	}
	p, _, off, err := o.entryAt(h)
	if err != nil {
		return 0, 0, err
	}
	if p != nil {
		n, err := p.entrySize(off)
		if err != nil {
			return 0, 0, err
		}
		t, err := o.entryType(p, off)
		return t, n, err
	}
	t, data, err := o.readLoose(h)
	return t, int64(len(data)), err
}

// entryType follows the chain of delta bases from the entry at off to an
// entry that is not a delta, and returns its type.
func (o *objReader) entryType(p *packReader, off int64) (plumbing.ObjectType, error) {
	br := packBufs.Get().(*bufio.Reader)
	defer putPackBuf(br)
	for depth := 0; depth <= maxDeltaDepth; depth++ {
		br.Reset(io.NewSectionReader(p.f, off, 1<<62))
		t, _, err := readEntryHeader(br)
		if err != nil {
			return 0, fmt.Errorf("pack %s offset %d: %w", p.name, off, err)
		}
		switch t {
		case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
			return t, nil
		case plumbing.OFSDeltaObject:
			rel, err := readOFSOffset(br)
			if err != nil || rel <= 0 || rel > off {
				return 0, fmt.Errorf("pack %s offset %d: bad delta base offset", p.name, off)
			}
			off -= rel
		case plumbing.REFDeltaObject:
			var base Hash
			if _, err := io.ReadFull(br, base[:]); err != nil {
				return 0, fmt.Errorf("pack %s offset %d: %w", p.name, off, err)
			}
			boff, ok := p.idx.offset(base)
			if !ok {
				t, _, err := o.kind(base)
				return t, err
			}
			off = boff
		default:
			return 0, fmt.Errorf("pack %s offset %d: bad object type %d", p.name, off, t)
		}
	}
	return 0, fmt.Errorf("pack %s: delta chain deeper than %d", p.name, maxDeltaDepth)
}

// readOFSOffset reads an offset delta's distance back to its base.
func readOFSOffset(br io.ByteReader) (int64, error) {
	c, err := br.ReadByte()
	if err != nil {
		return 0, err
	}
	rel := int64(c & 0x7f)
	for c&0x80 != 0 {
		if c, err = br.ReadByte(); err != nil {
			return 0, err
		}
		rel = ((rel + 1) << 7) | int64(c&0x7f)
	}
	return rel, nil
}
