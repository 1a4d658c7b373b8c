package store

import (
	"container/heap"
	"fmt"
	"slices"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// CountNew counts the commits that head reaches and none of old reaches:
// how far head is ahead of them (a replica's "ahead" and "behind"). It
// stops counting at limit (if positive) and returns limit then.
func (s *Store) CountNew(head Hash, old []Hash, limit int) (int, error) {
	if head.IsZero() {
		return 0, nil
	}
	n := 0
	err := s.readObjs(func(o *objReader) error {
		cs, _, err := newCommitsSince(o, []Hash{head}, old, limit)
		if err != nil {
			return err
		}
		n = len(cs)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: count commits of %s: %w", short(head), err)
	}
	if limit > 0 && n > limit {
		n = limit
	}
	return n, nil
}

// reachedBy reports whether one of heads reaches commit h (is h, or has
// it in its history), looking at the commits numbered above h (see
// generation.go) and at no more than reachBudget of them: false when it
// cannot tell (what a caller then does, a push, is never wrong, only
// perhaps not needed). A walk that lists every commit one side has
// and the other lacks (CountNew) cost a replica's sync a walk of a
// partition's commits, at every sync after it healed.
func (s *Store) reachedBy(h Hash, heads []Hash) (bool, error) {
	if len(heads) == 0 || h.IsZero() {
		return false, nil
	}
	if slices.Contains(heads, h) {
		return true, nil
	}
	var found bool
	err := s.readObjs(func(o *objReader) error {
		var err error
		found, err = reachesWithin(o, heads, h, reachBudget)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: history of %s: %w", short(h), err)
	}
	return found, nil
}

// reachBudget bounds reachedBy's walk.
const reachBudget = 4096

// Reaches reports whether commit from has commit h in its history (or is
// h). It looks at a bounded number of commits and answers false when it
// cannot tell: a replica's check whether a peer holds a head already,
// where a wrong false costs only a push.
func (s *Store) Reaches(from, h Hash) bool {
	if from.IsZero() {
		return false
	}
	ok, err := s.reachedBy(h, []Hash{from})
	return err == nil && ok
}

// ValidateHistory checks the commits that head reaches and no branch
// reaches as a push of head would be checked (see GitHandler): a replica's
// check of what it fetched before it merges it.
func (s *Store) ValidateHistory(head Hash) error { return s.validateNew(head) }

// packObjects lists the objects that a client holding the commits haves
// (and what they reach) lacks to have wants: the commits that the wants
// reach and the haves do not, and in each commit's tree what differs from
// its first parent's tree (all of it for a root commit; commitChanges,
// cached per commit: a push to each peer lists the same commits). A
// client pushing or fetching is taken to hold everything its haves reach.
// It reads through
// the store's own object reader and walks the commits the haves reach but
// never their trees, so a fetch of a few new commits costs what they
// changed plus one read per commit of history. It may list an object the
// client has (a blob that a merge brings from its second parent); never
// one less. (A walk that stopped early on commit times missed commits
// made within one second of each other here; newCommitsSince stops on
// generation numbers, which are exact.)
func (s *Store) packObjects(wants, haves []Hash) ([]Hash, error) {
	var out []Hash
	err := s.readObjs(func(o *objReader) error {
		seen := map[Hash]bool{}
		add := func(h Hash) bool {
			if seen[h] {
				return false
			}
			seen[h] = true
			out = append(out, h)
			return true
		}
		cs, _, err := newCommitsSince(o, wants, haves, 0)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if !add(c.hash) {
				continue
			}
			ch, err := commitChanges(o, c)
			if err != nil {
				return err
			}
			for _, h := range ch {
				add(h)
			}
		}
		return nil
	})
	return out, err
}

// newCommitsSince returns the commits that wants reach and haves do not,
// highest generation first (generation.go). Commits are taken highest
// generation first, each marked as reached from a have or not; a commit's
// children all come before it, so its mark is final when it is taken. The
// walk ends once every commit queued is reached from a have: what those
// reach is the client's too. It walks the new commits and those numbered
// above the lowest have, where a walk of everything the haves reach (what
// packObjects did before) read a peer's whole history at every push (667
// µs at 5000 commits, growing with them; 12 µs now), and a walk by commit
// time (what CountNew did) could not stop among commits of one second.
// It also returns how many commits it took from the queue, new or not. It
// stops at limit new commits, if limit is positive.
func newCommitsSince(o *objReader, wants, haves []Hash, limit int) ([]commitNode, int, error) {
	const queued, taken, old = 1, 2, 4
	state := map[Hash]uint8{}
	q := &pqueue[genItem]{less: byGeneration}
	live := 0 // commits queued that no have reaches
	mark := func(h Hash, isOld bool) error {
		if h.IsZero() {
			return nil
		}
		st, seen := state[h]
		if !seen {
			g, err := generation(o, h)
			if err != nil {
				return err
			}
			st = queued
			if isOld {
				st |= old
			} else {
				live++
			}
			state[h] = st
			heap.Push(q, genItem{h, g})
			return nil
		}
		if isOld && st&old == 0 && st&taken == 0 {
			state[h] = st | old
			live--
		}
		return nil
	}
	for _, h := range haves {
		if err := mark(h, true); err != nil {
			return nil, 0, err
		}
	}
	for _, h := range wants {
		if err := mark(h, false); err != nil {
			return nil, 0, err
		}
	}
	var out []commitNode
	n := 0
	for ; live > 0 && (limit <= 0 || len(out) < limit); n++ {
		it := heap.Pop(q).(genItem)
		st := state[it.h]
		state[it.h] = st | taken
		isOld := st&old != 0
		var ps []Hash
		if isOld {
			var err error
			if ps, err = cachedParents(o, it.h); err != nil {
				return nil, 0, err
			}
		} else {
			live--
			c, err := readCommit(o, it.h)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, c)
			ps = c.parents
		}
		for _, p := range ps {
			if err := mark(p, isOld); err != nil {
				return nil, 0, err
			}
		}
	}
	return out, n, nil
}

// commitChanges lists the trees and blobs of commit c's tree that its first
// parent's tree lacks (all of them for a root commit), through the store's
// cache of such lists (a push to each peer, and each fetch, list the same
// new commits again). A tree is walked once against each base it meets, not
// once: what it shares with a base is skipped as the client's, so a tree met
// against two bases (a folder changed and changed back) must be compared
// with both (TestPackObjectsFolderChangedBack).
func commitChanges(o *objReader, c commitNode) ([]Hash, error) {
	if o.trees != nil {
		if ch, ok := o.trees.commits.changes(c.hash); ok {
			return ch, nil
		}
	}
	var base Hash
	if len(c.parents) > 0 {
		var err error
		if base, err = o.commitTree(c.parents[0]); err != nil {
			return nil, err
		}
	}
	var out []Hash
	seen := map[Hash]bool{}
	add := func(h Hash) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	walked := map[[2]Hash]bool{}
	var walk func(t, base Hash) error
	walk = func(t, base Hash) error {
		if t == base || walked[[2]Hash{t, base}] {
			return nil
		}
		walked[[2]Hash{t, base}] = true
		add(t)
		nt, err := o.tree(t)
		if err != nil {
			return err
		}
		var bt *tree
		if !base.IsZero() {
			if bt, err = o.tree(base); err != nil {
				return err
			}
		}
		for _, e := range nt.entries {
			var be object.TreeEntry
			ok := false
			if bt != nil {
				be, ok = bt.find(e.Name)
			}
			if ok && be.Hash == e.Hash {
				continue
			}
			switch e.Mode {
			case filemode.Dir:
				var b Hash
				if ok && be.Mode == filemode.Dir {
					b = be.Hash
				}
				if err := walk(e.Hash, b); err != nil {
					return err
				}
			case filemode.Submodule:
			default:
				add(e.Hash)
			}
		}
		return nil
	}
	if err := walk(c.tree, base); err != nil {
		return nil, err
	}
	if o.trees != nil {
		o.trees.commits.putChanges(c.hash, out)
	}
	return out, nil
}

// commitParents caches the parents of commits (which never change, and a
// hash names one commit in every repository) for mergeBases: replicas that
// merge each other search merge bases many times per merge (virtual bases,
// mergeBaseTree), each a walk of the whole history.
var commitParents = &parentCache{m: map[Hash][]Hash{}}

type parentCache struct {
	mu sync.Mutex
	m  map[Hash][]Hash
}

// maxCachedParents bounds the cache (about 100 bytes an entry).
const maxCachedParents = 1 << 20

func (c *parentCache) get(h Hash) ([]Hash, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[h]
	return p, ok
}

func (c *parentCache) put(h Hash, p []Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedParents {
		clear(c.m)
	}
	c.m[h] = p
}

// cachedParents returns commit h's parents, through commitParents.
func cachedParents(o *objReader, h Hash) ([]Hash, error) {
	if p, ok := commitParents.get(h); ok {
		return p, nil
	}
	c, err := readCommit(o, h)
	if err != nil {
		return nil, err
	}
	commitParents.put(h, c.parents)
	return c.parents, nil
}
