package store

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// objReader reads objects (loose and packed) for the read paths of the
// store: Snapshot reads, tree walks while committing, blobs by hash. It
// keeps every pack open and reads with pread, so that any number of
// goroutines read at once without opening a file per object, which go-git's
// storage either does (slow) or avoids by sharing one seek offset (unsafe
// for concurrent readers). Decoded trees are cached, as every lookup of a
// sharded path walks the same few trees.
//
// An objReader sees the packs that existed when it was opened; the store
// opens a new one after a repack (reload).
type objReader struct {
	pend *pending // logged objects not yet in the repository; may be nil
	dir  string   // objects/
	// packs is the list of packs, replaced whole (packList, addPack):
	// go-git's reads through gitStorage use the reader without s.mu.
	packs atomic.Pointer[[]*packReader]
	last  atomic.Int32 // which of packs the last object found was in (locate)
	trees *treeCache
	bases *baseCache
}

// locate returns the pack that holds h and h's position in its index.
// It tries first the pack where the last object was found, as git does:
// objects read together were mostly written together (a commit's trees
// and items, a push's objects), and a lookup that misses costs a search
// of an index.
func (o *objReader) locate(h Hash) (*packReader, int, bool) {
	packs := o.packList()
	k := int(o.last.Load())
	if k < len(packs) {
		if i, ok := packs[k].idx.find(h); ok {
			return packs[k], i, true
		}
	}
	for j, p := range packs {
		if j == k {
			continue
		}
		if i, ok := p.idx.find(h); ok {
			o.last.Store(int32(j))
			return p, i, true
		}
	}
	return nil, 0, false
}

// entryAt returns the pack that holds h (locate), h's position in its
// index and where its entry starts in the pack; p is nil when no pack
// holds h.
func (o *objReader) entryAt(h Hash) (p *packReader, i int, off int64, err error) {
	p, i, found := o.locate(h)
	if !found {
		return nil, 0, 0, nil
	}
	off, ok := p.idx.offsetAt(i)
	if !ok {
		return nil, 0, 0, fmt.Errorf("pack %s: bad offset of %s: %w", p.name, h, ErrCorrupt)
	}
	return p, i, off, nil
}

type packReader struct {
	name string
	f    *os.File
	idx  *packIndex

	// ends: the offsets of the entries in order and the end of the last,
	// made at the first rawEntry (where each entry ends).
	endsOnce sync.Once
	ends     []int64
	endsErr  error
}

// entryEnd returns where the entry at off ends.
func (p *packReader) entryEnd(off int64) (int64, error) {
	p.endsOnce.Do(func() {
		fi, err := p.f.Stat()
		if err != nil {
			p.endsErr = err
			return
		}
		ends := make([]int64, 0, p.idx.n+1)
		for i := range p.idx.n {
			o, ok := p.idx.offsetAt(i)
			if !ok {
				p.endsErr = fmt.Errorf("pack %s: bad offset of entry %d", p.name, i)
				return
			}
			ends = append(ends, o)
		}
		slices.Sort(ends)
		p.ends = append(ends, fi.Size()-20)
	})
	if p.endsErr != nil {
		return 0, p.endsErr
	}
	i, found := slices.BinarySearch(p.ends, off)
	if !found || i+1 >= len(p.ends) || p.ends[i+1] <= off {
		return 0, fmt.Errorf("pack %s: no entry at offset %d", p.name, off)
	}
	return p.ends[i+1], nil
}

// rawEntry returns the bytes of object h's entry in a pack (its header and
// compressed content) when it is stored whole there, not as a delta, for a
// pack sent to a replica to copy as they are: no inflating and deflating
// again. The entry's CRC is checked. ok is false when h is not in a pack,
// or is a delta.
func (o *objReader) rawEntry(h Hash) (entry []byte, crc uint32, ok bool, err error) {
	if o.pend != nil && o.pend.object(h) != nil {
		return nil, 0, false, nil
	}
	p, i, off, err := o.entryAt(h)
	if err != nil {
		return nil, 0, false, err
	}
	if p != nil {
		end, err := p.entryEnd(off)
		if err != nil {
			return nil, 0, false, err
		}
		entry = make([]byte, end-off)
		if _, err := p.f.ReadAt(entry, off); err != nil {
			return nil, 0, false, fmt.Errorf("pack %s offset %d: %w", p.name, off, err)
		}
		switch plumbing.ObjectType((entry[0] >> 4) & 7) {
		case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
		default:
			return nil, 0, false, nil // a delta
		}
		crc = p.idx.crcAt(i)
		if crc32.ChecksumIEEE(entry) != crc {
			return nil, 0, false, fmt.Errorf("pack %s offset %d (object %s): CRC mismatch: %w", p.name, off, h, ErrCorrupt)
		}
		return entry, crc, true, nil
	}
	return nil, 0, false, nil
}

