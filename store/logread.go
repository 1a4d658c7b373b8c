package store

import (
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// objStorer serves go-git's commit walks (object.NewCommitIterCTime, which
// reads each commit's parents through the storer it was decoded with) from
// the store's own object reader: Log then never touches go-git's
// filesystem storage, whose first read of a packed object loads the pack
// index into maps (about 0.8 s of CPU in a pack of 100k commits, paid by
// the first history request after a process opens its store). Only reads
// are served.
type objStorer struct{ o *objReader }

var errReadOnly = errors.New("store: the log's object reader is read-only")

func (s objStorer) NewEncodedObject() plumbing.EncodedObject { return &plumbing.MemoryObject{} }

func (s objStorer) SetEncodedObject(plumbing.EncodedObject) (plumbing.Hash, error) {
	return plumbing.ZeroHash, errReadOnly
}

func (s objStorer) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	return s.o.encodedObject(t, h)
}

// encodedObject reads object h as a go-git object, if it is of type t (any
// type for AnyObject). An object of another type is plumbing's
// ErrObjectNotFound itself, as go-git's storage answers (its callers
// compare with ==); a missing one is that error wrapped (errObjNotFound).
func (o *objReader) encodedObject(t plumbing.ObjectType, h Hash) (plumbing.EncodedObject, error) {
	ot, data, err := o.read(h)
	if err != nil {
		return nil, err
	}
	if t != plumbing.AnyObject && ot != t {
		return nil, plumbing.ErrObjectNotFound
	}
	mo := &plumbing.MemoryObject{}
	mo.SetType(ot)
	mo.Write(data) // appends to memory: no error
	return mo, nil
}

func (s objStorer) IterEncodedObjects(plumbing.ObjectType) (storer.EncodedObjectIter, error) {
	return nil, errReadOnly
}

func (s objStorer) HasEncodedObject(h plumbing.Hash) error {
	_, _, err := s.o.read(h)
	return err
}

func (s objStorer) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	_, data, err := s.o.read(h)
	return int64(len(data)), err
}

func (s objStorer) AddAlternate(string) error { return errReadOnly }

// commitObject reads commit h through the store's object reader.
func (o *objReader) commitObject(h Hash) (*object.Commit, error) {
	st := objStorer{o}
	obj, err := st.EncodedObject(plumbing.CommitObject, h)
	if err != nil {
		return nil, err
	}
	c, err := object.DecodeCommit(st, obj)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	return c, nil
}

// pathHash returns the hash of the entry at path in tree, zero if absent.
func (o *objReader) pathHash(tree Hash, path string) (Hash, error) {
	e, ok, err := o.entry(tree, path)
	if err != nil || !ok {
		return Hash{}, err
	}
	return e.Hash, nil
}

// changedPath reports whether commit c changed path relative to every
// parent.
func (o *objReader) changedPath(c *object.Commit, path string) (bool, error) {
	h, err := o.pathHash(c.TreeHash, path)
	if err != nil {
		return false, err
	}
	if c.NumParents() == 0 {
		return !h.IsZero(), nil
	}
	for _, p := range c.ParentHashes {
		pt, err := o.commitTree(p)
		if err != nil {
			return false, err
		}
		ph, err := o.pathHash(pt, path)
		if err != nil {
			return false, err
		}
		if ph == h {
			return false, nil
		}
	}
	return true, nil
}
