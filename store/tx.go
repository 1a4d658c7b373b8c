package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Signature names the author of a commit.
type Signature struct {
	Name  string
	Email string
}

func (sig Signature) validate() error {
	for _, f := range []struct{ what, v string }{{"name", sig.Name}, {"email", sig.Email}} {
		if strings.ContainsAny(f.v, "<>\n\x00") {
			return fmt.Errorf("store: author %s %q: must not contain <, >, NUL or a newline", f.what, f.v)
		}
	}
	if sig.Name == "" {
		return errors.New("store: author name is empty")
	}
	return nil
}

// CommitOptions describe the commit that a write makes.
type CommitOptions struct {
	// Branch to commit to; "" means DefaultBranch.
	Branch string
	// Author of the commit; zero means the store's default author.
	Author Signature
	// Message of the commit; "" means "update".
	Message string
	// When is the commit time; zero means now.
	When time.Time
	// Deterministic, for merges only (Merge, Pull), makes a merge commit
	// that depends on nothing but the two heads merged: the same commit,
	// hash included, whichever node makes it and whichever head is its
	// branch's. Its parents are sorted by hash and the tree is merged with
	// the lower hash as ours; author and committer are ReplicaAuthor, the
	// message is ReplicaMergeMessage, and the time is the later of the
	// parents' committer times (so that it is never before either);
	// Author, Message and When are ignored. Replicas use it: two nodes that
	// merge each other's heads then make one commit, and each fast-forwards
	// to the other's at once, where merges that name the node or the time
	// differed and were merged again, back and forth. A commit that is not
	// a merge refuses it.
	Deterministic bool
}

// ReplicaAuthor is the author and committer of deterministic merges (see
// CommitOptions.Deterministic).
var ReplicaAuthor = Signature{Name: "nymote replica", Email: "replica@nymote.invalid"}

// ReplicaMergeMessage is the message of deterministic merges.
const ReplicaMergeMessage = "Merge replicas"

func (o CommitOptions) branch() string {
	if o.Branch == "" {
		return DefaultBranch
	}
	return o.Branch
}

// Tx is a write transaction: the puts and deletes made through it become one
// commit when the function given to Update returns nil. Reads through a Tx
// see its own writes. A Tx is not safe for concurrent use and must not be
// kept after Update returns.
type Tx struct {
	s       *Store
	base    *Snapshot
	changes map[string]change
}

// change is a pending write: a blob (with its content if it is not stored
// yet: in memory, or in obj when it is read from a file, see spool.go) or a
// deletion.
type change struct {
	del  bool
	hash Hash
	data []byte
	obj  plumbing.EncodedObject
}

// Base is the commit the transaction started from (zero in an empty store).
func (tx *Tx) Base() Hash { return tx.base.commit }

// Put stores data at path. It keeps a copy of data, so the caller may reuse
// the slice.
func (tx *Tx) Put(path string, data []byte) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	data = append([]byte{}, data...)
	tx.changes[path] = change{hash: plumbing.ComputeHash(plumbing.BlobObject, data), data: data}
	return nil
}

// Delete removes the item at path. Deleting a path that holds nothing is not
// an error.
func (tx *Tx) Delete(path string) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	tx.changes[path] = change{del: true}
	return nil
}

// Get returns the content at path as the transaction sees it.
func (tx *Tx) Get(path string) ([]byte, error) {
	if c, ok := tx.changes[path]; ok {
		if c.del {
			return nil, fmt.Errorf("store: %s: %w", path, ErrNotExist)
		}
		if c.obj != nil {
			return readAll(c.obj)
		}
		if c.data == nil {
			return tx.s.blob(c.hash)
		}
		return c.data, nil
	}
	return tx.base.Read(path)
}

// Exists reports whether path holds an item, as the transaction sees it.
func (tx *Tx) Exists(path string) (bool, error) {
	if c, ok := tx.changes[path]; ok {
		return !c.del, nil
	}
	return tx.base.Exists(path)
}