func openObjReader(repo string, trees *treeCache) (*objReader, error) {
	// Decoded delta bases: 16 MiB on a host, a sixteenth of the memory
	// limit in an appliance (1.5 MiB in a 64 MiB VM, where 16 MiB was
	// most of the heap).
	o := &objReader{dir: filepath.Join(repo, "objects"), trees: trees, bases: newBaseCache(int(underMemoryLimit(16<<20, 1<<20, 16)))}
	idxs, err := filepath.Glob(filepath.Join(o.dir, "pack", "pack-*.idx"))
	if err != nil {
		return nil, err
	}
	for _, ip := range idxs {
		pp := strings.TrimSuffix(ip, ".idx") + ".pack"
		f, err := os.Open(pp)
		if errors.Is(err, fs.ErrNotExist) {
			continue // an index being written with its pack, or left by a crash
		}
		if err != nil {
			o.close()
			return nil, err
		}
		idx, err := openPackIndex(ip)
		if err != nil {
			f.Close()
			o.close()
			return nil, fmt.Errorf("pack index %s: %w", filepath.Base(ip), err)
		}
		packs := append(o.packList(), &packReader{name: filepath.Base(pp), f: f, idx: idx})
		o.packs.Store(&packs)
	}
	return o, nil
}

// packList is the reader's packs as of now; the list is never changed in
// place, so it may be read while packs are added.
func (o *objReader) packList() []*packReader {
	if p := o.packs.Load(); p != nil {
		return *p
	}
	return nil
}

func readIdx(path string, idx *idxfile.MemoryIndex) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return idxfile.NewDecoder(bufio.NewReader(f)).Decode(idx)
}

func (o *objReader) close() {
	for _, p := range o.packList() {
		p.f.Close()
	}
	o.packs.Store(nil)
}

// errObjNotFound wraps plumbing.ErrObjectNotFound, so that Store.read
// reloads and retries (the object may have moved into a new pack).
func errObjNotFound(h Hash) error {
	return fmt.Errorf("object %s: %w", h, plumbing.ErrObjectNotFound)
}

// read returns the type and content of object h.
func (o *objReader) read(h Hash) (plumbing.ObjectType, []byte, error) {
	if o.pend != nil {
		if obj := o.pend.object(h); obj != nil {
			data, err := readAll(obj)
			return obj.Type(), data, err
		}
	}
	p, _, off, err := o.entryAt(h)
	if err != nil {
		return 0, nil, err
	}
	if p != nil {
		return o.readPacked(p, off, 0)
	}
	return o.readLoose(h)
}

// readAs reads object h and checks that it has type want.
func (o *objReader) readAs(h Hash, want plumbing.ObjectType) ([]byte, error) {
	t, data, err := o.read(h)
	if err != nil {
		return nil, err
	}
	if t != want {
		return nil, fmt.Errorf("object %s: is a %s, not a %s", h, t, want)
	}
	return data, nil
}

func (o *objReader) readLoose(h Hash) (plumbing.ObjectType, []byte, error) {
	hx := h.String()
	f, err := os.Open(filepath.Join(o.dir, hx[:2], hx[2:]))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil, errObjNotFound(h)
	}
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	zr, err := newZlibReader(bufio.NewReader(f))
	if err != nil {
		return 0, nil, fmt.Errorf("loose object %s: %w", h, err)
	}
	defer zlibReaders.Put(zr)
	br := bufio.NewReader(zr)
	hdr, err := br.ReadString(0)
	if err != nil {
		return 0, nil, fmt.Errorf("loose object %s: header: %w", h, err)
	}
	typ, size, ok := strings.Cut(strings.TrimSuffix(hdr, "\x00"), " ")
	t, terr := plumbing.ParseObjectType(typ)
	n, nerr := strconv.ParseInt(size, 10, 64)
	if !ok || terr != nil || nerr != nil || n < 0 {
		return 0, nil, fmt.Errorf("loose object %s: bad header %q", h, hdr)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(br, data); err != nil {
		return 0, nil, fmt.Errorf("loose object %s: %w", h, err)
	}
	return t, data, nil
}

