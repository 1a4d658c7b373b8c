package store

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Entry is one item in a listing.
type Entry struct {
	// Path is the item's full path in the store.
	Path string
	// Hash is the blob's (or, for a folder in ReadDir, the tree's) hash; it
	// changes exactly when the content changes, so it serves as an ETag.
	Hash Hash
	// Dir is true for a folder (only ReadDir returns folders).
	Dir bool
}

// Snapshot is a read-only view of the store at one commit. It stays valid
// for as long as that commit is reachable.
type Snapshot struct {
	s      *Store
	commit Hash
	tree   Hash // zero for an empty store
}

// Commit is the commit the snapshot shows; zero for a store with no commits.
func (sn *Snapshot) Commit() Hash { return sn.commit }

// Tree is the hash of the snapshot's root tree; zero for an empty store.
// Two replicas with the same Tree hold the same data.
func (sn *Snapshot) Tree() Hash { return sn.tree }

// Snapshot resolves rev (see Resolve) and returns a view of it. The default
// branch of a store without commits gives an empty snapshot.
func (s *Store) Snapshot(rev string) (*Snapshot, error) {
	h, err := s.Resolve(rev)
	if err != nil {
		if (rev == "" || rev == DefaultBranch) && errors.Is(err, ErrNotExist) {
			return &Snapshot{s: s}, nil
		}
		return nil, err
	}
	return s.snapshotAt(h)
}

func (s *Store) snapshotAt(h Hash) (*Snapshot, error) {
	if h.IsZero() {
		return &Snapshot{s: s}, nil
	}
	sn := &Snapshot{s: s, commit: h}
	err := s.readObjs(func(o *objReader) error {
		t, err := o.commitTree(h)
		if err != nil {
			return fmt.Errorf("store: commit %s: %w", h, err)
		}
		sn.tree = t
		return nil
	})
	return sn, err
}

// Resolve turns a revision into a commit hash. A revision is a branch name
// ("" means DefaultBranch), a full reference name, a full or abbreviated
// commit hash, or any of these followed by ~N or ^ suffixes, as git accepts.
func (s *Store) Resolve(rev string) (Hash, error) {
	if rev == "" {
		rev = DefaultBranch
	}
	if validateBranch(rev) == nil {
		if h, err := s.head(rev); err == nil && !h.IsZero() {
			return h, nil
		}
	}
	if plumbing.IsHash(rev) {
		// A commit's full hash (the history's cursors and links): read
		// through the store's object reader, not go-git's storage, whose
		// first packed read loads the whole pack index (logread.go). A
		// hash not found there takes the way below, as before (no reload
		// of the object reader for a hash that a client made up).
		h := plumbing.NewHash(rev)
		var t plumbing.ObjectType
		err := s.readObjsOnce(func(o *objReader) (err error) {
			t, _, err = o.read(h)
			return err
		})
		switch {
		case err == nil && t == plumbing.CommitObject:
			return h, nil
		case err == nil:
			return Hash{}, fmt.Errorf("store: revision %q: not a commit: %w", rev, ErrNotExist)
		case errors.Is(err, ErrClosed):
			return Hash{}, err
		}
	}
	var h Hash
	err := s.read(func(r *git.Repository) error {
		if ref, err := r.Storer.Reference(plumbing.NewBranchReferenceName(rev)); err == nil {
			h = ref.Hash()
			return nil
		}
		p, err := r.ResolveRevision(plumbing.Revision(rev))
		if err != nil {
			return fmt.Errorf("store: revision %q: %v: %w", rev, err, ErrNotExist)
		}
		if _, err := r.CommitObject(*p); err != nil {
			return fmt.Errorf("store: revision %q: not a commit: %w", rev, ErrNotExist)
		}
		h = *p
		return nil
	})
	return h, err
}

// Read returns the content at path in revision rev.
func (s *Store) Read(rev, path string) ([]byte, error) {
	sn, err := s.Snapshot(rev)
	if err != nil {
		return nil, err
	}
	return sn.Read(path)
}

// List lists every item under prefix (recursively) at revision rev.
func (s *Store) List(rev, prefix string) ([]Entry, error) {
	sn, err := s.Snapshot(rev)
	if err != nil {
		return nil, err
	}
	return sn.List(prefix)
}

// Read returns the content at path.
func (sn *Snapshot) Read(path string) ([]byte, error) {
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	var data []byte
	err := sn.s.readObjs(func(o *objReader) error {
		e, err := sn.entry(o, path)
		if err != nil {
			return err
		}
		if e.Mode == filemode.Dir {
			return fmt.Errorf("store: read %s: is a folder: %w", path, ErrNotExist)
		}
		data, err = o.readAs(e.Hash, plumbing.BlobObject)
		if err != nil {
			return fmt.Errorf("store: read %s: %w", path, err)
		}
		return nil
	})
	return data, err
}

