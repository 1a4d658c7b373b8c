package store

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// packEntry is an object's entry as a pack holds it, whole (no delta): the
// type and size header and the zlib stream of the content, with the CRC-32
// of those bytes as a version 2 pack index records it.
//
// A replica pushes each new commit to every peer right after it is made,
// while its objects are still pending (pending.go): in memory, not yet in
// a pack whose entries a push copies as they are (objReader.rawEntry). The
// first push, or the batch writer, that compresses a pending object keeps
// its entry with it, and the others copy that: an object is compressed
// once, not once per peer and once more for its pack (zlib's Huffman
// tables, built anew for each small object, topped a pushing node's
// profile).
type packEntry struct {
	data []byte
	crc  uint32
}

// check makes sure that e's bytes are still those its CRC was taken of,
// before they are copied into a pack, as git checks a reused entry.
func (e packEntry) check(h Hash) error {
	if crc32.ChecksumIEEE(e.data) != e.crc {
		return fmt.Errorf("object %s: kept pack entry: CRC mismatch: %w", h, ErrCorrupt)
	}
	return nil
}

// maxEntryBytes bounds the bytes of the entries kept with pending objects:
// 4 MiB on a host, a thirty-second of the memory limit in an appliance (at
// least 256 KiB; see entryLimit); past it, a push compresses what it sends
// as before. Only objects of up to streamThreshold bytes, which pending
// holds in memory anyway, have their entries kept.
var maxEntryBytes = 4 << 20

// entryLimit is maxEntryBytes under the memory limit, read when the store
// opens (an appliance sets its limit at boot, after package init).
func entryLimit() int { return int(underMemoryLimit(int64(maxEntryBytes), 256<<10, 32)) }

// entry returns pending object h's kept pack entry.
func (p *pending) entry(h Hash) (packEntry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.objs[h].entry
	return e, e.data != nil
}

// keepEntry keeps e as pending object h's pack entry, if h is still
// pending (its batch may have been written meanwhile) and the budget
// allows. The entry goes with the object when its batch is written.
func (p *pending) keepEntry(h Hash, e packEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	po, ok := p.objs[h]
	if !ok || po.entry.data != nil || p.entryBytes+len(e.data) > p.entryLimit {
		return
	}
	po.entry = e
	p.objs[h] = po
	p.entryBytes += len(e.data)
}

// entriesCompressed counts the pack entries compressed (for tests).
var entriesCompressed atomic.Int64

// writeEntry writes h's entry e, whole, as it is.
func (p *packWriter) writeEntry(h Hash, e packEntry) error {
	if _, err := p.bw.Write(e.data); err != nil {
		return err
	}
	return p.add(h, int64(len(e.data)), e.crc)
}

// storeWhole is the size below which an object is written in stored
// (not compressed) zlib blocks; trees are, whatever their size. A tree is
// mostly binary hashes: level 1 shrank an 8 KiB tree of a mail store by a
// quarter at 40 times the CPU of copying it (and inflating it again cost
// 15 times more than reading stored blocks), and saved nothing on a small
// one (its output was larger, by the dynamic block's header); a small
// object hardly shrinks, and its Huffman tables cost 5-10 us, built anew
// for each. GC's repack compresses them all, with deltas.
const storeWhole = 1 << 10

// storedWriters write zlib streams of stored blocks.
var storedWriters = sync.Pool{New: func() any {
	w, _ := zlib.NewWriterLevel(io.Discard, zlib.NoCompression)
	return w
}}

