package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// CommitInfo describes one commit.
type CommitInfo struct {
	Hash    Hash
	Parents []Hash
	Author  Signature
	When    time.Time
	Message string
}

// Subject is the first line of the message.
func (c CommitInfo) Subject() string {
	s, _, _ := strings.Cut(c.Message, "\n")
	return s
}

func commitInfo(c *object.Commit) CommitInfo {
	return CommitInfo{
		Hash:    c.Hash,
		Parents: append([]Hash(nil), c.ParentHashes...),
		Author:  Signature{Name: c.Author.Name, Email: c.Author.Email},
		When:    c.Author.When,
		Message: c.Message,
	}
}

// Change is one path that differs between two trees. From is zero for an
// added path, To is zero for a deleted one.
type Change struct {
	Path     string
	From, To Hash
}

// Action is "add", "delete" or "modify".
func (c Change) Action() string {
	switch {
	case c.From.IsZero():
		return "add"
	case c.To.IsZero():
		return "delete"
	}
	return "modify"
}

// ConflictError reports the paths that an operation could not reconcile.
// Nothing was written. errors.Is(err, ErrConflict) is true for it.
type ConflictError struct {
	Op    string
	Paths []string
}

// ErrConflict is matched by every *ConflictError.
var ErrConflict = errors.New("store: conflict")

func (e *ConflictError) Error() string {
	const show = 10
	ps := e.Paths
	more := ""
	if len(ps) > show {
		more = fmt.Sprintf(" and %d more", len(ps)-show)
		ps = ps[:show]
	}
	return fmt.Sprintf("store: %s: conflict in %d path(s): %s%s", e.Op, len(e.Paths), strings.Join(ps, ", "), more)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// LogOptions select the commits that Log returns.
type LogOptions struct {
	// Rev is where the history starts; "" means DefaultBranch.
	Rev string
	// Path, if set, keeps only the commits that changed it (an item or a
	// folder).
	Path string
	// Limit is the most commits to return; zero means all.
	Limit int
}

// Log lists the history from opts.Rev, newest first.
func (s *Store) Log(opts LogOptions) ([]CommitInfo, error) {
	if opts.Path != "" {
		opts.Path = trimSlash(opts.Path)
		if err := ValidatePath(opts.Path); err != nil {
			return nil, err
		}
	}
	start, err := s.Resolve(opts.Rev)
	if err != nil {
		if (opts.Rev == "" || opts.Rev == DefaultBranch) && errors.Is(err, ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []CommitInfo
	// Through the store's own object reader (logread.go), not go-git's
	// storage; the walk is go-git's (newest committer time first).
	err = s.readObjs(func(o *objReader) error {
		out = out[:0]
		c, err := o.commitObject(start)
		if err != nil {
			return fmt.Errorf("store: log: %w", err)
		}
		it := object.NewCommitIterCTime(c, nil, nil)
		defer it.Close()
		return it.ForEach(func(c *object.Commit) error {
			if opts.Path != "" {
				changed, err := o.changedPath(c, opts.Path)
				if err != nil {
					return err
				}
				if !changed {
					return nil
				}
			}
			out = append(out, commitInfo(c))
			if opts.Limit > 0 && len(out) >= opts.Limit {
				return storer.ErrStop
			}
			return nil
		})
	})
	return out, err
}

// Show describes the commit at rev and what it changed against its first
// parent (against nothing for the first commit).
func (s *Store) Show(rev string) (CommitInfo, []Change, error) {
	h, err := s.Resolve(rev)
	if err != nil {
		return CommitInfo{}, nil, err
	}
	var info CommitInfo
	var parent Hash
	err = s.read(func(r *git.Repository) error {
		c, err := r.CommitObject(h)
		if err != nil {
			return fmt.Errorf("store: show %s: %w", rev, err)
		}
		info = commitInfo(c)
		if c.NumParents() > 0 {
			parent = c.ParentHashes[0]
		}
		return nil
	})
	if err != nil {
		return CommitInfo{}, nil, err
	}
	changes, err := s.DiffCommits(parent, h)
	return info, changes, err
}

// Diff lists the items that differ between revisions from and to, sorted by
// path. It follows the size of the change, not of the store, which makes a
// commit hash a good sync token: Diff(token, "main") is what changed since.
func (s *Store) Diff(from, to string) ([]Change, error) {
	a, err := s.Resolve(from)
	if err != nil {
		return nil, err
	}
	b, err := s.Resolve(to)
	if err != nil {
		return nil, err
	}
	return s.DiffCommits(a, b)
}

// DiffCommits lists the items that differ between the trees of two commits
// (a zero hash is the empty tree), sorted by path.
func (s *Store) DiffCommits(a, b Hash) ([]Change, error) {
	var out []Change
	err := s.readObjs(func(o *objReader) error {
		ts, err := commitTrees(o, a, b)
		if err != nil {
			return err
		}
		out, err = o.diffTrees(ts[0], ts[1], "", nil)
		return err
	})
	return out, err
}

func commitTrees(o *objReader, hs ...Hash) ([]Hash, error) {
	out := make([]Hash, len(hs))
	for i, h := range hs {
		if h.IsZero() {
			continue
		}
		t, err := o.commitTree(h)
		if err != nil {
			return nil, fmt.Errorf("store: commit %s: %w", h, err)
		}
		out[i] = t
	}
	return out, nil
}

// Revert makes a new commit on opts.Branch that undoes the commit at rev
// (against its first parent). Paths that changed again since then are a
// *ConflictError and nothing is written.
func (s *Store) Revert(ctx context.Context, rev string, opts CommitOptions) (Hash, error) {
	info, changes, err := s.Show(rev)
	if err != nil {
		return Hash{}, err
	}
	if opts.Message == "" {
		opts.Message = fmt.Sprintf("Revert %q\n\nThis reverts commit %s.\n", info.Subject(), info.Hash)
	}
	return s.Update(ctx, opts, func(tx *Tx) error {
		var conflicts []string
		for _, c := range changes {
			cur, err := tx.hash(c.Path)
			if err != nil {
				return err
			}
			if cur != c.To {
				conflicts = append(conflicts, c.Path)
				continue
			}
			if c.From.IsZero() {
				tx.changes[c.Path] = change{del: true}
			} else {
				tx.changes[c.Path] = change{hash: c.From}
			}
		}
		if len(conflicts) > 0 {
			return &ConflictError{Op: "revert " + info.Hash.String(), Paths: conflicts}
		}
		return nil
	})
}

// hash returns the blob hash at path as the transaction sees it (zero if
// absent).
func (tx *Tx) hash(path string) (Hash, error) {
	if c, ok := tx.changes[path]; ok {
		if c.del {
			return Hash{}, nil
		}
		return c.hash, nil
	}
	e, err := tx.base.Stat(path)
	if errors.Is(err, ErrNotExist) {
		return Hash{}, nil
	}
	if err != nil {
		return Hash{}, err
	}
	if e.Dir {
		return Hash{}, nil
	}
	return e.Hash, nil
}

// blob reads a blob by hash.
func (s *Store) blob(h Hash) ([]byte, error) {
	return s.ReadBlob(h)
}

func short(h Hash) string { return h.String()[:12] }

func sortedStrings(ss []string) []string {
	sort.Strings(ss)
	return ss
}
