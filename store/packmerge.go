package store

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// Every batch of logged commits becomes a pack (pending.go), so packs pile
// up as commits go on. Like git's geometric repack (`git repack
// --geometric=2`), the small ones are merged so that, sorted by size, each
// pack is at least twice the size of all smaller ones together: there are
// O(log n) packs, and an object is copied O(log n) times over its life.
// Merging copies each whole object's pack entry byte for byte (its CRC-32
// from the index checked), so it costs about a file copy; delta entries
// (packs from GC or a push) are resolved and written whole.

const (
	// mergeAbove is the number of packs above which a batch triggers a
	// merge. Each pack costs a lookup in its index per object read that
	// misses it, so a few small packs are cheaper than copying at once.
	mergeAbove = 8
	// mergeFactor is the geometric progression's factor (git's
	// --geometric=2).
	mergeFactor = 2
)

// maybeMergePacks starts a background merge when packs pile up (unless
// automatic repacking is off, or a repack is running).
func (s *Store) maybeMergePacks() {
	if s.opts.GCLooseObjects < 0 {
		return
	}
	s.mu.RLock()
	n := len(s.objs.packList())
	s.mu.RUnlock()
	if n <= mergeAbove {
		return
	}
	s.startRepack("merging packs", func(ctx context.Context) error {
		_, err := s.MergePacks(ctx)
		return err
	})
}

// geometricSplit returns how many of the smallest packs (sizes in
// ascending order) to merge so that the packs left, with the merged one,
// form a geometric progression: zero when they already do.
func geometricSplit(sizes []int64) int {
	split := 0
	for i := len(sizes) - 1; i > 0; i-- {
		if sizes[i] < mergeFactor*sizes[i-1] {
			split = i + 1
			break
		}
	}
	if split == 0 {
		return 0
	}
	var total int64
	for _, sz := range sizes[:split] {
		total += sz
	}
	for split < len(sizes) && sizes[split] < mergeFactor*total {
		total += sizes[split]
		split++
	}
	return split
}

// MergePacks merges the repository's small packs into one (see the top of
// this file) and returns what it did.
func (s *Store) MergePacks(ctx context.Context) (GCStats, error) {
	start := time.Now()
	st := GCStats{}
	if s.isClosed() {
		return st, ErrClosed
	}
	type packFile struct {
		path string
		size int64
	}
	// The packs the object reader has: a batch's pack is only among them
	// once it is whole and its writer is done with it (addPack).
	s.mu.RLock()
	var names []string
	for _, p := range s.objs.packList() {
		names = append(names, p.name)
	}
	s.mu.RUnlock()
	var packs []packFile
	for _, name := range names {
		p := filepath.Join(s.path, "objects", "pack", name)
		fi, err := os.Stat(p)
		if err != nil {
			continue // removed by GC meanwhile
		}
		packs = append(packs, packFile{p, fi.Size()})
	}
	st.PacksBefore = len(packs)
	sort.Slice(packs, func(i, j int) bool { return packs[i].size < packs[j].size })
	sizes := make([]int64, len(packs))
	for i, p := range packs {
		sizes[i] = p.size
	}
	k := geometricSplit(sizes)
	if k < 2 {
		return st, nil
	}
	var chosen []string
	for _, p := range packs[:k] {
		chosen = append(chosen, p.path)
		st.SizeBefore += p.size
	}
	return s.mergePackFiles(ctx, chosen, st, start)
}

// mergePackFiles merges the packs at paths into one and removes them.
func (s *Store) mergePackFiles(ctx context.Context, chosen []string, st GCStats, start time.Time) (GCStats, error) {
	var srcs []*mergeSource
	defer func() {
		for _, m := range srcs {
			m.f.Close()
		}
	}()
	total := 0
	seen := map[Hash]bool{}
	for _, p := range chosen {
		m, err := openMergeSource(p, seen)
		if err != nil {
			return st, fmt.Errorf("store: merge packs: %w", err)
		}
		srcs = append(srcs, m)
		total += len(m.entries)
	}
	name, _, err := s.writePack(ctx, func(f *os.File) (Hash, *idxfile.MemoryIndex, error) {
		return s.writeMergedPack(ctx, f, srcs, total)
	})
	if err != nil {
		return st, fmt.Errorf("store: merge packs: %w", err)
	}
	var remove []string
	for _, p := range chosen {
		if filepath.Base(p) == name {
			continue // the same objects as before: the same pack
		}
		remove = append(remove, packFiles(p)...)
	}
	// Deleting a pack is safe for readers that still have it open (they
	// keep reading it until the object reader is replaced).
	if err := s.removeAndReload(remove); err != nil {
		return st, err
	}
	st.Objects = total
	if fi, err := os.Stat(filepath.Join(s.path, "objects", "pack", name)); err == nil {
		st.SizeAfter = fi.Size()
	}
	st.Duration = time.Since(start)
	s.log.Info("store: merged packs", "packs", len(chosen), "objects", total, "bytes", st.SizeAfter, "packs_before", st.PacksBefore, "took", st.Duration)
	return st, nil
}

// mergeSource is a pack being merged: its file and its entries in pack
// order, less those an earlier source has.
type mergeSource struct {
	name    string
	f       *os.File
	entries []mergeEntry
}

