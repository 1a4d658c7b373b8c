package store

import (
	"context"
	"fmt"
	"strings"
	"sync"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// MergeFunc reconciles one path that both sides of a merge changed
// differently. base, ours and theirs are its contents in the merge base, the
// branch merged into and the one merged in; nil means absent there (an empty
// item is a non-nil empty slice). It returns the merged content, or nil to
// delete the path. An error leaves the path in conflict, and the merge
// writes nothing.
type MergeFunc func(path string, base, ours, theirs []byte) ([]byte, error)

type mergeRegistry struct {
	mu  sync.RWMutex
	fns map[string]MergeFunc
}

// SetMergeFunc makes fn reconcile the paths under prefix (the longest
// registered prefix wins). A nil fn removes the prefix's function. Paths with
// no function are in conflict when both sides changed them differently.
func (s *Store) SetMergeFunc(prefix string, fn MergeFunc) {
	prefix = trimSlash(prefix)
	s.merges.mu.Lock()
	defer s.merges.mu.Unlock()
	if s.merges.fns == nil {
		s.merges.fns = map[string]MergeFunc{}
	}
	if fn == nil {
		delete(s.merges.fns, prefix)
		return
	}
	s.merges.fns[prefix] = fn
}

func (s *Store) mergeFunc(path string) MergeFunc {
	s.merges.mu.RLock()
	defer s.merges.mu.RUnlock()
	best, bestLen := MergeFunc(nil), -1
	for p, fn := range s.merges.fns {
		if (p == "" || path == p || strings.HasPrefix(path, p+"/")) && len(p) > bestLen {
			best, bestLen = fn, len(p)
		}
	}
	return best
}

// MergeResult says what a merge did.
type MergeResult struct {
	// Head is the branch's head afterwards.
	Head Hash
	// UpToDate: the branch already contained what was merged; nothing
	// changed.
	UpToDate bool
	// FastForward: the branch only moved forward; no merge commit.
	FastForward bool
	// Resolved lists the paths that merge functions reconciled.
	Resolved []string
}

// Merge merges revision from into the branch opts.Branch, 3-way against their
// merge base: a path changed on one side only takes that side; a path changed
// on both sides to the same content takes it; a path changed differently goes
// to the merge function for its prefix, and without one is a conflict. On any
// conflict Merge returns a *ConflictError naming every conflicting path and
// writes nothing. Merging into a branch that does not exist creates it.
func (s *Store) Merge(ctx context.Context, from string, opts CommitOptions) (MergeResult, error) {
	theirs, err := s.Resolve(from)
	if err != nil {
		return MergeResult{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return MergeResult{}, err
	}
	defer unlock()
	return s.mergeLocked(from, theirs, opts)
}

func (s *Store) mergeLocked(from string, theirs Hash, opts CommitOptions) (MergeResult, error) {
	into := opts.branch()
	ours, err := s.head(into)
	if err != nil {
		return MergeResult{}, err
	}
	if ours == theirs {
		return MergeResult{Head: ours, UpToDate: true}, nil
	}
	if !ours.IsZero() {
		if ok, err := s.isAncestor(theirs, ours); err != nil {
			return MergeResult{}, err
		} else if ok {
			return MergeResult{Head: ours, UpToDate: true}, nil
		}
	}
	if ours.IsZero() {
		return MergeResult{Head: theirs, FastForward: true}, s.moveBranch(into, ours, theirs)
	}
	if ok, err := s.isAncestor(ours, theirs); err != nil {
		return MergeResult{}, err
	} else if ok {
		return MergeResult{Head: theirs, FastForward: true}, s.moveBranch(into, ours, theirs)
	}

	var base Hash
	var trees []Hash
	var dOurs, dTheirs []Change
	err = s.read(func(r *git.Repository) error {
		co, err := r.CommitObject(ours)
		if err != nil {
			return err
		}
		ct, err := r.CommitObject(theirs)
		if err != nil {
			return err
		}
		bases, err := co.MergeBase(ct)
		if err != nil {
			return fmt.Errorf("store: merge base of %s and %s: %w", short(ours), short(theirs), err)
		}
		// With several merge bases (criss-cross history) the first is used;
		// paths that differ because of that surface as conflicts or go to
		// the merge functions, never silently.
		if len(bases) > 0 {
			base = bases[0].Hash
		}
		return nil
	})
	if err == nil {
		err = s.readObjs(func(o *objReader) error {
			var err error
			if trees, err = commitTrees(o, base, ours, theirs); err != nil {
				return err
			}
			if dOurs, err = o.diffTrees(trees[0], trees[1], "", nil); err != nil {
				return err
			}
			dTheirs, err = o.diffTrees(trees[0], trees[2], "", nil)
			return err
		})
	}
	if err != nil {
		return MergeResult{}, err
	}
	ourChange := make(map[string]Change, len(dOurs))
	for _, c := range dOurs {
		ourChange[c.Path] = c
	}
	op := fmt.Sprintf("merge %s into %s", from, into)
	changes := map[string]change{}
	var conflicts, resolved []string
	for _, tc := range dTheirs {
		oc, both := ourChange[tc.Path]
		switch {
		case !both:
			if tc.To.IsZero() {
				changes[tc.Path] = change{del: true}
			} else {
				changes[tc.Path] = change{hash: tc.To}
			}
			continue
		case oc.To == tc.To:
			continue
		}
		fn := s.mergeFunc(tc.Path)
		if fn == nil {
			conflicts = append(conflicts, tc.Path)
			continue
		}
		merged, err := s.callMerge(fn, tc.Path, tc.From, oc.To, tc.To)
		if err != nil {
			s.log.Info("store: merge function refused a path", "op", op, "path", tc.Path, "err", err)
			conflicts = append(conflicts, tc.Path)
			continue
		}
		resolved = append(resolved, tc.Path)
		if merged == nil {
			changes[tc.Path] = change{del: true}
		} else {
			changes[tc.Path] = change{hash: plumbing.ComputeHash(plumbing.BlobObject, merged), data: merged}
		}
	}
	if len(conflicts) > 0 {
		return MergeResult{}, &ConflictError{Op: op, Paths: conflicts}
	}
	tree, levels, err := s.buildTree(trees[1], changes)
	if err != nil {
		return MergeResult{}, &ConflictError{Op: op + " (" + err.Error() + ")", Paths: changedPaths(changes)}
	}
	if opts.Message == "" {
		opts.Message = fmt.Sprintf("Merge %s into %s", from, into)
	}
	c, err := s.writeTreeAndCommit(tree, levels, []Hash{ours, theirs}, opts)
	if err != nil {
		return MergeResult{}, err
	}
	if err := s.moveBranch(into, ours, c); err != nil {
		return MergeResult{}, err
	}
	return MergeResult{Head: c, Resolved: resolved}, nil
}

// callMerge reads the three versions and calls fn.
func (s *Store) callMerge(fn MergeFunc, path string, base, ours, theirs Hash) ([]byte, error) {
	var v [3][]byte
	for i, h := range []Hash{base, ours, theirs} {
		if h.IsZero() {
			continue
		}
		b, err := s.blob(h)
		if err != nil {
			return nil, err
		}
		if b == nil {
			b = []byte{}
		}
		v[i] = b
	}
	return fn(path, v[0], v[1], v[2])
}

func changedPaths(m map[string]change) []string {
	ps := make([]string, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	return sortedStrings(ps)
}
