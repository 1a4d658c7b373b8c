package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/revlist"
)

// packWindow is how many objects the delta search compares each object
// with; git's default.
const packWindow = 10

// gcWholeAbove: GC stores blobs larger than this whole (zlib only), not as
// deltas. go-git's encoder chains deltas 50 deep, and similar messages
// (newsletters, notifications, replies quoting each other) chain: reading
// one resolved its chain down from a base the reader's cache of bases
// (16 MiB) no longer held, and a FETCH of every body of a mailbox of 2000
// similar messages after GC ran at 390-400 MB/s against 1230-1300 MB/s
// before it (BenchmarkFetch). Trees, commits and small blobs keep their
// deltas: a folder's tree has a version per commit that touched it, and
// those are most of what deltas save in history.
const gcWholeAbove = 2 << 10

type gcState struct {
	running atomic.Bool
	commits atomic.Int64
}

// GCStats reports what a repack did.
type GCStats struct {
	// Objects is the number of reachable objects packed.
	Objects int
	// LooseBefore and PacksBefore count the loose objects and packs before.
	LooseBefore, PacksBefore int
	// Pruned counts unreachable objects removed: loose ones, and those
	// of packs that GC dropped.
	Pruned int
	// SizeBefore and SizeAfter are the bytes under objects/.
	SizeBefore, SizeAfter int64
	Duration              time.Duration
}

// GC repacks the repository: every object reachable from a reference goes
// into one new pack (written and synced before anything is deleted), then
// loose objects and older packs are removed. Unreachable loose objects (left
// by a deleted branch, a refused merge or a crash between writing objects
// and moving a branch) are pruned once older than Options.PruneAfter.
//
// Writers are held up only briefly: the pack is written without the writer
// lock, from the references as they were when GC started; what writers add
// meanwhile stays loose for the next GC. Readers are paused only while files
// are deleted, so no reader loses an object it is reading.
func (s *Store) GC(ctx context.Context) (GCStats, error) {
	return s.gc(ctx, s.opts.PruneAfter)
}

