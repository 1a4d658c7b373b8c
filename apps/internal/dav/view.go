package dav

import (
	"errors"
	"maps"
	"sort"
	"strings"
	"sync"

	"github.com/nymote/nymote/store"
)

// reader is the read side of a store snapshot. *store.Snapshot is one; a
// *view is a caching one.
type reader interface {
	Commit() store.Hash
	Read(path string) ([]byte, error)
	ReadDir(dir string) ([]store.Entry, error)
	List(prefix string) ([]store.Entry, error)
	Stat(path string) (store.Entry, error)
}

var _ reader = (*store.Snapshot)(nil)

// viewCache keeps one view of the store's head that requests share and
// that follows new commits by their diff (store.DiffUnder follows the
// size of a change, not of the store). Reading through the store walks
// trees object by object; the view answers most reads from memory:
// collection listings (name → blob hash), directories, small files, and
// object contents by blob hash.
type viewCache struct {
	st    *store.Store
	mu    sync.Mutex
	cur   *view
	blobs blobCache
}

// view is a caching reader of one commit.
type view struct {
	vc     *viewCache
	commit store.Hash

	mu    sync.Mutex
	sn    *store.Snapshot
	files map[string]kept[[]byte]
	stats map[string]kept[store.Entry]
	dirs  map[string][]store.Entry
	// lists holds the listings of objects and properties folders ("…/o",
	// "…/p").
	lists map[string]*listing
}

// kept is an answer a view keeps: what a read returned, a missing item's
// error included.
type kept[T any] struct {
	v   T
	err error
}

// keep answers p from m, or reads it from the view's snapshot and keeps the
// answer, unless the read failed for another reason than a missing item.
func keep[T any](v *view, m map[string]kept[T], p string, read func(*store.Snapshot, string) (T, error)) (T, error) {
	v.mu.Lock()
	k, ok := m[p]
	v.mu.Unlock()
	if ok {
		return k.v, k.err
	}
	sn, err := v.snapshot()
	if err != nil {
		var zero T
		return zero, err
	}
	x, err := read(sn, p)
	if err == nil || errors.Is(err, store.ErrNotExist) {
		v.mu.Lock()
		m[p] = kept[T]{x, err}
		v.mu.Unlock()
	}
	return x, err
}

// listing is the listing of an objects or properties folder: name → blob
// hash. A listing never changes once made: a view that follows a commit
// makes a new one for each folder the commit changed, so a listing's
// address names one version of its folder (the UID index is kept per
// listing).
type listing struct {
	m map[string]store.Hash

	sortOnce sync.Once
	sorted   []string
}

// sortedNames returns the names in the listing, sorted (made once).
func (l *listing) sortedNames() []string {
	l.sortOnce.Do(func() {
		l.sorted = make([]string, 0, len(l.m))
		for name := range l.m {
			l.sorted = append(l.sorted, name)
		}
		sort.Strings(l.sorted)
	})
	return l.sorted
}

func newView(vc *viewCache, h store.Hash) *view {
	return &view{vc: vc, commit: h, files: map[string]kept[[]byte]{}, stats: map[string]kept[store.Entry]{}, dirs: map[string][]store.Entry{}, lists: map[string]*listing{}}
}

// maxDiff is the largest change a view follows; beyond it a fresh view is
// cheaper.
const maxDiff = 5000

// head returns a view of the default branch's head.
func (vc *viewCache) head() (*view, error) {
	h, err := vc.st.BranchHead("")
	if err != nil {
		return nil, err
	}
	return vc.at(h), nil
}

// at returns a view of commit h.
func (vc *viewCache) at(h store.Hash) *view {
	vc.mu.Lock()
	cur := vc.cur
	vc.mu.Unlock()
	if cur != nil && cur.commit == h {
		return cur
	}
	var nv *view
	if cur != nil && !cur.commit.IsZero() {
		if changes, err := vc.st.DiffUnder(cur.commit, h, ""); err == nil && len(changes) <= maxDiff {
			nv = cur.advance(h, changes)
		}
	}
	if nv == nil {
		nv = newView(vc, h)
	}
	vc.mu.Lock()
	if vc.cur == cur {
		vc.cur = nv
	}
	vc.mu.Unlock()
	return nv
}