// ReadBlob returns the content of the blob with hash h (an Entry's Hash),
// wherever it is in the store's history. Callers that keep the hashes of
// what they stored read it back this way without walking a tree.
func (s *Store) ReadBlob(h Hash) ([]byte, error) {
	var data []byte
	err := s.readObjs(func(o *objReader) error {
		var err error
		data, err = o.readAs(h, plumbing.BlobObject)
		return err
	})
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("store: blob %s: %w", h, ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("store: blob %s: %w", h, err)
	}
	return data, nil
}

// Stat returns the entry at path (its blob hash), without reading it.
func (sn *Snapshot) Stat(path string) (Entry, error) {
	if err := ValidatePath(path); err != nil {
		return Entry{}, err
	}
	var out Entry
	err := sn.s.readObjs(func(o *objReader) error {
		e, err := sn.entry(o, path)
		if err != nil {
			return err
		}
		out = Entry{Path: path, Hash: e.Hash, Dir: e.Mode == filemode.Dir}
		return nil
	})
	return out, err
}

// entry finds the tree entry at path.
func (sn *Snapshot) entry(o *objReader, path string) (object.TreeEntry, error) {
	if sn.tree.IsZero() {
		return object.TreeEntry{}, fmt.Errorf("store: %s: %w", path, ErrNotExist)
	}
	e, ok, err := o.entry(sn.tree, path)
	if err != nil {
		return e, fmt.Errorf("store: %s: %w", path, err)
	}
	if !ok {
		return e, fmt.Errorf("store: %s: %w", path, ErrNotExist)
	}
	return e, nil
}

// subtree returns the tree at dir ("" is the root); ok is false if there
// is none.
func (sn *Snapshot) subtree(o *objReader, dir string) (*tree, bool, error) {
	if sn.tree.IsZero() {
		return nil, false, nil
	}
	h := sn.tree
	if dir != "" {
		e, ok, err := o.entry(sn.tree, dir)
		if err != nil {
			return nil, false, fmt.Errorf("store: %s: %w", dir, err)
		}
		if !ok || e.Mode != filemode.Dir {
			return nil, false, nil
		}
		h = e.Hash
	}
	t, err := o.tree(h)
	if err != nil {
		return nil, false, fmt.Errorf("store: tree %s: %w", h, err)
	}
	return t, true, nil
}

// Exists reports whether path holds an item.
func (sn *Snapshot) Exists(path string) (bool, error) {
	e, err := sn.Stat(path)
	if errors.Is(err, ErrNotExist) {
		return false, nil
	}
	return err == nil && !e.Dir, err
}

// ReadDir lists the items and folders directly in dir ("" is the root), in
// git's order. A folder that does not exist lists as empty.
func (sn *Snapshot) ReadDir(dir string) ([]Entry, error) {
	if err := validatePrefix(dir); err != nil {
		return nil, err
	}
	var out []Entry
	err := sn.s.readObjs(func(o *objReader) error {
		out = out[:0]
		t, ok, err := sn.subtree(o, dir)
		if !ok || err != nil {
			return err
		}
		for _, e := range t.entries {
			out = append(out, Entry{Path: joinPath(dir, e.Name), Hash: e.Hash, Dir: e.Mode == filemode.Dir})
		}
		return nil
	})
	return out, err
}

// List lists every item under prefix, recursively, sorted by path. A prefix
// that does not exist lists as empty.
func (sn *Snapshot) List(prefix string) ([]Entry, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	var out []Entry
	err := sn.s.readObjs(func(o *objReader) error {
		out = out[:0]
		t, ok, err := sn.subtree(o, prefix)
		if !ok || err != nil {
			return err
		}
		return walkTree(o, t, prefix, func(e Entry) { out = append(out, e) })
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, err
}

func walkTree(o *objReader, t *tree, dir string, fn func(Entry)) error {
	for _, e := range t.entries {
		p := joinPath(dir, e.Name)
		if e.Mode == filemode.Dir {
			st, err := o.tree(e.Hash)
			if err != nil {
				return fmt.Errorf("store: tree %s at %s: %w", e.Hash, p, err)
			}
			if err := walkTree(o, st, p, fn); err != nil {
				return err
			}
			continue
		}
		fn(Entry{Path: p, Hash: e.Hash})
	}
	return nil
}

// trimSlash removes a trailing slash from a prefix.
func trimSlash(p string) string { return strings.TrimSuffix(p, "/") }
