package store

import (
	"bytes"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// recvDecoded gathers the trees and commits of a pack a push or fetch
// brings, decoded as indexWholePack inflates and hashes them, for the
// store's caches once the pack is durable and readable: validation
// (validateNew), the watchers' diffs (DiffCommits) and the forwarding to
// other replicas then read them at once, each an inflate and a parse of
// what was just inflated. Bounded: at most a generation of the tree cache
// (a push of a hundred commits of a mailbox, six trees each, is about half
// of one on a host), so that all it puts there stays in the cache's two
// generations, and half the commit cache; the rest is read as before. Its
// blobs wait for validation in freshBlobs.
type recvDecoded struct {
	trees   []decodedTree
	commits []commitNode
	blobs   []keptBlob // for validation (freshBlobs)

	entries, maxEntries int // tree entries kept, and the bound
	bytes, maxBytes     int64
	maxCommits          int
	blobBytes, maxBlobs int64
}

type keptBlob struct {
	h    Hash
	data []byte
}

type decodedTree struct {
	h Hash
	t *tree
}

// maxKeptObject is the largest tree or commit kept: a tree of ten
// thousand items is about 600 KiB.
const maxKeptObject = 1 << 20

func newRecvDecoded(c *treeCache) *recvDecoded {
	if c == nil {
		return nil
	}
	// A tree entry is about 60 bytes encoded.
	return &recvDecoded{maxEntries: c.maxEntries, maxBytes: int64(c.maxEntries) * 64, maxCommits: c.commits.max / 2, maxBlobs: int64(c.fresh.max / 2)}
}

// wants is packKeeper's.
func (r *recvDecoded) wants(t plumbing.ObjectType, size int64) bool {
	if r == nil || size > maxKeptObject {
		return false
	}
	switch t {
	case plumbing.TreeObject:
		if r.entries >= r.maxEntries || r.bytes+size > r.maxBytes {
			return false
		}
		r.bytes += size
		return true
	case plumbing.CommitObject:
		return len(r.commits) < r.maxCommits
	case plumbing.BlobObject:
		if size > r.maxBlobs/4 || r.blobBytes+size > r.maxBlobs {
			return false
		}
		r.blobBytes += size
		return true
	}
	return false
}

// got is packKeeper's.
func (r *recvDecoded) got(h Hash, t plumbing.ObjectType, data []byte) {
	switch t {
	case plumbing.TreeObject:
		tr, err := parseTree(h, data)
		if err != nil {
			return // read, and refused, where it is used
		}
		r.entries += len(tr.entries)
		r.trees = append(r.trees, decodedTree{h, tr})
	case plumbing.CommitObject:
		if c, err := parseCommit(h, data); err == nil {
			r.commits = append(r.commits, c)
		}
	case plumbing.BlobObject:
		r.blobs = append(r.blobs, keptBlob{h, bytes.Clone(data)})
	}
}

// into puts what r holds into c; the objects must be readable in the
// store now (the tree cache stands for the store's objects).
func (r *recvDecoded) into(c *treeCache) {
	if r == nil {
		return
	}
	for _, d := range r.trees {
		c.put(d.h, d.t)
	}
	for _, n := range r.commits {
		c.commits.put(n.hash, n)
	}
	for _, b := range r.blobs {
		c.fresh.put(b.h, b.data)
	}
	r.trees, r.commits, r.blobs = nil, nil, nil
}

// freshBlobs holds the content of blobs a push just brought, until
// validateNew checks them (take): each would otherwise be inflated again,
// just after indexWholePack inflated it to hash it. Bounded, in two
// generations as the other caches: what no validation takes is dropped
// in time.
type freshBlobs struct {
	mu       sync.Mutex
	cur, old map[Hash][]byte
	size     int
	max      int
}

func newFreshBlobs(max int) *freshBlobs {
	return &freshBlobs{cur: map[Hash][]byte{}, max: max}
}

func (b *freshBlobs) put(h Hash, data []byte) {
	if len(data) > b.max/4 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.size+len(data) > b.max/2 {
		b.old, b.cur, b.size = b.cur, map[Hash][]byte{}, 0
	}
	b.cur[h] = data
	b.size += len(data)
}

// take returns blob h's content, and drops it.
func (b *freshBlobs) take(h Hash) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if data, ok := b.cur[h]; ok {
		delete(b.cur, h)
		b.size -= len(data)
		return data, true
	}
	data, ok := b.old[h]
	delete(b.old, h)
	return data, ok
}

func (b *freshBlobs) forget(h Hash) {
	b.take(h)
}
