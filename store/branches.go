package store

// Branches: listing, creating, deleting and fast-forwarding the refs under
// refs/heads. Reading history (Log, Show, Diff, Revert) is in history.go,
// three-way merges in merge.go.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Branch is a branch and the commit it points at.
type Branch struct {
	Name string
	Head Hash
}

// validateBranch applies git's rules for reference names to a branch name.
func validateBranch(name string) error {
	bad := func(why string) error { return fmt.Errorf("store: branch name %q: %s", name, why) }
	if err := ValidatePath(name); err != nil {
		return bad("not a valid path")
	}
	switch {
	case strings.HasPrefix(name, "-"):
		return bad("starts with -")
	case strings.Contains(name, ".."), strings.Contains(name, "@{"):
		return bad("contains .. or @{")
	case strings.ContainsAny(name, " ~^:?*[\\\x7f"):
		return bad("contains one of: space ~ ^ : ? * [ \\")
	case strings.HasSuffix(name, ".lock"), strings.HasSuffix(name, "."):
		return bad("ends with .lock or .")
	case name == "HEAD":
		return bad("HEAD is reserved")
	}
	for _, seg := range strings.Split(name, "/") {
		if strings.HasPrefix(seg, ".") {
			return bad("a segment starts with .")
		}
	}
	for _, r := range name {
		if r < 0x20 {
			return bad("contains a control character")
		}
	}
	return nil
}

