package store

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

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

	op := fmt.Sprintf("merge %s into %s", from, into)
	parents := []Hash{ours, theirs}
	if opts.Deterministic {
		if err := s.deterministic(&opts, parents); err != nil {
			return MergeResult{}, err
		}
	}
	// The branch moves from ours, whatever order the merge took.
	branchWas := ours
	ours, theirs = parents[0], parents[1]
	baseTree, err := s.mergeBaseTree(ours, theirs, 0, map[[2]Hash]Hash{})
	if err != nil {
		return MergeResult{}, err
	}
	var trees []Hash
	err = s.readObjs(func(o *objReader) error {
		var err error
		trees, err = commitTrees(o, ours, theirs)
		return err
	})
	if err != nil {
		return MergeResult{}, err
	}
	tree, levels, resolved, conflicts, err := s.mergeTrees(op, baseTree, trees[0], trees[1])
	if err != nil {
		return MergeResult{}, err
	}
	if len(conflicts) > 0 {
		return MergeResult{}, &ConflictError{Op: op, Paths: conflicts}
	}
	if opts.Message == "" {
		opts.Message = fmt.Sprintf("Merge %s into %s", from, into)
	}
	c, err := s.writeTreeAndCommit(tree, levels, parents, opts)
	if err != nil {
		return MergeResult{}, err
	}
	if err := s.moveBranch(into, branchWas, c); err != nil {
		return MergeResult{}, err
	}
	return MergeResult{Head: c, Resolved: resolved}, nil
}

// deterministic makes opts and parents those of a deterministic merge
// (see CommitOptions.Deterministic): parents sorted by hash, the fixed
// author and message, and the later of the parents' committer times.
func (s *Store) deterministic(opts *CommitOptions, parents []Hash) error {
	if bytes.Compare(parents[0][:], parents[1][:]) > 0 {
		parents[0], parents[1] = parents[1], parents[0]
	}
	var when int64
	err := s.readObjs(func(o *objReader) error {
		for _, p := range parents {
			c, err := readCommit(o, p)
			if err != nil {
				return err
			}
			when = max(when, c.when)
		}
		return nil
	})
	if err != nil {
		return err
	}
	opts.Author = ReplicaAuthor
	opts.Message = ReplicaMergeMessage
	opts.When = time.Unix(when, 0).UTC()
	return nil
}

// maxVirtualDepth bounds the recursion of virtual merge bases: each level
// costs a merge-base search per base (under the writer lock), and replicas
// that merge each other make many; deeper bases use their first base.
const maxVirtualDepth = 4

// mergeBaseTree returns the tree to merge ours and theirs against: their
// merge base's, or with several (criss-cross history, as replicas that
// merge each other make) a virtual one, the merge of those bases (as git's
// recursive strategy does), so that what one side deleted since is not
// mistaken for what the other added. Paths in conflict within the virtual
// base keep the first base's content. Zero for unrelated histories.
//
// memo holds the virtual bases already made in this merge, by pair: the
// recursion meets the same pairs many times.
func (s *Store) mergeBaseTree(ours, theirs Hash, depth int, memo map[[2]Hash]Hash) (Hash, error) {
	if t, ok := memo[[2]Hash{ours, theirs}]; ok {
		return t, nil
	}
	t, err := s.mergeBaseTreeMemo(ours, theirs, depth, memo)
	if err == nil {
		memo[[2]Hash{ours, theirs}] = t
	}
	return t, err
}

func (s *Store) mergeBaseTreeMemo(ours, theirs Hash, depth int, memo map[[2]Hash]Hash) (Hash, error) {
	bases, err := s.mergeBases(ours, theirs)
	if err != nil {
		return Hash{}, fmt.Errorf("store: merge base of %s and %s: %w", short(ours), short(theirs), err)
	}
	if err != nil || len(bases) == 0 {
		return Hash{}, err
	}
	var tree Hash
	err = s.readObjs(func(o *objReader) error {
		var err error
		tree, err = o.commitTree(bases[0])
		return err
	})
	if err != nil || len(bases) == 1 || depth >= maxVirtualDepth {
		return tree, err
	}
	acc := bases[0]
	for _, b := range bases[1:] {
		bt, err := s.mergeBaseTree(acc, b, depth+1, memo)
		if err != nil {
			return Hash{}, err
		}
		var other Hash
		if err := s.readObjs(func(o *objReader) error {
			var err error
			other, err = o.commitTree(b)
			return err
		}); err != nil {
			return Hash{}, err
		}
		t, levels, _, _, err := s.mergeTrees("virtual merge base", bt, tree, other)
		if err != nil {
			return Hash{}, err
		}
		if _, err := s.writeObjects(nil, levels); err != nil {
			return Hash{}, err
		}
		tree = t
		// Further bases are merged against the first's history (an
		// approximation that errs towards conflicts, never silence).
	}
	return tree, nil
}

// mergeTrees merges the trees ours and theirs against base: it returns the
// merged tree and its new objects (deepest first), the paths merge
// functions resolved, and the paths in conflict (whose ours content the
// tree keeps).
func (s *Store) mergeTrees(op string, base, ours, theirs Hash) (Hash, [][]plumbing.EncodedObject, []string, []string, error) {
	var dOurs, dTheirs []Change
	err := s.readObjs(func(o *objReader) error {
		var err error
		if dOurs, err = o.diffTrees(base, ours, "", nil); err != nil {
			return err
		}
		dTheirs, err = o.diffTrees(base, theirs, "", nil)
		return err
	})
	if err != nil {
		return Hash{}, nil, nil, nil, err
	}
	ourChange := make(map[string]Change, len(dOurs))
	for _, c := range dOurs {
		ourChange[c.Path] = c
	}
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
	tree, levels, _, _, err := s.buildTree(ours, changes)
	if err != nil {
		return Hash{}, nil, nil, nil, &ConflictError{Op: op + " (" + err.Error() + ")", Paths: changedPaths(changes)}
	}
	return tree, levels, resolved, conflicts, nil
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
