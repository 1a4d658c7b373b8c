package store

import (
	"io"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// gitStorage is go-git's storage of the repository with its object reads
// answered by the store's own object reader (objread.go), for the go-git
// code the store still uses (merges, diffs, fetch and push). go-git's own
// reads of packed objects build, at the first one, a map of every offset
// of a pack to its hash (idxfile's FindHash): 26 MB for a 50,000-message
// mailbox, made by the console's first page of history, which a 96 MiB
// appliance could not afford; and its pack indexes, decoded, cost another
// 145 bytes a message. Writes, and any object the reader cannot give (a
// reader being replaced, say), go to go-git's storage, which then loads
// its pack indexes, once.
//
// go-git loads them lazily without a lock: two readers racing could see a
// half-filled index and miss an object. Every method of the storage that
// loads them is called here through indexes (a sync.Once) first.
type gitStorage struct {
	*filesystem.Storage
	s *Store

	once    sync.Once
	loadErr error
}

// indexes loads go-git's pack indexes, once. Looking up a missing object
// loads them all.
func (g *gitStorage) indexes() error {
	g.once.Do(func() {
		if _, err := g.Storage.EncodedObject(plumbing.AnyObject, plumbing.ZeroHash); err != plumbing.ErrObjectNotFound {
			g.loadErr = err
		}
	})
	return g.loadErr
}

// EncodedObject reads object h with the store's reader.
func (g *gitStorage) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if o := g.s.objsNow.Load(); o != nil {
		// Found, or found of another type (the bare sentinel): the
		// answer. Missing, or unreadable here: go-git's storage.
		obj, err := o.encodedObject(t, h)
		if err == nil || err == plumbing.ErrObjectNotFound {
			return obj, err
		}
	}
	if err := g.indexes(); err != nil {
		return nil, err
	}
	return g.Storage.EncodedObject(t, h)
}

func (g *gitStorage) DeltaObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	return g.EncodedObject(t, h) // whole objects: the reader resolves deltas
}

func (g *gitStorage) HasEncodedObject(h plumbing.Hash) error {
	if err := g.indexes(); err != nil {
		return err
	}
	return g.Storage.HasEncodedObject(h)
}

func (g *gitStorage) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	if err := g.indexes(); err != nil {
		return 0, err
	}
	return g.Storage.EncodedObjectSize(h)
}

func (g *gitStorage) IterEncodedObjects(t plumbing.ObjectType) (storer.EncodedObjectIter, error) {
	if err := g.indexes(); err != nil {
		return nil, err
	}
	return g.Storage.IterEncodedObjects(t)
}

func (g *gitStorage) HashesWithPrefix(prefix []byte) ([]plumbing.Hash, error) {
	if err := g.indexes(); err != nil {
		return nil, err
	}
	return g.Storage.HashesWithPrefix(prefix)
}

func (g *gitStorage) PackfileWriter() (io.WriteCloser, error) {
	if err := g.indexes(); err != nil {
		return nil, err
	}
	return g.Storage.PackfileWriter()
}