// committed returns the view of commit head, which this server made from
// commit base with exactly changes: when the current view is of base, it
// follows them without diffing the commits.
func (vc *viewCache) committed(base, head store.Hash, changes []store.Change) *view {
	vc.mu.Lock()
	cur := vc.cur
	vc.mu.Unlock()
	if cur == nil || cur.commit != base || base.IsZero() {
		return vc.at(head)
	}
	if base == head {
		return cur
	}
	nv := cur.advance(head, changes)
	vc.mu.Lock()
	if vc.cur == cur {
		vc.cur = nv
	}
	vc.mu.Unlock()
	return nv
}

// advance makes the view of commit h from v and the changes between them.
func (v *view) advance(h store.Hash, changes []store.Change) *view {
	v.mu.Lock()
	defer v.mu.Unlock()
	nv := &view{vc: v.vc, commit: h, files: maps.Clone(v.files), stats: maps.Clone(v.stats),
		dirs: maps.Clone(v.dirs), lists: maps.Clone(v.lists)}
	copied := map[string]bool{}
	for _, ch := range changes {
		// The path and every folder above it changed.
		for d := ch.Path; ; {
			delete(nv.files, d)
			delete(nv.stats, d)
			delete(nv.dirs, d)
			i := strings.LastIndexByte(d, '/')
			if i < 0 {
				delete(nv.dirs, "")
				break
			}
			d = d[:i]
		}
		if dir, name, ok := splitObjectPath(ch.Path); ok {
			l, loaded := nv.lists[dir]
			if !loaded {
				continue
			}
			if !copied[dir] {
				nl := &listing{m: make(map[string]store.Hash, len(l.m)+1)}
				for k, e := range l.m {
					nl.m[k] = e
				}
				nv.lists[dir], l, copied[dir] = nl, nl, true
			}
			if ch.To.IsZero() {
				delete(l.m, name)
			} else {
				l.m[name] = ch.To
			}
		}
	}
	return nv
}

// splitObjectPath splits "…/o/xx/yy/name" into "…/o" and name (and
// likewise a properties path, "…/p/xx/yy/name"). The shard folders are two
// hexadecimal digits each, which no collection folder's path has in those
// places (collections alternate with "c" folders).
func splitObjectPath(p string) (dir, name string, ok bool) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", "", false
	}
	name = p[i+1:]
	rest := p[:i]
	for range 2 { // the two shard levels
		j := strings.LastIndexByte(rest, '/')
		if j < 0 || !isShard(rest[j+1:]) {
			return "", "", false
		}
		rest = rest[:j]
	}
	if !strings.HasSuffix(rest, "/o") && !strings.HasSuffix(rest, "/p") {
		return "", "", false
	}
	return rest, name, true
}