// zlibReaders recycles zlib readers: each holds a 32 KiB window, which
// would otherwise be allocated for every object read.
var zlibReaders sync.Pool

// inflate reads a zlib stream from r into data, which must be exactly the
// stream's decompressed size.
func inflate(r io.Reader, data []byte) error {
	zr, err := newZlibReader(r)
	if err != nil {
		return err
	}
	_, err = io.ReadFull(zr, data)
	if err == nil {
		zlibReaders.Put(zr)
	}
	return err
}

// newZlibReader returns a zlib reader of r, recycled if one is free; give
// it back to zlibReaders when done.
func newZlibReader(r io.Reader) (io.ReadCloser, error) {
	if v := zlibReaders.Get(); v != nil {
		zr := v.(io.ReadCloser)
		return zr, zr.(zlib.Resetter).Reset(r, nil)
	}
	return zlib.NewReader(r)
}

// packBufs recycles readPacked's readers: one of 4 KiB for every object
// and every delta base read otherwise, most of what a SEARCH of a large
// mailbox allocated.
var packBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func putPackBuf(br *bufio.Reader) {
	if br != nil {
		br.Reset(nil)
		packBufs.Put(br)
	}
}

// maxDeltaDepth bounds delta chains (git's default --depth is 50).
const maxDeltaDepth = 1000

// readPacked reads the object at off in pack p, resolving deltas.
func (o *objReader) readPacked(p *packReader, off int64, depth int) (plumbing.ObjectType, []byte, error) {
	if depth > maxDeltaDepth {
		return 0, nil, fmt.Errorf("pack %s: delta chain deeper than %d at offset %d", p.name, maxDeltaDepth, off)
	}
	br := packBufs.Get().(*bufio.Reader)
	br.Reset(io.NewSectionReader(p.f, off, 1<<62))
	defer func() { putPackBuf(br) }() // a no-op if given back already
	t, size, err := readEntryHeader(br)
	if err != nil {
		return 0, nil, fmt.Errorf("pack %s offset %d: %w", p.name, off, err)
	}
	// Where the base is, then the data (a delta is small), then the base:
	// the reader's buffer is not held while the chain below is read
	// (50 levels of 4 KiB each, for every read under way).
	var (
		baseOff int64 = -1
		baseRef Hash
	)
	switch t {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
	case plumbing.OFSDeltaObject:
		rel, err := readOFSOffset(br)
		if err != nil {
			return 0, nil, fmt.Errorf("pack %s offset %d: %w", p.name, off, err)
		}
		if rel <= 0 || rel > off {
			return 0, nil, fmt.Errorf("pack %s offset %d: bad delta base offset %d", p.name, off, rel)
		}
		baseOff = off - rel
	case plumbing.REFDeltaObject:
		if _, err := io.ReadFull(br, baseRef[:]); err != nil {
			return 0, nil, fmt.Errorf("pack %s offset %d: %w", p.name, off, err)
		}
		if boff, ok := p.idx.offset(baseRef); ok {
			baseOff = boff
		}
	default:
		return 0, nil, fmt.Errorf("pack %s offset %d: bad object type %d", p.name, off, t)
	}
	data := make([]byte, size)
	if err := inflate(br, data); err != nil {
		return 0, nil, fmt.Errorf("pack %s offset %d: %w", p.name, off, err)
	}
	putPackBuf(br) // not held while the chain below is read
	br = nil
	var (
		baseType plumbing.ObjectType
		base     []byte
	)
	switch {
	case baseOff >= 0:
		if baseType, base, err = o.packedBase(p, baseOff, depth); err != nil {
			return 0, nil, err
		}
	case t == plumbing.REFDeltaObject:
		if baseType, base, err = o.read(baseRef); err != nil {
			return 0, nil, err
		}
	}
	if base == nil && (t == plumbing.OFSDeltaObject || t == plumbing.REFDeltaObject) {
		base = []byte{}
	}
	if base != nil {
		out, err := packfile.PatchDelta(base, data)
		if err != nil {
			return 0, nil, fmt.Errorf("pack %s offset %d: %w", p.name, off, err)
		}
		return baseType, out, nil
	}
	return t, data, nil
}