// Branches lists the branches, sorted by name. It does not wait for
// pending commits to be written (it read through go-git, which did): a
// branch's pending head comes from memory, over what its file says. A
// replica receiving a push listed them twice, and each time wrote its
// queued commits at once (a pack and its syncs per push, where the batch
// writer waits up to batchDelay to gather them).
func (s *Store) Branches() ([]Branch, error) {
	var (
		heads map[string]Hash
		err   error
	)
	// The files and the pending heads as of one moment: again if a batch
	// was written meanwhile (its heads leave the pending ones once their
	// files are written).
	for {
		var before uint64
		if s.pend != nil {
			s.pend.mu.Lock()
			before = s.pend.written
			s.pend.mu.Unlock()
		}
		heads = map[string]Hash{}
		err = s.readRefs(func(r *git.Repository) error {
			it, err := r.Storer.IterReferences()
			if err != nil {
				return fmt.Errorf("store: branches: %w", err)
			}
			return it.ForEach(func(ref *plumbing.Reference) error {
				if ref.Name().IsBranch() && ref.Type() == plumbing.HashReference {
					heads[ref.Name().Short()] = ref.Hash()
				}
				return nil
			})
		})
		if err != nil || s.pend == nil {
			break
		}
		s.pend.mu.Lock()
		same := s.pend.written == before
		if same {
			for b, h := range s.pend.heads {
				heads[b] = h
			}
		}
		s.pend.mu.Unlock()
		if same {
			break
		}
	}
	out := make([]Branch, 0, len(heads))
	for b, h := range heads {
		out = append(out, Branch{Name: b, Head: h})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// CreateBranch creates branch name at rev. It fails if the branch exists.
func (s *Store) CreateBranch(ctx context.Context, name, rev string) (Hash, error) {
	if err := validateBranch(name); err != nil {
		return Hash{}, err
	}
	h, err := s.Resolve(rev)
	if err != nil {
		return Hash{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return Hash{}, err
	}
	defer unlock()
	cur, err := s.head(name)
	if err != nil {
		return Hash{}, err
	}
	if !cur.IsZero() {
		return Hash{}, fmt.Errorf("store: create branch %s: %w", name, ErrExists)
	}
	return h, s.moveBranch(name, Hash{}, h)
}

// DeleteBranch deletes a branch. The default branch cannot be deleted.
func (s *Store) DeleteBranch(ctx context.Context, name string) error {
	if err := validateBranch(name); err != nil {
		return err
	}
	if name == DefaultBranch {
		return fmt.Errorf("store: delete branch %s: the default branch cannot be deleted", name)
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := s.head(name)
	if err != nil {
		return err
	}
	if cur.IsZero() {
		return fmt.Errorf("store: delete branch %s: %w", name, ErrNotExist)
	}
	if err := s.removeRef(plumbing.NewBranchReferenceName(name)); err != nil {
		return fmt.Errorf("store: delete branch %s: %w", name, err)
	}
	return nil
}

// removeRef deletes a reference (loose and packed) durably.
func (s *Store) removeRef(name plumbing.ReferenceName) error {
	err := s.read(func(r *git.Repository) error { return r.Storer.RemoveReference(name) })
	if err != nil || s.opts.noSync {
		return err
	}
	if err := syncDir(s.path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(filepath.Join(s.path, filepath.FromSlash(name.String()))))
}

// FastForward moves branch to rev, which must contain the branch's head
// (ErrNotFastForward otherwise). A branch that does not exist is created.
func (s *Store) FastForward(ctx context.Context, branch, rev string) (Hash, error) {
	if branch == "" {
		branch = DefaultBranch
	}
	h, err := s.Resolve(rev)
	if err != nil {
		return Hash{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return Hash{}, err
	}
	defer unlock()
	return h, s.fastForwardLocked(branch, h)
}

func (s *Store) fastForwardLocked(branch string, h Hash) error {
	cur, err := s.head(branch)
	if err != nil {
		return err
	}
	if cur == h {
		return nil
	}
	if !cur.IsZero() {
		ok, err := s.isAncestor(cur, h)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("store: %s is at %s, which %s does not contain: %w", branch, short(cur), short(h), ErrNotFastForward)
		}
	}
	return s.moveBranch(branch, cur, h)
}

// walkHistory visits commit start and its ancestors, each once, until
// visit returns true (then it reports true) or the history ends.
func walkHistory(o *objReader, start Hash, visit func(Hash) bool) (bool, error) {
	return walkCommits(o, []Hash{start}, func(h Hash) walkStep {
		if visit(h) {
			return walkStop
		}
		return walkOn
	})
}

// walkStep is what walkCommits does after visiting a commit.
type walkStep int

const (
	walkOn   walkStep = iota // go on to its parents
	walkSkip                 // not to its parents (others still)
	walkStop                 // stop the walk
)

// walkCommits visits the commits starts and their ancestors, each once,
// as visit says after each; it reports whether visit stopped it.
func walkCommits(o *objReader, starts []Hash, visit func(Hash) walkStep) (bool, error) {
	seen := map[Hash]bool{}
	stack := append([]Hash(nil), starts...)
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[h] {
			continue
		}
		seen[h] = true
		switch visit(h) {
		case walkStop:
			return true, nil
		case walkSkip:
			continue
		}
		ps, err := cachedParents(o, h)
		if err != nil {
			return false, err
		}
		stack = append(stack, ps...)
	}
	return false, nil
}

// ErrUnrelatedHistory refuses a replica's push or pull whose history
// shares no commit with this store's DefaultBranch (see
// WithGitSharedHistory and SyncOptions.SharedHistory).
var ErrUnrelatedHistory = errors.New("unrelated history: it shares no commit with this store's " + DefaultBranch + " (a replica must begin as a clone of its peer's store)")

// checkSharedHistory returns ErrUnrelatedHistory unless commit h's history
// shares a commit with DefaultBranch's, or DefaultBranch has no commit.
func (s *Store) checkSharedHistory(h Hash) error {
	main, err := s.head(DefaultBranch)
	if err != nil {
		return err
	}
	if main.IsZero() {
		return nil
	}
	ok, err := s.sharesHistory(h, main)
	if err != nil {
		return err
	}
	if !ok {
		return ErrUnrelatedHistory
	}
	return nil
}

// sharesHistory reports whether the histories of commits a and b have a
// commit in common: b's is walked whole, then a's until it meets one of
// b's (at once for a descendant of b, or of a commit merged into b).
func (s *Store) sharesHistory(a, b Hash) (bool, error) {
	ok := false
	err := s.readObjs(func(o *objReader) error {
		ofB := map[Hash]bool{}
		if _, err := walkHistory(o, b, func(h Hash) bool { ofB[h] = true; return false }); err != nil {
			return err
		}
		var err error
		ok, err = walkHistory(o, a, func(h Hash) bool { return ofB[h] })
		return err
	})
	return ok, err
}