// List lists every item under prefix, as the transaction sees it.
func (tx *Tx) List(prefix string) ([]Entry, error) {
	base, err := tx.base.List(prefix)
	if err != nil {
		return nil, err
	}
	in := func(p string) bool { return prefix == "" || strings.HasPrefix(p, prefix+"/") }
	seen := map[string]bool{}
	var out []Entry
	for _, e := range base {
		seen[e.Path] = true
		if c, ok := tx.changes[e.Path]; ok {
			if c.del {
				continue
			}
			e.Hash = c.hash
		}
		out = append(out, e)
	}
	for p, c := range tx.changes {
		if !c.del && !seen[p] && in(p) {
			out = append(out, Entry{Path: p, Hash: c.hash})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Update runs fn in a write transaction on opts.Branch and commits what it
// wrote as one commit. If fn returns an error nothing is written and the
// error is returned. It returns the branch's new head; when fn changed
// nothing, no commit is made and the current head is returned. When Update
// returns, the commit is durable.
func (s *Store) Update(ctx context.Context, opts CommitOptions, fn func(tx *Tx) error) (h Hash, err error) {
	start := time.Now()
	var fnTime time.Duration
	committed := false
	defer func() {
		if obs := s.commitObs.Load(); obs != nil && committed && err == nil {
			(*obs)(time.Since(start) - fnTime)
		}
	}()
	unlock, err := s.lockFor(ctx, false)
	if err != nil {
		return Hash{}, err
	}
	defer unlock()
	branch := opts.branch()
	head, err := s.head(branch)
	if err != nil {
		return Hash{}, err
	}
	base, err := s.snapshotAt(head)
	if err != nil {
		return Hash{}, err
	}
	tx := &Tx{s: s, base: base, changes: map[string]change{}}
	fnStart := time.Now()
	if err := fn(tx); err != nil {
		return Hash{}, err
	}
	fnTime = time.Since(fnStart)
	if len(tx.changes) == 0 {
		return head, nil
	}
	tree, levels, trees, leaves, err := s.buildTree(base.tree, tx.changes)
	if err != nil {
		return Hash{}, err
	}
	if tree == base.tree && !head.IsZero() {
		return head, nil
	}
	var parents []Hash
	if !head.IsZero() {
		parents = []Hash{head}
	}
	committed = true
	if s.wal == nil {
		c, err := s.writeTreeAndCommit(tree, levels, parents, opts)
		if err != nil {
			return Hash{}, err
		}
		s.cacheTrees(trees)
		s.cacheChanges(c, trees, leaves)
		return c, s.moveBranch(branch, head, c)
	}
	c, err := s.commitLogged(branch, head, tree, levels, trees, parents, opts)
	if err == nil {
		s.cacheChanges(c, trees, leaves)
	}
	return c, err
}

// cacheChanges notes what commit c's tree has that its parent's lacks,
// as commitChanges would find it by comparing the two trees: the trees
// the commit built and the items it set (a superset where an item was
// set to what it was). A push of the commit to each replica lists them
// from there, not by a walk of both trees (a mailbox's folders of 256
// shards each, compared entry by entry for every commit pushed).
func (s *Store) cacheChanges(c Hash, trees []decodedTree, leaves []Hash) {
	ch := make([]Hash, 0, len(trees)+len(leaves))
	// The root tree last built, first listed (as the walk lists it).
	for i := len(trees) - 1; i >= 0; i-- {
		ch = append(ch, trees[i].h)
	}
	ch = append(ch, leaves...)
	s.trees.commits.putChanges(c, ch)
}

// cacheTrees puts the trees a commit wrote into the tree cache: the next
// commit builds on them, and the watchers' diffs and the pushes to
// replicas read them at once.
func (s *Store) cacheTrees(trees []decodedTree) {
	for _, t := range trees {
		s.trees.put(t.h, t.t)
	}
}

// SetCommitObserver has fn told, after each Update that made a commit, how
// long the commit took: from the call to Update until the commit was
// durable, less the time of Update's own fn (the caller's work), so the
// wait for the writer lock, building the tree, writing and syncing. fn
// runs on the writer's goroutine, after the lock is released, and must be
// quick (a metrics histogram). One observer: a later call replaces it;
// nil removes it.
func (s *Store) SetCommitObserver(fn func(time.Duration)) {
	if fn == nil {
		s.commitObs.Store(nil)
		return
	}
	s.commitObs.Store(&fn)
}

// commitLogged makes a commit durable through the commit log (wal.go): the
// new objects and the branch move are appended to the log and synced, then
// written into the repository without syncs.
func (s *Store) commitLogged(branch string, head, tree Hash, levels [][]plumbing.EncodedObject, trees []decodedTree, parents []Hash, opts CommitOptions) (Hash, error) {
	commit, levels, err := s.encodeCommit(tree, levels, parents, opts)
	if err != nil {
		return Hash{}, err
	}
	var objects []plumbing.EncodedObject
	for _, lvl := range levels {
		objects = append(objects, lvl...)
	}
	objects = append(objects, commit)
	c := commit.Hash()
	// The log hands back the objects to queue: large ones are read back
	// from the log, not kept in memory (spool.go).
	objects, err = s.wal.append(walRecord{branch: branch, old: head, new: c, objects: objects})
	if err != nil {
		return Hash{}, err
	}
	// Durable now; the repository's files follow in the background.
	s.pend.add(pendingCommit{branch: branch, head: c, objects: objects})
	s.cacheTrees(trees)
	s.notify(branch, head, c)
	s.maybeGC()
	if s.wal.full() {
		if err := s.checkpoint(); err != nil {
			// The commit is durable in the log; the next checkpoint or
			// Open finishes the work.
			s.log.Warn("store: checkpoint failed", "err", err)
		}
	}
	return c, nil
}

// head returns the commit that branch points at, zero if it does not exist.
// A commit whose files are still being written (pending.go) is answered
// from memory; otherwise the branch file is read directly (one open and
// read). Branch files are replaced by renaming, and only after the commit
// they name is durable (wal.go) and its objects are written, so what this
// reads is always a whole, durable commit. A branch that is not a loose
// file (packed references) is read through go-git.
func (s *Store) head(branch string) (Hash, error) {
	if err := validateBranch(branch); err != nil {
		return Hash{}, err
	}
	if s.isClosed() {
		return Hash{}, ErrClosed
	}
	if s.pend != nil {
		if h, ok := s.pend.head(branch); ok {
			return h, nil
		}
	}
	ref := plumbing.NewBranchReferenceName(branch)
	if f, err := os.Open(filepath.Join(s.path, filepath.FromSlash(ref.String()))); err == nil {
		// A branch file is 41 bytes: one read (os.ReadFile would also
		// stat the file and read again to see its end). Anything else
		// is left to go-git.
		var buf [64]byte
		n, err := f.Read(buf[:])
		f.Close()
		if hex := string(bytes.TrimSpace(buf[:n])); err == nil && plumbing.IsHash(hex) {
			return plumbing.NewHash(hex), nil
		}
	}
	var h Hash
	err := s.readRefs(func(r *git.Repository) error {
		ref, err := r.Storer.Reference(plumbing.NewBranchReferenceName(branch))
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: branch %s: %w", branch, err)
		}
		h = ref.Hash()
		return nil
	})
	return h, err
}

// moveBranch points branch at h (the caller holds the writer lock and has
// checked that it was at old), then tells watchers.
func (s *Store) moveBranch(branch string, old, h Hash) error {
	if err := s.writeRef(plumbing.NewBranchReferenceName(branch), h); err != nil {
		return err
	}
	s.notify(branch, old, h)
	s.maybeGC()
	return nil
}

// writeTreeAndCommit writes the objects of a new tree (levels, from
// buildTree) and the commit of that tree in one batch, the commit renamed
// into place last: one round of syncs instead of one for the tree and one for
// the commit.
func (s *Store) writeTreeAndCommit(tree Hash, levels [][]plumbing.EncodedObject, parents []Hash, opts CommitOptions) (Hash, error) {
	commit, levels, err := s.encodeCommit(tree, levels, parents, opts)
	if err != nil {
		return Hash{}, err
	}
	return s.writeObjects(commit, levels)
}

// encodeCommit encodes the commit of tree; levels gain the empty tree if
// tree is zero.
func (s *Store) encodeCommit(tree Hash, levels [][]plumbing.EncodedObject, parents []Hash, opts CommitOptions) (plumbing.EncodedObject, [][]plumbing.EncodedObject, error) {
	if opts.Deterministic && len(parents) < 2 {
		return nil, nil, errors.New("store: a deterministic commit must be a merge (CommitOptions.Deterministic is for Merge and Pull)")
	}
	author := opts.Author
	if author.Name == "" {
		author = s.opts.Author
	}
	if err := author.validate(); err != nil {
		return nil, nil, err
	}
	when := opts.When
	if when.IsZero() {
		when = time.Now()
	}
	msg := opts.Message
	if msg == "" {
		msg = "update"
	}
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	if tree.IsZero() {
		// An empty tree: git knows it, but it must exist as an object.
		et := emptyTree()
		levels = append(levels, []plumbing.EncodedObject{et})
		tree = et.Hash()
	}
	sig := object.Signature{Name: author.Name, Email: author.Email, When: when.Truncate(time.Second)}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: tree, ParentHashes: parents}
	o := &plumbing.MemoryObject{}
	if err := c.Encode(o); err != nil {
		return nil, nil, fmt.Errorf("store: encode commit: %w", err)
	}
	return o, levels, nil
}

func emptyTree() plumbing.EncodedObject {
	o := &plumbing.MemoryObject{}
	(&object.Tree{}).Encode(o)
	return o
}

// writeObjects writes levels of objects, then last (if not nil), durably:
// all are staged and synced in parallel, then renamed into place level by
// level (see objWriter), so that a tree in the repository always has all of
// its contents, an invariant that copying relies on. It returns the hash of
// last, or of the last object written.
func (s *Store) writeObjects(last plumbing.EncodedObject, levels [][]plumbing.EncodedObject) (Hash, error) {
	var h Hash
	w := s.newObjWriter()
	for _, lvl := range levels {
		for _, o := range lvl {
			w.write(o)
			h = o.Hash()
		}
	}
	if last != nil {
		w.write(last)
		h = last.Hash()
	}
	return h, w.wait()
}

// buildTree applies changes to the tree base in memory. It returns the new
// root tree (zero if the result is empty) and the new objects in the order
// they must be written: deepest first (blobs, then trees bottom-up).
//
// It returns the new trees decoded too, for the tree cache once the commit
// is made.
func (s *Store) buildTree(base Hash, changes map[string]change) (Hash, [][]plumbing.EncodedObject, []decodedTree, []Hash, error) {
	b := &treeBuilder{s: s}
	var root Hash
	err := s.readObjs(func(o *objReader) error {
		b.o = o
		b.levels, b.trees, b.leaves = nil, nil, nil
		var err error
		root, err = b.build(base, "", changes, 0)
		return err
	})
	if err != nil {
		return Hash{}, nil, nil, nil, err
	}
	levels := make([][]plumbing.EncodedObject, 0, len(b.levels))
	for i := len(b.levels) - 1; i >= 0; i-- {
		if len(b.levels[i]) > 0 {
			levels = append(levels, b.levels[i])
		}
	}
	return root, levels, b.trees, b.leaves, nil
}

type treeBuilder struct {
	s      *Store
	o      *objReader
	levels [][]plumbing.EncodedObject // by depth; blobs at depth+1
	trees  []decodedTree              // the new trees, decoded
	leaves []Hash                     // the items set (not removed)
}

func (b *treeBuilder) add(depth int, o plumbing.EncodedObject) {
	for len(b.levels) <= depth {
		b.levels = append(b.levels, nil)
	}
	b.levels[depth] = append(b.levels[depth], o)
}

func (b *treeBuilder) build(base Hash, dir string, changes map[string]change, depth int) (Hash, error) {
	// The base tree's entries stay as they are, in order; what changes
	// is noted in over (nil: removed) and merged in, so that a folder of
	// thousands of items, one of them added, is not put in a map and
	// sorted again for every commit.
	var bt *tree
	if !base.IsZero() {
		t, err := b.o.tree(base)
		if err != nil {
			return Hash{}, fmt.Errorf("store: tree %s at %q: %w", base, dir, err)
		}
		bt = t
	}
	over := map[string]*object.TreeEntry{}
	get := func(name string) (object.TreeEntry, bool) {
		if e, ok := over[name]; ok {
			if e == nil {
				return object.TreeEntry{}, false
			}
			return *e, true
		}
		if bt == nil {
			return object.TreeEntry{}, false
		}
		return bt.find(name)
	}
	sub := map[string]map[string]change{}
	leaves := map[string]change{}
	for p, c := range changes {
		if i := strings.IndexByte(p, '/'); i >= 0 {
			m := sub[p[:i]]
			if m == nil {
				m = map[string]change{}
				sub[p[:i]] = m
			}
			m[p[i+1:]] = c
		} else {
			leaves[p] = c
		}
	}
	// Folders first, so that a folder emptied here can become an item.
	for name, m := range sub {
		full := joinPath(dir, name)
		var subBase Hash
		if e, ok := get(name); ok && e.Mode == filemode.Dir {
			subBase = e.Hash
		} else if ok {
			if c, isLeaf := leaves[name]; !isLeaf || !c.del {
				return Hash{}, fmt.Errorf("%w %q: is an item, not a folder", ErrInvalidPath, full)
			}
		}
		h, err := b.build(subBase, full, m, depth+1)
		if err != nil {
			return Hash{}, err
		}
		if h.IsZero() {
			if e, ok := get(name); ok && e.Mode == filemode.Dir {
				over[name] = nil
			}
		} else {
			if _, isLeaf := leaves[name]; isLeaf && !leaves[name].del {
				return Hash{}, fmt.Errorf("%w %q: written both as an item and as a folder", ErrInvalidPath, full)
			}
			over[name] = &object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h}
		}
	}
	for name, c := range leaves {
		full := joinPath(dir, name)
		e, exists := get(name)
		if exists && e.Mode == filemode.Dir {
			if _, isSub := sub[name]; isSub && c.del {
				continue // a folder that replaced the deleted item
			}
			return Hash{}, fmt.Errorf("%w %q: is a folder", ErrInvalidPath, full)
		}
		if c.del {
			over[name] = nil
			continue
		}
		over[name] = &object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: c.hash}
		b.leaves = append(b.leaves, c.hash)
		if c.obj != nil {
			b.add(depth+1, c.obj)
		} else if c.data != nil {
			b.add(depth+1, &dataObject{t: plumbing.BlobObject, h: c.hash, data: c.data})
		}
	}
	entries := mergeTreeEntries(bt, over)
	if len(entries) == 0 {
		return Hash{}, nil
	}
	o, err := encodeTree(entries)
	if err != nil {
		return Hash{}, fmt.Errorf("store: encode tree %q: %w", dir, err)
	}
	h := o.Hash()
	if h == base {
		return base, nil
	}
	b.add(depth, o)
	b.trees = append(b.trees, decodedTree{h, &tree{entries: entries}})
	return h, nil
}

