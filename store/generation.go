package store

import (
	"bytes"
	"container/heap"
	"sort"
	"sync"
)

// Generation numbers: a root commit's is 1, any other's one more than the
// highest of its parents'. A commit's ancestors all have lower numbers, so
// a walk that takes commits highest first has seen every descendant of a
// commit before it comes to it, and a walk looking for commit a can leave
// out every commit numbered below a's. The merge bases of two heads and
// whether one reaches the other are then found by walks down to them,
// not through the whole history: a replica's merges searched every commit
// the two heads reached, several times a merge, and after a partition
// healed over a long history (10,000 commits) the walks took seconds of
// CPU per merge, merge after merge.
//
// Numbers are computed once per commit and kept for the process (a hash
// names one commit everywhere, as for commitParents), up to
// maxCachedParents of them.

var commitGens = &genCache{m: map[Hash]uint32{}}

type genCache struct {
	mu sync.Mutex
	m  map[Hash]uint32
}

func (c *genCache) get(h Hash) (uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.m[h]
	return g, ok
}

func (c *genCache) putAll(m map[Hash]uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m)+len(m) > maxCachedParents {
		clear(c.m)
	}
	for h, g := range m {
		c.m[h] = g
	}
}

// generation returns commit h's generation number, computing those of its
// ancestors not yet known (each once: a walk of the history the first
// time, of the commits since then after that).
func generation(o *objReader, h Hash) (uint32, error) {
	if g, ok := commitGens.get(h); ok {
		return g, nil
	}
	local := map[Hash]uint32{}
	known := func(c Hash) (uint32, bool) {
		if g, ok := local[c]; ok {
			return g, true
		}
		return commitGens.get(c)
	}
	stack := []Hash{h}
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		if _, ok := known(c); ok {
			stack = stack[:len(stack)-1]
			continue
		}
		ps, err := cachedParents(o, c)
		if err != nil {
			return 0, err
		}
		g, missing := uint32(1), false
		for _, p := range ps {
			pg, ok := known(p)
			if !ok {
				stack = append(stack, p)
				missing = true
				continue
			}
			g = max(g, pg+1)
		}
		if !missing {
			local[c] = g
			stack = stack[:len(stack)-1]
		}
	}
	commitGens.putAll(local)
	return local[h], nil
}

type genItem struct {
	h Hash
	g uint32
}

// byGeneration takes commits highest generation first (then by hash, so
// that a walk is the same every time).
func byGeneration(a, b genItem) bool {
	if a.g != b.g {
		return a.g > b.g
	}
	return bytes.Compare(a.h[:], b.h[:]) < 0
}

// mergeBases returns the best common ancestors of a and b (those that are
// not ancestors of another common ancestor), sorted by hash, read through
// the store's own object reader: commits are taken highest generation
// first, each marked with the heads it is reached from; one reached from
// both is a base unless it is below one found before (stale), and what it
// reaches is stale; the walk ends when every commit left is stale.
func (s *Store) mergeBases(a, b Hash) ([]Hash, error) {
	if a == b {
		return []Hash{a}, nil
	}
	var out []Hash
	err := s.readObjs(func(o *objReader) error {
		const fromA, fromB, stale = 1, 2, 4
		flags := map[Hash]int{}
		done := map[Hash]int{} // the flags a commit was taken with
		q := &pqueue[genItem]{less: byGeneration}
		mark := func(h Hash, f int) error {
			nf := flags[h] | f
			if _, seen := flags[h]; seen && nf == flags[h] {
				return nil
			}
			flags[h] = nf
			g, err := generation(o, h)
			if err != nil {
				return err
			}
			heap.Push(q, genItem{h, g})
			return nil
		}
		if err := mark(a, fromA); err != nil {
			return err
		}
		if err := mark(b, fromB); err != nil {
			return err
		}
		for q.Len() > 0 {
			live := false
			for _, it := range q.items {
				if flags[it.h]&stale == 0 {
					live = true
					break
				}
			}
			if !live {
				break
			}
			it := heap.Pop(q).(genItem)
			f := flags[it.h]
			if d, ok := done[it.h]; ok && d == f {
				continue
			}
			if f&(fromA|fromB) == fromA|fromB && f&stale == 0 {
				out = append(out, it.h)
				f |= stale
				flags[it.h] = f
			}
			done[it.h] = f
			ps, err := cachedParents(o, it.h)
			if err != nil {
				return err
			}
			for _, p := range ps {
				if err := mark(p, f); err != nil {
					return err
				}
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, err
}

// isAncestor reports whether commit a is b or one of b's ancestors: a walk
// of b's history that leaves out the commits numbered below a (they
// cannot reach it), through the store's object reader and the caches of
// parents and generations (go-git's walk decoded every commit of a
// replica's history, under the writer lock, at every merge and push; ours
// walked all of it whenever a was not an ancestor).
func (s *Store) isAncestor(a, b Hash) (bool, error) {
	if a == b {
		return true, nil
	}
	ok := false
	err := s.readObjs(func(o *objReader) error {
		if _, err := readCommit(o, a); err != nil {
			return err
		}
		var err error
		ok, err = reachesWithin(o, []Hash{b}, a, 0)
		return err
	})
	return ok, err
}

// reachesWithin reports whether one of heads reaches commit h, walking
// the commits numbered above h, and no more than budget of them if budget
// is positive (false then: it cannot tell).
func reachesWithin(o *objReader, heads []Hash, h Hash, budget int) (bool, error) {
	gh, err := generation(o, h)
	if err != nil {
		return false, err
	}
	n := 0
	var gerr error
	found, err := walkCommits(o, heads, func(c Hash) walkStep {
		if c == h {
			return walkStop
		}
		if n++; budget > 0 && n > budget {
			return walkStop
		}
		g, err := generation(o, c)
		if err != nil {
			gerr = err
			return walkStop
		}
		if g <= gh {
			return walkSkip // h is not below it
		}
		return walkOn
	})
	if err == nil {
		err = gerr
	}
	if err != nil {
		return false, err
	}
	return found && (budget <= 0 || n <= budget), nil
}