type mergeEntry struct {
	h        Hash
	off, end int64
	crc      uint32
}

func openMergeSource(path string, seen map[Hash]bool) (*mergeSource, error) {
	idx, err := openPackIndex(strings.TrimSuffix(path, ".pack") + ".idx")
	if err != nil {
		return nil, fmt.Errorf("pack index of %s: %w", filepath.Base(path), err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	m := &mergeSource{name: filepath.Base(path), f: f}
	all := make([]mergeEntry, idx.n)
	for i := range all {
		off, ok := idx.offsetAt(i)
		if !ok {
			f.Close()
			return nil, fmt.Errorf("pack index of %s: bad offset of entry %d: %w", m.name, i, ErrCorrupt)
		}
		all[i] = mergeEntry{h: idx.hash(i), off: off, crc: idx.crcAt(i)}
	}
	slices.SortFunc(all, func(a, b mergeEntry) int { return cmp.Compare(a.off, b.off) })
	for i := range all {
		if i+1 < len(all) {
			all[i].end = all[i+1].off
		} else {
			all[i].end = fi.Size() - 20
		}
		if all[i].end <= all[i].off {
			f.Close()
			return nil, fmt.Errorf("pack %s: bad entry at offset %d", m.name, all[i].off)
		}
		if !seen[all[i].h] {
			seen[all[i].h] = true
			m.entries = append(m.entries, all[i])
		}
	}
	return m, nil
}

// writeMergedPack writes the entries of srcs as one pack: whole objects
// byte for byte, deltas resolved and compressed anew.
func (s *Store) writeMergedPack(ctx context.Context, f *os.File, srcs []*mergeSource, n int) (Hash, *idxfile.MemoryIndex, error) {
	pw, err := newPackWriter(f, n)
	if err != nil {
		return Hash{}, nil, err
	}
	zw := zlibWriters.get()
	defer zlibWriters.put(zw)
	crc := crc32.NewIEEE()
	buf := make([]byte, 64<<10)
	// Each source is read through once, in order (its entries are in pack
	// order), not an entry at a time: most entries are a few hundred
	// bytes, and a read call for each was a quarter of a merge's time.
	br := bufio.NewReaderSize(nil, 256<<10)
	for _, m := range srcs {
		br.Reset(io.NewSectionReader(m.f, 0, 1<<62))
		pos := int64(0)
		for _, e := range m.entries {
			if err := ctx.Err(); err != nil {
				return Hash{}, nil, err
			}
			if e.off > pos { // entries an earlier source had, or the header
				if _, err := br.Discard(int(e.off - pos)); err != nil {
					return Hash{}, nil, fmt.Errorf("pack %s offset %d: %w", m.name, pos, err)
				}
				pos = e.off
			}
			size := e.end - e.off
			first, err := br.Peek(1)
			if err != nil {
				return Hash{}, nil, fmt.Errorf("pack %s offset %d: %w", m.name, e.off, err)
			}
			if t := plumbing.ObjectType((first[0] >> 4) & 7); t == plumbing.OFSDeltaObject || t == plumbing.REFDeltaObject {
				if _, err := br.Discard(int(size)); err != nil {
					return Hash{}, nil, fmt.Errorf("pack %s offset %d: %w", m.name, e.off, err)
				}
				pos += size
				// A delta (from GC or a push) is resolved and written
				// whole.
				var (
					ot   plumbing.ObjectType
					data []byte
				)
				err := s.readObjs(func(o *objReader) error {
					var err error
					ot, data, err = o.read(e.h)
					return err
				})
				if err != nil {
					return Hash{}, nil, fmt.Errorf("pack %s object %s: %w", m.name, e.h, err)
				}
				var eb entryBuffer
				eb.Write(packEntryHeader(ot, int64(len(data))))
				zw.Reset(&eb)
				zw.Write(data)
				if err := zw.Close(); err != nil {
					return Hash{}, nil, err
				}
				if _, err := pw.bw.Write(eb.b); err != nil {
					return Hash{}, nil, err
				}
				if err := pw.add(e.h, int64(len(eb.b)), crc32.ChecksumIEEE(eb.b)); err != nil {
					return Hash{}, nil, err
				}
				continue
			}
			// A whole object's entry is copied byte for byte, streamed
			// (a blob can be tens of megabytes), its CRC checked on the
			// way; a mismatch fails the merge, and the new pack is
			// removed.
			crc.Reset()
			n, err := io.CopyBuffer(io.MultiWriter(pw.bw, crc), io.LimitReader(br, size), buf)
			pos += n
			if err == nil && n != size {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return Hash{}, nil, fmt.Errorf("pack %s offset %d: %w", m.name, e.off, err)
			}
			if crc.Sum32() != e.crc {
				return Hash{}, nil, fmt.Errorf("pack %s offset %d (object %s): CRC mismatch: %w", m.name, e.off, e.h, ErrCorrupt)
			}
			if err := pw.add(e.h, size, e.crc); err != nil {
				return Hash{}, nil, err
			}
		}
	}
	return pw.finish()
}

type entryBuffer struct{ b []byte }

func (e *entryBuffer) Write(p []byte) (int, error) {
	e.b = append(e.b, p...)
	return len(p), nil
}