// mergeTreeEntries returns the entries of tree bt (nil: none) with the
// changes of over applied: an entry replaced, removed (nil) or added. An
// entry that becomes a folder or stops being one moves (a folder sorts as
// if its name ended in "/").
func mergeTreeEntries(bt *tree, over map[string]*object.TreeEntry) []object.TreeEntry {
	var old []object.TreeEntry
	if bt != nil {
		old = bt.entries
	}
	var added []object.TreeEntry
	for name, e := range over {
		if e == nil {
			continue
		}
		var was object.TreeEntry
		found := false
		if bt != nil {
			was, found = bt.find(name)
		}
		if !found || (was.Mode == filemode.Dir) != (e.Mode == filemode.Dir) {
			added = append(added, *e)
		}
	}
	sortTreeEntries(added)
	out := make([]object.TreeEntry, 0, len(old)+len(added))
	i := 0
	for _, e := range old {
		if ne, ok := over[e.Name]; ok {
			if ne == nil || (ne.Mode == filemode.Dir) != (e.Mode == filemode.Dir) {
				continue // removed, or moved
			}
			e = *ne
		}
		for i < len(added) && treeEntryLess(added[i], e) {
			out = append(out, added[i])
			i++
		}
		out = append(out, e)
	}
	out = append(out, added[i:]...)
	// A base out of order (not one this store wrote) is sorted, as
	// git requires.
	if !slices.IsSortedFunc(out, treeEntryCmp) {
		sortTreeEntries(out)
	}
	return out
}

