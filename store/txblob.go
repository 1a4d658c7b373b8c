package store

import (
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
)

// PutBlob stores data at path, as Put does, and returns the hash of its
// blob: once the transaction has committed, ReadBlob reads the content back
// by that hash without walking the trees on the path (callers that index
// what they store, such as the mailstore, keep it beside their own record).
func (tx *Tx) PutBlob(path string, data []byte) (Hash, error) {
	if err := tx.Put(path, data); err != nil {
		return Hash{}, err
	}
	return tx.changes[path].hash, nil
}

// Blob is content whose blob hash was computed once (NewBlob), for a
// caller that needs the hash before it knows where to put the content (a
// mail message's key is made from it): PutBlobOf does not hash it again.
type Blob struct {
	data []byte
	h    Hash
}

// NewBlob copies data and hashes it as a blob.
func NewBlob(data []byte) Blob {
	data = append([]byte(nil), data...)
	return Blob{data: data, h: plumbing.ComputeHash(plumbing.BlobObject, data)}
}

// Hash is the blob's hash (BlobHash of its content).
func (b Blob) Hash() Hash { return b.h }

// PutBlobOf stores b at path, as PutBlob stores its content, and returns
// its hash.
func (tx *Tx) PutBlobOf(path string, b Blob) (Hash, error) {
	if err := ValidatePath(path); err != nil {
		return Hash{}, err
	}
	if b.data == nil && b.h.IsZero() {
		return Hash{}, errors.New("store: put " + path + ": a Blob not made by NewBlob")
	}
	tx.changes[path] = change{hash: b.h, data: b.data}
	return b.h, nil
}

// PutHash stores at path the blob with hash h, which must already be in the
// store (an Entry's Hash from any commit of its history, such as an item
// that was deleted since; a packed object is taken to be the blob the
// caller's tree entry said it is): nothing is read or copied, so restoring an old
// version of an item costs its path, not its bytes. A hash that names no
// blob of the store is an error (ErrNotExist), and nothing is written.
func (tx *Tx) PutHash(path string, h Hash) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	var ok bool
	err := tx.s.readObjs(func(o *objReader) error {
		var err error
		ok, err = o.hasBlob(h)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: put %s: blob %s: %w", path, h, err)
	}
	if !ok {
		return fmt.Errorf("store: put %s: no blob %s: %w", path, h, ErrNotExist)
	}
	tx.changes[path] = change{hash: h}
	return nil
}

// hasBlob reports whether the store holds blob h. A packed object is
// found by its pack's index alone (restores put back thousands of blobs,
// and reading each would cost its inflation); a pending or loose one is
// read and its type checked.
func (o *objReader) hasBlob(h Hash) (bool, error) {
	if o.pend != nil {
		if obj := o.pend.object(h); obj != nil {
			return obj.Type() == plumbing.BlobObject, nil
		}
	}
	if _, _, ok := o.locate(h); ok {
		return true, nil
	}
	t, _, err := o.readLoose(h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return t == plumbing.BlobObject, nil
}