// compress writes object h (type t, size bytes read from r) as a whole
// entry compressed with zw (a tree or a small object: stored, see
// storeWhole), and returns the entry's CRC. If keep is not nil, the
// entry's bytes are also written there.
func (p *packWriter) compress(zw *zlib.Writer, h Hash, t plumbing.ObjectType, size int64, r io.Reader, keep io.Writer) (uint32, error) {
	if t == plumbing.TreeObject || size < storeWhole {
		sw := storedWriters.Get().(*zlib.Writer)
		defer storedWriters.Put(sw)
		zw = sw
	}
	crc := crc32.NewIEEE()
	cw := &countWriter{w: io.MultiWriter(p.bw, crc)}
	if keep != nil {
		cw.w = io.MultiWriter(p.bw, crc, keep)
	}
	if _, err := cw.Write(packEntryHeader(t, size)); err != nil {
		return 0, err
	}
	zw.Reset(cw)
	n, err := copyBuffered(zw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%d of %d bytes", n, size)
	}
	if err != nil {
		return 0, fmt.Errorf("object %s: %w", h, err)
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	entriesCompressed.Add(1)
	sum := crc.Sum32()
	return sum, p.add(h, cw.n, sum)
}

// writeEntriesPack writes objs to f as a pack without deltas, streaming
// each object's content from its reader into the compressor (a large blob
// read back from the commit log is never held in memory), except that an
// object whose entry reuse returns (the batch writer: an entry a push
// kept) is copied as it is.
func writeEntriesPack(f *os.File, objs []plumbing.EncodedObject, reuse func(Hash) (packEntry, bool)) (Hash, *idxfile.MemoryIndex, error) {
	pw, err := newPackWriter(f, len(objs))
	if err != nil {
		return Hash{}, nil, err
	}
	zw := zlibWriters.get()
	defer zlibWriters.put(zw)
	for _, o := range objs {
		h := o.Hash()
		if reuse != nil {
			if e, ok := reuse(h); ok {
				if err := e.check(h); err != nil {
					return Hash{}, nil, err
				}
				if err := pw.writeEntry(h, e); err != nil {
					return Hash{}, nil, err
				}
				continue
			}
		}
		r, err := o.Reader()
		if err != nil {
			return Hash{}, nil, fmt.Errorf("object %s: %w", h, err)
		}
		_, err = pw.compress(zw, h, o.Type(), o.Size(), r, nil)
		r.Close()
		if err != nil {
			return Hash{}, nil, err
		}
	}
	return pw.finish()
}

// encodePack writes the objects hs to w as a pack without deltas, read
// through the store's object reader (pending commits included): an object
// stored whole in a pack is copied as it is there (header and compressed
// content, its CRC checked against the pack's index), a pending one as the
// entry kept with it (see packEntry); others are read and compressed, and a
// pending one's entry is kept. Replicas send what new commits changed:
// deltas cost more CPU (a search on the sending side, base lookups on the
// receiving one) than they save on the wire between a person's nodes.
func (s *Store) encodePack(w io.Writer, hs []Hash) error {
	return s.readObjs(func(o *objReader) error {
		pw, err := newStreamPackWriter(w, len(hs))
		if err != nil {
			return err
		}
		zw := zlibWriters.get()
		defer zlibWriters.put(zw)
		var kept bytes.Buffer
		for _, h := range hs {
			entry, sum, ok, err := o.rawEntry(h)
			if err != nil {
				return err
			}
			if ok {
				if err := pw.writeEntry(h, packEntry{entry, sum}); err != nil {
					return err
				}
				continue
			}
			pend := o.pend != nil && o.pend.object(h) != nil
			if pend {
				if e, ok := o.pend.entry(h); ok {
					if err := e.check(h); err != nil {
						return err
					}
					if err := pw.writeEntry(h, e); err != nil {
						return err
					}
					continue
				}
			}
			t, data, err := o.read(h)
			if err != nil {
				return fmt.Errorf("object %s: %w", h, err)
			}
			keep := pend && len(data) <= streamThreshold
			var kw io.Writer
			if keep {
				kept.Reset()
				kw = &kept
			}
			sum, err = pw.compress(zw, h, t, int64(len(data)), bytes.NewReader(data), kw)
			if err != nil {
				return err
			}
			if keep {
				o.pend.keepEntry(h, packEntry{bytes.Clone(kept.Bytes()), sum})
			}
		}
		_, _, err = pw.finish()
		return err
	})
}