// treeBufs recycles encodeTree's buffers (the object copies what it holds).
var treeBufs sync.Pool

// encodeTree encodes a tree of entries in git's order, as go-git's
// Tree.Encode does (without formatting each entry through fmt).
func encodeTree(es []object.TreeEntry) (*plumbing.MemoryObject, error) {
	n := 0
	for _, e := range es {
		n += 7 + 1 + len(e.Name) + 1 + len(e.Hash)
	}
	var data []byte
	if b, ok := treeBufs.Get().(*[]byte); ok && cap(*b) >= n {
		data = (*b)[:0]
	} else {
		data = make([]byte, 0, n)
	}
	defer func() { treeBufs.Put(&data) }()
	for _, e := range es {
		if strings.IndexByte(e.Name, 0) >= 0 {
			return nil, fmt.Errorf("malformed filename %q", e.Name)
		}
		data = strconv.AppendUint(data, uint64(e.Mode), 8)
		data = append(data, ' ')
		data = append(data, e.Name...)
		data = append(data, 0)
		data = append(data, e.Hash[:]...)
	}
	return memObject(plumbing.TreeObject, data), nil
}

// sortTreeEntries sorts entries as git does: by name, with a folder's name
// compared as if it ended in "/".
func sortTreeEntries(es []object.TreeEntry) {
	slices.SortFunc(es, treeEntryCmp)
}

// treeEntryLess reports whether a sorts before b in a tree.
func treeEntryLess(a, b object.TreeEntry) bool { return treeEntryCmp(a, b) < 0 }

// treeEntryCmp compares entries as git orders a tree: by name, a folder's
// as if it ended in "/"; without making those names.
func treeEntryCmp(a, b object.TreeEntry) int {
	n := min(len(a.Name), len(b.Name))
	if c := strings.Compare(a.Name[:n], b.Name[:n]); c != 0 {
		return c
	}
	// One name is the other's start: the next byte of each key decides,
	// where it differs.
	at := func(e object.TreeEntry) int {
		switch {
		case n < len(e.Name):
			return int(e.Name[n])
		case e.Mode == filemode.Dir:
			return '/'
		}
		return -1
	}
	if ca, cb := at(a), at(b); ca != cb {
		return ca - cb
	}
	if len(a.Name) == len(b.Name) {
		return 0 // one name, both folders or both not
	}
	return strings.Compare(treeEntryKey(a), treeEntryKey(b)) // a name with "/" in it

}

func treeEntryKey(e object.TreeEntry) string {
	if e.Mode == filemode.Dir {
		return e.Name + "/"
	}
	return e.Name
}