// packedBase reads a delta base, through the cache of recent bases (a chain
// of deltas shares its bases).
func (o *objReader) packedBase(p *packReader, off int64, depth int) (plumbing.ObjectType, []byte, error) {
	key := baseKey{p, off}
	if t, b, ok := o.bases.get(key); ok {
		return t, b, nil
	}
	t, b, err := o.readPacked(p, off, depth+1)
	if err != nil {
		return 0, nil, err
	}
	o.bases.put(key, t, b)
	return t, b, nil
}

type baseKey struct {
	p   *packReader
	off int64
}

type baseEntry struct {
	t    plumbing.ObjectType
	data []byte
}

// baseCache holds decoded delta bases up to about max bytes, in two
// generations: when the current one is full it becomes the old one (and
// the old one is dropped), and a hit in the old one moves the base back. A
// chain of deltas (git's default depth is 50) then finds its recent bases
// however long the walk, with memory bounded (openObjReader sizes it from the memory limit).
type baseCache struct {
	mu       sync.Mutex
	max      int
	size     int
	cur, old map[baseKey]baseEntry
}

func newBaseCache(max int) *baseCache {
	return &baseCache{max: max, cur: map[baseKey]baseEntry{}}
}

func (c *baseCache) get(k baseKey) (plumbing.ObjectType, []byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cur[k]; ok {
		return e.t, e.data, true
	}
	if e, ok := c.old[k]; ok {
		c.putLocked(k, e)
		return e.t, e.data, true
	}
	return 0, nil, false
}

func (c *baseCache) put(k baseKey, t plumbing.ObjectType, b []byte) {
	if len(b) > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, baseEntry{t, b})
}

func (c *baseCache) putLocked(k baseKey, e baseEntry) {
	if c.size+len(e.data) > c.max/2 {
		c.old, c.cur, c.size = c.cur, map[baseKey]baseEntry{}, 0
	}
	c.cur[k] = e
	c.size += len(e.data)
}

// tree is a decoded tree object: its entries in git's order.
type tree struct {
	entries []object.TreeEntry

	// byName indexes the entries of a large tree, made when find is
	// asked about it many times (or at once if the tree is out of
	// order): diffs and validation look up every entry of one tree in
	// another, which a scan made quadratic (a mailbox folder of
	// thousands of messages, replicated commit by commit). The first
	// lookups search by halves, without the map: a commit looks up one
	// name or two in each tree on its path, a new tree every time.
	indexOnce sync.Once
	byName    map[string]int
	lookups   atomic.Int32

	// How the entries are ordered, found at the first look.
	orderOnce sync.Once
	plain     bool // the names strictly increasing, byte by byte
	inOrder   bool // in git's order (treeEntryCmp), no entry twice
}

func (t *tree) order() {
	t.orderOnce.Do(func() {
		t.plain, t.inOrder = true, true
		for i := 1; i < len(t.entries); i++ {
			a, b := t.entries[i-1], t.entries[i]
			if a.Name >= b.Name {
				t.plain = false
			}
			if treeEntryCmp(a, b) >= 0 {
				t.inOrder = false
			}
		}
	})
}

// namesSorted reports whether t's names are strictly increasing: the
// order of git's trees but where a folder's name is followed in it by a
// name that sorts before "/" after it ("a" as a folder, then "a.txt"), and
// no name twice.
func (t *tree) namesSorted() bool {
	t.order()
	return t.plain
}

const (
	findScan     = 16 // the largest tree that find scans
	findSearches = 16 // lookups of a tree searched by halves before it is indexed
)