func isShard(s string) bool {
	if len(s) != 2 {
		return false
	}
	for i := range 2 {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (v *view) Commit() store.Hash { return v.commit }

func (v *view) snapshot() (*store.Snapshot, error) {
	v.mu.Lock()
	sn := v.sn
	v.mu.Unlock()
	if sn != nil {
		return sn, nil
	}
	sn, err := v.vc.st.SnapshotOf(v.commit)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.sn = sn
	v.mu.Unlock()
	return sn, nil
}

// list returns the listing of an objects or properties folder, loading it
// once.
func (v *view) list(dir string) (*listing, error) {
	v.mu.Lock()
	l, ok := v.lists[dir]
	v.mu.Unlock()
	if ok {
		return l, nil
	}
	sn, err := v.snapshot()
	if err != nil {
		return nil, err
	}
	ents, err := sn.List(dir)
	if err != nil {
		return nil, err
	}
	l = &listing{m: make(map[string]store.Hash, len(ents))}
	for _, e := range ents {
		l.m[store.Unshard(e.Path)] = e.Hash
	}
	v.mu.Lock()
	if l2, ok := v.lists[dir]; ok {
		l = l2 // loaded meanwhile: keep one version
	} else {
		v.lists[dir] = l
	}
	v.mu.Unlock()
	return l, nil
}

func (v *view) Stat(p string) (store.Entry, error) {
	if dir, name, ok := splitObjectPath(p); ok {
		l, err := v.list(dir)
		if err != nil {
			return store.Entry{}, err
		}
		h, ok := l.m[name]
		if !ok {
			return store.Entry{}, store.ErrNotExist
		}
		return store.Entry{Path: p, Hash: h}, nil
	}
	return keep(v, v.stats, p, (*store.Snapshot).Stat)
}

func (v *view) Read(p string) ([]byte, error) {
	if _, _, ok := splitObjectPath(p); ok {
		e, err := v.Stat(p)
		if err != nil {
			return nil, err
		}
		return v.blob(e.Hash)
	}
	return keep(v, v.files, p, (*store.Snapshot).Read)
}

// blob reads an object's contents by blob hash (an ETag from a listing of
// this view), through the blob cache.
func (v *view) blob(h store.Hash) ([]byte, error) {
	if d, ok := v.vc.blobs.get(h); ok {
		return d, nil
	}
	d, err := v.vc.st.ReadBlob(h)
	if err == nil {
		v.vc.blobs.put(h, d)
	}
	return d, err
}

// scanView reads through a view for a listing that reads many objects
// once: object contents it reads are not put into the blob cache, so that
// one listing neither holds the cache's worth of memory nor pushes out
// what other requests keep reading.
type scanView struct{ *view }

// scan returns a scanView of sn when it is a view.
func scan(sn reader) reader {
	if v, ok := sn.(*view); ok {
		return scanView{v}
	}
	return sn
}

func (s scanView) Read(p string) ([]byte, error) {
	if _, _, ok := splitObjectPath(p); !ok {
		return s.view.Read(p)
	}
	e, err := s.Stat(p)
	if err != nil {
		return nil, err
	}
	if d, ok := s.vc.blobs.get(e.Hash); ok {
		return d, nil
	}
	return s.vc.st.ReadBlob(e.Hash)
}

func (v *view) ReadDir(dir string) ([]store.Entry, error) {
	v.mu.Lock()
	ents, ok := v.dirs[dir]
	v.mu.Unlock()
	if ok {
		return ents, nil
	}
	sn, err := v.snapshot()
	if err != nil {
		return nil, err
	}
	ents, err = sn.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.dirs[dir] = ents
	v.mu.Unlock()
	return ents, nil
}

func (v *view) List(prefix string) ([]store.Entry, error) {
	if strings.HasSuffix(prefix, "/o") || strings.HasSuffix(prefix, "/p") {
		l, err := v.list(prefix)
		if err != nil {
			return nil, err
		}
		out := make([]store.Entry, 0, len(l.m))
		for name, h := range l.m {
			out = append(out, store.Entry{Path: prefix + "/" + store.Shard(name), Hash: h})
		}
		return out, nil
	}
	sn, err := v.snapshot()
	if err != nil {
		return nil, err
	}
	return sn.List(prefix)
}

// blobCache keeps object contents by blob hash, in two generations: when
// the newer one is full, it becomes the older one and the oldest is dropped.
type blobCache struct {
	mu        sync.Mutex
	cur, old  map[store.Hash][]byte
	size, max int
}

const blobCacheBytes = 64 << 20

func (b *blobCache) get(h store.Hash) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d, ok := b.cur[h]; ok {
		return d, true
	}
	if d, ok := b.old[h]; ok {
		b.putLocked(h, d)
		return d, true
	}
	return nil, false
}

func (b *blobCache) put(h store.Hash, d []byte) {
	b.mu.Lock()
	b.putLocked(h, d)
	b.mu.Unlock()
}

// putData caches data that was just written.
func (b *blobCache) putData(d []byte) store.Hash {
	h := store.BlobHash(d)
	b.put(h, d)
	return h
}

func (b *blobCache) putLocked(h store.Hash, d []byte) {
	if b.cur == nil {
		b.cur = map[store.Hash][]byte{}
	}
	if b.size+len(d) > blobCacheBytes/2 {
		b.old, b.cur, b.size = b.cur, map[store.Hash][]byte{}, 0
	}
	if _, ok := b.cur[h]; !ok {
		b.cur[h] = d
		b.size += len(d)
	}
}
