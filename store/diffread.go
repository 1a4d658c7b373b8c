package store

import (
	"fmt"
	"sort"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// DiffUnder is DiffCommits limited to the items under the folder prefix
// ("" for everything): what changed there between commits a and b (a zero
// hash is the empty tree), sorted by path. It reads with the store's own
// object reader and its cache of decoded trees and skips equal subtrees,
// so its cost follows the size of the change under prefix. A commit that
// is not in the store is an error (ErrNotExist).
func (s *Store) DiffUnder(a, b Hash, prefix string) ([]Change, error) {
	prefix = trimSlash(prefix)
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	var out []Change
	err := s.readObjs(func(o *objReader) error {
		var roots [2]Hash
		for i, c := range []Hash{a, b} {
			if c.IsZero() {
				continue
			}
			t, err := o.commitTree(c)
			if err != nil {
				return fmt.Errorf("store: commit %s: %v: %w", c, err, ErrNotExist)
			}
			if roots[i], err = o.folder(t, prefix); err != nil {
				return err
			}
		}
		var err error
		out, err = o.diffTrees(roots[0], roots[1], prefix, nil)
		return err
	})
	return out, err
}

// folder returns the tree of folder p under root (zero when there is no
// folder there).
func (o *objReader) folder(root Hash, p string) (Hash, error) {
	if p == "" {
		return root, nil
	}
	e, ok, err := o.entry(root, p)
	if err != nil || !ok || e.Mode != filemode.Dir {
		return Hash{}, err
	}
	return e.Hash, nil
}

// diffTrees compares two trees (zero is empty), skipping equal subtrees, so
// its cost follows the size of the change, not of the store.
func (o *objReader) diffTrees(ta, tb Hash, dir string, out []Change) ([]Change, error) {
	if ta == tb {
		return out, nil
	}
	load := func(h Hash) (*tree, error) {
		if h.IsZero() {
			return &tree{}, nil
		}
		t, err := o.tree(h)
		if err != nil {
			return nil, fmt.Errorf("store: tree %s at %q: %w", h, dir, err)
		}
		return t, nil
	}
	ta2, err := load(ta)
	if err != nil {
		return nil, err
	}
	tb2, err := load(tb)
	if err != nil {
		return nil, err
	}
	ea, eb := ta2.entries, tb2.entries
	if ta2.namesSorted() && tb2.namesSorted() {
		// Both in name order (no folder sorts elsewhere as git orders
		// it, no name twice): one pass over both, no map (a mailbox
		// folder of thousands of messages, one of them new).
		i, j := 0, 0
		for i < len(ea) || j < len(eb) {
			var pair [2]object.TreeEntry
			var name string
			switch {
			case j == len(eb) || (i < len(ea) && ea[i].Name < eb[j].Name):
				pair[0], name = ea[i], ea[i].Name
				i++
			case i == len(ea) || eb[j].Name < ea[i].Name:
				pair[1], name = eb[j], eb[j].Name
				j++
			default:
				pair[0], pair[1], name = ea[i], eb[j], ea[i].Name
				i++
				j++
			}
			if out, err = o.diffEntries(name, pair, dir, out); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	byName := make(map[string][2]object.TreeEntry, len(ea)+len(eb))
	names := make([]string, 0, len(ea)+len(eb))
	for side, es := range [][]object.TreeEntry{ea, eb} {
		for _, e := range es {
			pair, seen := byName[e.Name]
			if !seen {
				names = append(names, e.Name)
			}
			pair[side] = e
			byName[e.Name] = pair
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if out, err = o.diffEntries(n, byName[n], dir, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// diffEntries compares the entries called name in two trees (a zero entry
// where a tree has none).
func (o *objReader) diffEntries(name string, pair [2]object.TreeEntry, dir string, out []Change) ([]Change, error) {
	a, b := pair[0], pair[1]
	if a.Hash == b.Hash && a.Mode == b.Mode {
		return out, nil
	}
	var trees, blobs [2]Hash
	for i, e := range pair {
		if e.Hash.IsZero() {
			continue
		}
		if e.Mode == filemode.Dir {
			trees[i] = e.Hash
		} else {
			blobs[i] = e.Hash
		}
	}
	p := joinPath(dir, name)
	if blobs[0] != blobs[1] {
		out = append(out, Change{Path: p, From: blobs[0], To: blobs[1]})
	}
	if trees[0] != trees[1] {
		return o.diffTrees(trees[0], trees[1], p, out)
	}
	return out, nil
}