// gc is GC, pruning unreachable objects older than pruneAfter (zero: all
// of them, for the upgrade that removes secrets from the history).
func (s *Store) gc(ctx context.Context, pruneAfter time.Duration) (GCStats, error) {
	start := time.Now()
	st := GCStats{}
	objDir := filepath.Join(s.path, "objects")

	// Phase 1, locked: the references and the files to replace.
	unlock, err := s.lock(ctx)
	if err != nil {
		return st, err
	}
	heads, err := s.refHashes()
	var loose map[plumbing.Hash]string
	var oldPacks []string
	if err == nil {
		loose, oldPacks, err = s.objectFiles()
	}
	unlock()
	if err != nil {
		return st, err
	}
	st.SizeBefore = dirSize(objDir)
	st.LooseBefore, st.PacksBefore = len(loose), len(oldPacks)

	// Phase 2, unlocked: pack what those references reach. Blobs larger
	// than gcWholeAbove (messages, mostly) go whole into a pack of their
	// own; everything else goes through go-git's encoder, with deltas.
	var hashes []plumbing.Hash
	err = s.read(func(r *git.Repository) error {
		var err error
		if hashes, err = revlist.Objects(r.Storer, heads, nil); err != nil {
			return fmt.Errorf("store: gc: listing reachable objects: %w", err)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	var deltas, whole []plumbing.Hash
	err = s.readObjs(func(o *objReader) error {
		deltas, whole = deltas[:0], whole[:0]
		for _, h := range hashes {
			t, n, err := o.kind(h)
			if err != nil {
				return fmt.Errorf("store: gc: object %s: %w", h, err)
			}
			if t == plumbing.BlobObject && n > gcWholeAbove {
				whole = append(whole, h)
			} else {
				deltas = append(deltas, h)
			}
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	newPacks := map[string]bool{}
	if len(deltas) > 0 {
		err = s.read(func(r *git.Repository) error {
			name, _, err := s.writePack(ctx, func(f *os.File) (plumbing.Hash, *idxfile.MemoryIndex, error) {
				h, err := packfile.NewEncoder(f, r.Storer, false).Encode(deltas, packWindow)
				return h, nil, err
			})
			newPacks[name] = true
			return err
		})
		if err != nil {
			return st, err
		}
	}
	if len(whole) > 0 {
		sort.Slice(whole, func(i, j int) bool { return bytes.Compare(whole[i][:], whole[j][:]) < 0 })
		err = s.readObjs(func(o *objReader) error {
			name, _, err := s.writePack(ctx, func(f *os.File) (plumbing.Hash, *idxfile.MemoryIndex, error) {
				return writeRawPack(f, len(whole), gcWriters, func(i int) (Hash, plumbing.ObjectType, []byte, error) {
					if err := ctx.Err(); err != nil {
						return whole[i], 0, nil, err
					}
					t, data, err := o.read(whole[i])
					if got := plumbing.ComputeHash(t, data); err == nil && got != whole[i] {
						err = fmt.Errorf("content hashes to %s: %w", got, ErrCorrupt)
					}
					return whole[i], t, data, err
				})
			})
			newPacks[name] = true
			return err
		})
		if err != nil {
			return st, err
		}
	}
	st.Objects = len(hashes)
	packed := make(map[plumbing.Hash]bool, len(hashes))
	for _, h := range hashes {
		packed[h] = true
	}

	// Phase 3, locked: what became reachable meanwhile must stay.
	unlock, err = s.lock(ctx)
	if err != nil {
		return st, err
	}
	defer unlock()
	nowHeads, err := s.refHashes()
	if err != nil {
		return st, err
	}
	var newer []plumbing.Hash
	err = s.read(func(r *git.Repository) error {
		var err error
		newer, err = revlist.Objects(r.Storer, nowHeads, hashes)
		return err
	})
	if err != nil {
		return st, fmt.Errorf("store: gc: listing new objects: %w", err)
	}
	// The packs as the object reader has them: which old pack holds
	// what, and the packs that batches of commits added meanwhile.
	old := map[string]bool{}
	for _, p := range oldPacks {
		old[filepath.Base(p)] = true
	}
	var readers []*packReader
	s.mu.RLock()
	readers = append(readers, s.objs.packList()...)
	s.mu.RUnlock()
	indexes := map[string]*packIndex{}
	for _, p := range readers {
		indexes[p.name] = p.idx
	}
	inNewPack := func(h plumbing.Hash) bool {
		for _, p := range readers {
			if !old[p.name] {
				if p.idx.contains(h) {
					return true
				}
			}
		}
		return false
	}
	keepPacks := false
	keep := map[plumbing.Hash]bool{}
	for _, h := range newer {
		keep[h] = true
		if _, isLoose := loose[h]; !isLoose && !packed[h] && !inNewPack(h) {
			// Reachable again, and only in an old pack (a copy that found it
			// there): the old packs stay until the next GC.
			keepPacks = true
		}
	}

	var remove []string
	for h, path := range loose {
		if keep[h] {
			continue
		}
		if !packed[h] {
			if fi, err := os.Stat(path); err != nil || time.Since(fi.ModTime()) < pruneAfter {
				continue
			}
			st.Pruned++
		}
		remove = append(remove, path)
	}
	for _, p := range oldPacks {
		if keepPacks || newPacks[filepath.Base(p)] {
			continue
		}
		// A pack holding unreachable objects younger than PruneAfter
		// stays (as such loose objects do) for a later GC.
		unreachable, err := packUnreachable(p, indexes[filepath.Base(p)], func(h plumbing.Hash) bool { return packed[h] || keep[h] })
		if err != nil {
			return st, fmt.Errorf("store: gc: %w", err)
		}
		if unreachable > 0 {
			if fi, err := os.Stat(p); err != nil || time.Since(fi.ModTime()) < pruneAfter {
				continue
			}
			st.Pruned += unreachable
		}
		remove = append(remove, packFiles(p)...)
	}
	if err := s.removeAndReload(remove); err != nil {
		return st, err
	}
	st.SizeAfter = dirSize(objDir)
	st.Duration = time.Since(start)
	s.log.Info("store: repacked", "objects", st.Objects, "loose_before", st.LooseBefore,
		"packs_before", st.PacksBefore, "pruned", st.Pruned, "bytes_before", st.SizeBefore,
		"bytes_after", st.SizeAfter, "took", st.Duration)
	return st, nil
}

// removeAndReload deletes files that a new pack has made redundant, with
// readers paused, and replaces the go-git storage (opened after the
// deletions, so that its pack index knows only the packs that exist) and
// the object reader (which would otherwise keep deleted packs open). Then
// it syncs the directories that changed.
func (s *Store) removeAndReload(paths []string) error {
	s.packsMu.Lock()
	defer s.packsMu.Unlock()
	s.mu.Lock()
	dirs := map[string]bool{}
	for _, p := range paths {
		if err := os.Remove(p); err == nil {
			dirs[filepath.Dir(p)] = true
		}
	}
	for d := range dirs {
		if err := os.Remove(d); err == nil { // an emptied objects/xx
			dirs[filepath.Dir(d)] = true
		}
	}
	newSt, newRepo, err := s.newStorage()
	if err == nil {
		s.st, s.repo = newSt, newRepo
		s.gitStale.Store(false)
	}
	s.mu.Unlock()
	if err == nil {
		err = s.reopenObjs()
	}
	if err != nil || s.opts.noSync {
		return err
	}
	for d := range dirs {
		if _, err := os.Stat(d); err == nil {
			if err := syncDir(d); err != nil {
				return fmt.Errorf("store: gc: sync %s: %w", d, err)
			}
		}
	}
	return nil
}

// packFiles lists the files of the pack at path in the order to delete
// them: the pack first. go-git finds packs by their .pack file and fails on
// one without its index, which a crash between two deletions would leave
// behind; git and the store's reader find packs by their index and skip
// one without its pack.
func packFiles(path string) []string {
	base := strings.TrimSuffix(path, ".pack")
	return []string{base + ".pack", base + ".idx", base + ".rev", base + ".bitmap", base + ".keep"}
}

// removeOrphanPacks deletes pack files that have no index: left by a crash
// between deleting a pack's files in the other order, or between renaming
// a new pack and its index into place (both done in the safe order since;
// see packFiles and writePack). Such a pack was either being deleted (its
// objects are in the pack that replaced it) or had not yet been indexed
// (nothing was deleted yet, and its objects are where they were, or in the
// commit log).
func (s *Store) removeOrphanPacks() {
	packs, _ := filepath.Glob(filepath.Join(s.path, "objects", "pack", "pack-*.pack"))
	for _, p := range packs {
		if _, err := os.Stat(strings.TrimSuffix(p, ".pack") + ".idx"); errors.Is(err, fs.ErrNotExist) {
			if os.Remove(p) == nil {
				s.log.Warn("store: removed a pack without its index (left by a crash)", "pack", filepath.Base(p))
			}
		}
	}
}

// packUnreachable counts the objects of the pack at path that reachable
// does not claim. idx is the pack's index if the object reader has it
// open, else nil: the index file is opened.
func packUnreachable(path string, idx *packIndex, reachable func(plumbing.Hash) bool) (int, error) {
	if idx == nil {
		var err error
		idx, err = openPackIndex(strings.TrimSuffix(path, ".pack") + ".idx")
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil // merged into another meanwhile (packmerge.go)
		}
		if err != nil {
			return 0, fmt.Errorf("pack index of %s: %w", filepath.Base(path), err)
		}
	}
	n := 0
	for i := range idx.n {
		if !reachable(idx.hash(i)) {
			n++
		}
	}
	return n, nil
}

// refHashes lists what every reference points at.
func (s *Store) refHashes() ([]plumbing.Hash, error) {
	var heads []plumbing.Hash
	err := s.read(func(r *git.Repository) error {
		heads = heads[:0]
		it, err := r.Storer.IterReferences()
		if err != nil {
			return err
		}
		return it.ForEach(func(ref *plumbing.Reference) error {
			if ref.Type() == plumbing.HashReference {
				heads = append(heads, ref.Hash())
			}
			return nil
		})
	})
	return heads, err
}

// writePack writes a pack with encode into a temporary file, syncs it,
// indexes it, and renames index and pack into objects/pack (see below for
// the order). It returns the pack's file name.
//
// encode writes the pack and returns its checksum, and its index when it
// has one (else the pack is parsed to index it).
func (s *Store) writePack(ctx context.Context, encode func(*os.File) (plumbing.Hash, *idxfile.MemoryIndex, error)) (name string, idx *idxfile.MemoryIndex, err error) {
	return s.writePackDir(ctx, true, encode)
}

// writePackDir is writePack; syncDir false leaves objects/pack unsynced,
// for a pack whose objects the commit log holds: if the rename is lost,
// replaying the log writes them again.
func (s *Store) writePackDir(ctx context.Context, syncPackDir bool, encode func(*os.File) (plumbing.Hash, *idxfile.MemoryIndex, error)) (name string, idx *idxfile.MemoryIndex, err error) {
	tmp := filepath.Join(s.path, tmpDir)
	pf, err := os.CreateTemp(tmp, "pack-")
	if err != nil {
		return "", nil, fmt.Errorf("store: write pack: %w", err)
	}
	defer func() {
		pf.Close()
		if err != nil {
			os.Remove(pf.Name())
		}
	}()
	sum, idx, err := encode(pf)
	if err != nil {
		return "", nil, fmt.Errorf("store: write pack: %w", err)
	}
	return s.finishPack(ctx, pf, syncPackDir, sum, idx)
}

// finishPack syncs pf, a pack written in the store's temporary folder,
// indexes it (unless idx is given) and renames index and pack into
// objects/pack (see below for the order). It returns the pack's file name.
// On error the caller removes pf.
func (s *Store) finishPack(ctx context.Context, pf *os.File, syncPackDir bool, sum plumbing.Hash, idx *idxfile.MemoryIndex) (name string, _ *idxfile.MemoryIndex, err error) {
	tmp := filepath.Join(s.path, tmpDir)
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	if !s.opts.noSync {
		if err := pf.Sync(); err != nil {
			return "", nil, fmt.Errorf("store: sync pack: %w", err)
		}
	}
	if idx == nil {
		if _, err := pf.Seek(0, 0); err != nil {
			return "", nil, err
		}
		iw := new(idxfile.Writer)
		parser, err := packfile.NewParser(packfile.NewScanner(pf), iw)
		if err != nil {
			return "", nil, fmt.Errorf("store: index pack: %w", err)
		}
		if _, err := parser.Parse(); err != nil {
			return "", nil, fmt.Errorf("store: index pack: %w", err)
		}
		if idx, err = iw.Index(); err != nil {
			return "", nil, fmt.Errorf("store: index pack: %w", err)
		}
	}
	xf, err := os.CreateTemp(tmp, "idx-")
	if err != nil {
		return "", nil, fmt.Errorf("store: write index: %w", err)
	}
	defer func() {
		xf.Close()
		if err != nil {
			os.Remove(xf.Name())
		}
	}()
	// The encoder writes the index a field at a time: a write call for
	// each fanout entry, hash, CRC and offset without a buffer.
	bw := bufio.NewWriterSize(xf, 64<<10)
	if _, err := idxfile.NewEncoder(bw).Encode(idx); err != nil {
		return "", nil, fmt.Errorf("store: write index: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return "", nil, fmt.Errorf("store: write index: %w", err)
	}
	if !s.opts.noSync {
		if err := xf.Sync(); err != nil {
			return "", nil, fmt.Errorf("store: sync index: %w", err)
		}
	}
	dir := filepath.Join(s.path, "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	name = "pack-" + sum.String() + ".pack"
	os.Chmod(pf.Name(), 0o444)
	os.Chmod(xf.Name(), 0o444)
	// The index first: git finds packs by their index and skips an index
	// without its pack, while go-git finds them by the pack and fails on a
	// pack without its index. After a crash between the two renames, or a
	// power cut (the journal keeps them in order), nobody sees the pack.
	if err := os.Rename(xf.Name(), filepath.Join(dir, "pack-"+sum.String()+".idx")); err != nil {
		return "", nil, fmt.Errorf("store: write index: %w", err)
	}
	if err := os.Rename(pf.Name(), filepath.Join(dir, name)); err != nil {
		return "", nil, fmt.Errorf("store: write pack: %w", err)
	}
	if !s.opts.noSync && syncPackDir {
		if err := syncDir(dir); err != nil {
			return "", nil, fmt.Errorf("store: sync %s: %w", dir, err)
		}
	}
	return name, idx, nil
}

// objectFiles lists the loose object files and the packs.
func (s *Store) objectFiles() (loose map[plumbing.Hash]string, packs []string, err error) {
	objDir := filepath.Join(s.path, "objects")
	loose = map[plumbing.Hash]string{}
	ents, err := os.ReadDir(objDir)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	for _, d := range ents {
		if len(d.Name()) != 2 || !d.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(objDir, d.Name()))
		if err != nil {
			return nil, nil, fmt.Errorf("store: %w", err)
		}
		for _, f := range files {
			// A crash can leave a half-written tmp_obj_ file; it is garbage
			// once no writer can still be at work on it.
			if strings.HasPrefix(f.Name(), "tmp_obj_") {
				if fi, err := f.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
					os.Remove(filepath.Join(objDir, d.Name(), f.Name()))
				}
				continue
			}
			if len(f.Name()) == 38 && plumbing.IsHash(d.Name()+f.Name()) {
				h := plumbing.NewHash(d.Name() + f.Name())
				loose[h] = filepath.Join(objDir, d.Name(), f.Name())
			}
		}
	}
	packs, _ = filepath.Glob(filepath.Join(objDir, "pack", "pack-*.pack"))
	return loose, packs, nil
}

func dirSize(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// maybeGC starts a background repack when loose objects pile up. Like git,
// it estimates their number from one of the 256 object folders. The caller
// holds the writer lock, so the repack starts after it is released.
func (s *Store) maybeGC() {
	if s.opts.GCLooseObjects < 0 || s.gcState.commits.Add(1)%64 != 0 {
		return
	}
	ents, err := os.ReadDir(filepath.Join(s.path, "objects", "17"))
	if err != nil || len(ents)*256 < s.opts.GCLooseObjects {
		return
	}
	s.startRepack("automatic repack", s.autoRepack)
}

// startRepack runs fn in the background unless a repack (GC, packing loose
// objects, merging packs) is running already; Close cancels it and waits.
func (s *Store) startRepack(what string, fn func(ctx context.Context) error) {
	if s.isClosed() || !s.gcState.running.CompareAndSwap(false, true) {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.gcState.running.Store(false)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("store: "+what+" failed", "err", err)
		}
	}()
}
