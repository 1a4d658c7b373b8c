package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// autoPackLimit is the number of packs above which the automatic repack
// folds everything into one pack (GC) instead of adding a pack of the loose
// objects (git's gc.autoPackLimit is 50).
const autoPackLimit = 32

// autoRepack is the background repack: a pack of the new loose objects,
// whose cost follows what was written since the last repack, not the size
// of the store; once packs pile up, a full GC.
func (s *Store) autoRepack(ctx context.Context) error {
	packs, _ := filepath.Glob(filepath.Join(s.path, "objects", "pack", "pack-*.pack"))
	if len(packs) >= autoPackLimit {
		_, err := s.GC(ctx)
		return err
	}
	_, err := s.PackLoose(ctx)
	return err
}

// PackLoose packs every loose object into one new pack and removes them,
// leaving older packs alone (git's incremental `git repack -d`). Loose
// objects come from writers other than Update's batches (merges, sync,
// history edits) and from older versions of the store; unreachable ones
// are packed too, and GC drops them once they are older than PruneAfter. A
// loose file that does not read back as its object (left by a crash) is
// left for GC.
func (s *Store) PackLoose(ctx context.Context) (GCStats, error) {
	start := time.Now()
	st := GCStats{}
	unlock, err := s.lock(ctx)
	if err != nil {
		return st, err
	}
	loose, packs, err := s.objectFiles()
	unlock()
	if err != nil {
		return st, err
	}
	st.LooseBefore, st.PacksBefore = len(loose), len(packs)
	if len(loose) == 0 {
		return st, nil
	}
	objDir := filepath.Join(s.path, "objects")
	st.SizeBefore = dirSize(objDir)

	var hashes []plumbing.Hash
	for h := range loose {
		hashes = append(hashes, h)
	}
	sort.Slice(hashes, func(i, j int) bool { return bytes.Compare(hashes[i][:], hashes[j][:]) < 0 })
	var good []plumbing.Hash
	err = s.readObjs(func(o *objReader) error {
		good = good[:0]
		for _, h := range hashes {
			t, data, err := o.readLoose(h)
			if err == nil && plumbing.ComputeHash(t, data) == h {
				good = append(good, h)
			} else {
				s.log.Warn("store: pack loose objects: a damaged loose object is left for GC", "object", h, "err", err)
			}
		}
		if len(good) == 0 {
			return nil
		}
		// Without deltas (writeRawPack): an incremental pack is
		// written while commits go on, and searching for deltas among
		// new mail or vCards costs seconds of CPU for little; the full
		// repack (GC) stores trees and small objects as deltas.
		_, _, err := s.writePack(ctx, func(f *os.File) (plumbing.Hash, *idxfile.MemoryIndex, error) {
			return writeRawPack(f, len(good), zlibWriters, func(i int) (Hash, plumbing.ObjectType, []byte, error) {
				t, data, err := o.readLoose(good[i])
				if got := plumbing.ComputeHash(t, data); err == nil && got != good[i] {
					err = fmt.Errorf("content hashes to %s: %w", got, ErrCorrupt)
				}
				return good[i], t, data, err
			})
		})
		return err
	})
	if err != nil || len(good) == 0 {
		return st, err
	}
	st.Objects = len(good)
	unlock, err = s.lock(ctx)
	if err != nil {
		return st, err
	}
	defer unlock()
	remove := make([]string, 0, len(good))
	for _, h := range good {
		remove = append(remove, loose[h])
	}
	if err := s.removeAndReload(remove); err != nil {
		return st, err
	}
	st.SizeAfter = dirSize(objDir)
	st.Duration = time.Since(start)
	s.log.Info("store: packed loose objects", "objects", st.Objects, "packs_before", st.PacksBefore, "took", st.Duration)
	return st, nil
}
