package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
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

// PackLoose packs the loose objects that the references reach into one new
// pack and removes them, leaving older packs and unreachable objects (GC's
// business) alone. It relies on packs being closed: everything a packed
// object refers to is packed too, which GC and PackLoose both keep true, so
// the walk stops at the first packed object and costs what was written since
// the last repack.
func (s *Store) PackLoose(ctx context.Context) (GCStats, error) {
	start := time.Now()
	st := GCStats{}
	unlock, err := s.lock(ctx)
	if err != nil {
		return st, err
	}
	heads, err := s.refHashes()
	var loose map[plumbing.Hash]string
	var packs []string
	if err == nil {
		loose, packs, err = s.objectFiles()
	}
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
	err = s.read(func(r *git.Repository) error {
		hashes = hashes[:0]
		seen := map[plumbing.Hash]bool{}
		var walk func(h plumbing.Hash, t plumbing.ObjectType) error
		walk = func(h plumbing.Hash, t plumbing.ObjectType) error {
			if seen[h] {
				return nil
			}
			seen[h] = true
			if _, isLoose := loose[h]; !isLoose {
				return nil // packed, with all it refers to
			}
			hashes = append(hashes, h)
			switch t {
			case plumbing.CommitObject:
				c, err := r.CommitObject(h)
				if err != nil {
					return err
				}
				if err := walk(c.TreeHash, plumbing.TreeObject); err != nil {
					return err
				}
				for _, p := range c.ParentHashes {
					if err := walk(p, plumbing.CommitObject); err != nil {
						return err
					}
				}
			case plumbing.TreeObject:
				tr, err := r.TreeObject(h)
				if err != nil {
					return err
				}
				for _, e := range tr.Entries {
					et := plumbing.BlobObject
					if e.Mode == filemode.Dir {
						et = plumbing.TreeObject
					}
					if err := walk(e.Hash, et); err != nil {
						return err
					}
				}
			}
			return nil
		}
		for _, h := range heads {
			if err := walk(h, plumbing.CommitObject); err != nil {
				return fmt.Errorf("store: pack loose objects: %w", err)
			}
		}
		return nil
	})
	if err == nil && len(hashes) > 0 {
		// Without deltas (writeRawPack): an incremental pack is
		// written while commits go on, and searching for deltas among
		// new mail or vCards costs seconds of CPU for little; the full
		// repack (GC, when packs pile up) deltifies everything.
		err = s.readObjs(func(o *objReader) error {
			_, err := s.writePack(ctx, func(f *os.File) (plumbing.Hash, *idxfile.MemoryIndex, error) {
				return writeRawPack(f, o, hashes)
			})
			return err
		})
	}
	if err != nil || len(hashes) == 0 {
		return st, err
	}
	st.Objects = len(hashes)
	unlock, err = s.lock(ctx)
	if err != nil {
		return st, err
	}
	defer unlock()
	remove := make([]string, 0, len(hashes))
	for _, h := range hashes {
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