// find returns the entry called name (the first, in a tree that has it
// twice).
func (t *tree) find(name string) (object.TreeEntry, bool) {
	if len(t.entries) <= findScan {
		for _, e := range t.entries {
			if e.Name == name {
				return e, true
			}
		}
		return object.TreeEntry{}, false
	}
	if t.lookups.Load() < findSearches {
		t.lookups.Add(1)
		if t.order(); t.plain {
			i, ok := slices.BinarySearchFunc(t.entries, name, func(e object.TreeEntry, name string) int { return strings.Compare(e.Name, name) })
			if ok {
				return t.entries[i], true
			}
			return object.TreeEntry{}, false
		}
		if t.inOrder {
			// An item sorts before a folder of the same name.
			for _, m := range [2]filemode.FileMode{filemode.Regular, filemode.Dir} {
				if i, ok := slices.BinarySearchFunc(t.entries, object.TreeEntry{Name: name, Mode: m}, treeEntryCmp); ok {
					return t.entries[i], true
				}
			}
			return object.TreeEntry{}, false
		}
	}
	t.indexOnce.Do(func() {
		t.byName = make(map[string]int, len(t.entries))
		for i, e := range t.entries {
			if _, dup := t.byName[e.Name]; !dup { // the first, as a scan finds
				t.byName[e.Name] = i
			}
		}
	})
	if i, ok := t.byName[name]; ok {
		return t.entries[i], true
	}
	return object.TreeEntry{}, false
}

// parseTree decodes a tree object's content. The entries are counted
// first and made at once, and the names are parts of one string: one
// allocation for each rather than one for each entry and a growing slice
// (trees are decoded for every commit made or received).
func parseTree(h Hash, data []byte) (*tree, error) {
	n := 0
	for rest := data; len(rest) > 0; n++ {
		nul := bytes.IndexByte(rest, 0)
		if nul < 0 || len(rest) < nul+1+20 {
			return nil, fmt.Errorf("tree %s: malformed entry", h)
		}
		rest = rest[nul+21:]
	}
	all := string(data)
	t := &tree{entries: make([]object.TreeEntry, 0, n)}
	for off := 0; off < len(data); {
		d := data[off:]
		sp := bytes.IndexByte(d, ' ')
		nul := bytes.IndexByte(d, 0)
		if sp < 0 || nul < sp || len(d) < nul+1+20 {
			return nil, fmt.Errorf("tree %s: malformed entry", h)
		}
		mode, err := parseMode(d[:sp])
		if err != nil {
			return nil, fmt.Errorf("tree %s: %w", h, err)
		}
		var eh Hash
		copy(eh[:], d[nul+1:nul+21])
		t.entries = append(t.entries, object.TreeEntry{Name: all[off+sp+1 : off+nul], Mode: mode, Hash: eh})
		off += nul + 21
	}
	return t, nil
}

// parseMode parses a tree entry's mode: the usual ones without making a
// string of each.
func parseMode(b []byte) (filemode.FileMode, error) {
	switch string(b) {
	case "100644":
		return filemode.Regular, nil
	case "40000":
		return filemode.Dir, nil
	case "100755":
		return filemode.Executable, nil
	}
	return filemode.New(string(b))
}

// tree returns the decoded tree h.
func (o *objReader) tree(h Hash) (*tree, error) {
	if t := o.trees.get(h); t != nil {
		return t, nil
	}
	o.trees.reads.Add(1)
	data, err := o.readAs(h, plumbing.TreeObject)
	if err != nil {
		return nil, err
	}
	t, err := parseTree(h, data)
	if err != nil {
		return nil, err
	}
	o.trees.put(h, t)
	return t, nil
}

// commitTree returns the tree of commit h.
func (o *objReader) commitTree(h Hash) (Hash, error) {
	if o.trees != nil {
		if n, ok := o.trees.commits.get(h); ok {
			return n.tree, nil
		}
	}
	data, err := o.readAs(h, plumbing.CommitObject)
	if err != nil {
		return Hash{}, err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	hx, ok := bytes.CutPrefix(line, []byte("tree "))
	if !ok || !plumbing.IsHash(string(hx)) {
		return Hash{}, fmt.Errorf("commit %s: no tree line", h)
	}
	return plumbing.NewHash(string(hx)), nil
}

// entry walks from tree root to path. ok is false when nothing is there.
func (o *objReader) entry(root Hash, path string) (e object.TreeEntry, ok bool, err error) {
	h := root
	for {
		name, rest, more := strings.Cut(path, "/")
		t, err := o.tree(h)
		if err != nil {
			return e, false, err
		}
		e, ok = t.find(name)
		if !ok || !more {
			return e, ok, nil
		}
		if e.Mode != filemode.Dir {
			return e, false, nil
		}
		h, path = e.Hash, rest
	}
}

// treeCache keeps decoded trees in two generations: lookups promote from
// the old generation, and when the current one holds maxEntries tree entries
// it becomes the old one. Trees are immutable, so sharing them is safe.
type treeCache struct {
	mu         sync.Mutex
	cur, old   map[Hash]*tree
	n          int
	maxEntries int

	commits *commitCache // decoded commits, beside the trees
	fresh   *freshBlobs  // blobs just received, until validated

	reads atomic.Int64 // trees read and decoded (not found here)
}

func newTreeCache(maxEntries int) *treeCache {
	// Fresh blobs: 4 MiB for 64k tree entries, 256 KiB in a small VM.
	return &treeCache{cur: map[Hash]*tree{}, maxEntries: maxEntries, commits: newCommitCache(max(maxEntries/4, 256)), fresh: newFreshBlobs(maxEntries * 64)}
}

// commitCache keeps decoded commits (their tree, parents and time: about
// 150 bytes each) in two generations of up to max, as treeCache does: the
// walks of pushes, fetches, validation and ahead/behind counts read the
// same recent commits again and again, each an inflate and a parse. It is
// the store's own (a hash names one commit everywhere, but a store must
// not take a commit for present because another store in the process has
// it).
type commitCache struct {
	mu       sync.Mutex
	cur, old map[Hash]commitNode
	max      int

	// What each commit's tree has that its first parent's lacks
	// (commitChanges), a few hashes a commit; up to max of them, in two
	// generations too.
	chCur, chOld map[Hash][]Hash
}

func newCommitCache(max int) *commitCache {
	return &commitCache{cur: map[Hash]commitNode{}, chCur: map[Hash][]Hash{}, max: max}
}

func (c *commitCache) changes(h Hash) ([]Hash, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.chCur[h]; ok {
		return ch, true
	}
	if ch, ok := c.chOld[h]; ok {
		c.putChangesLocked(h, ch)
		return ch, true
	}
	return nil, false
}

func (c *commitCache) putChanges(h Hash, ch []Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putChangesLocked(h, ch)
}

func (c *commitCache) putChangesLocked(h Hash, ch []Hash) {
	if len(c.chCur) >= c.max {
		c.chOld, c.chCur = c.chCur, map[Hash][]Hash{}
	}
	c.chCur[h] = ch
}

func (c *commitCache) get(h Hash) (commitNode, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.cur[h]; ok {
		return n, true
	}
	if n, ok := c.old[h]; ok {
		c.putLocked(h, n)
		return n, true
	}
	return commitNode{}, false
}

func (c *commitCache) put(h Hash, n commitNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(h, n)
}

func (c *commitCache) putLocked(h Hash, n commitNode) {
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, map[Hash]commitNode{}
	}
	c.cur[h] = n
}

func (c *treeCache) get(h Hash) *tree {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.cur[h]; t != nil {
		return t
	}
	if t := c.old[h]; t != nil {
		c.putLocked(h, t)
		return t
	}
	return nil
}

func (c *treeCache) put(h Hash, t *tree) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(h, t)
}

// forget drops what the caches hold of the objects idx lists: the objects
// of a pack being removed (a refused push's), which must not be taken for
// present after.
func (c *treeCache) forget(idx *packIndex) {
	c.mu.Lock()
	for i := range idx.n {
		h := idx.hash(i)
		delete(c.cur, h)
		delete(c.old, h)
	}
	c.mu.Unlock()
	for i := range idx.n {
		c.fresh.forget(idx.hash(i))
	}
	c.commits.mu.Lock()
	defer c.commits.mu.Unlock()
	for i := range idx.n {
		h := idx.hash(i)
		delete(c.commits.cur, h)
		delete(c.commits.old, h)
		delete(c.commits.chCur, h)
		delete(c.commits.chOld, h)
	}
}

func (c *treeCache) putLocked(h Hash, t *tree) {
	n := len(t.entries) + treeFixedEntries
	if c.n+n > c.maxEntries {
		c.old, c.cur, c.n = c.cur, map[Hash]*tree{}, 0
	}
	c.cur[h] = t
	c.n += n
}

// treeFixedEntries is what a cached tree costs beside its entries (its
// struct, its slice's allocation, its place in the map: about 100 bytes),
// in entries (about 60 bytes each, with the name): a cache of many small
// trees (a mailbox's folders of 16) must not hold twice the memory of one
// of few large ones.
const treeFixedEntries = 2
