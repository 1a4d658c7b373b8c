package store

import (
	"context"
	"strings"
	"sync"
)

// Event tells a watcher that a branch moved and which watched paths changed.
type Event struct {
	Branch string
	// Old and New are the branch's heads before and after (Old is zero for
	// a new branch). Events that a slow watcher had not taken may be
	// coalesced into one, from the first Old to the last New.
	Old, New Hash
	// Paths are the changed paths under the watched prefix, sorted.
	Paths []string
}

// maxQueued is how many events a watcher holds before they are coalesced.
const maxQueued = 256

// Watcher receives the commits that change paths under a prefix of a branch.
// Writers never wait for watchers: events queue up and are coalesced if a
// watcher falls behind.
type Watcher struct {
	hub    *watchHub
	branch string
	prefix string

	mu     sync.Mutex
	queue  []Event
	ready  chan struct{} // has a token when queue is not empty
	closed bool
}

type watchHub struct {
	mu       sync.Mutex
	watchers map[*Watcher]bool
}

// Watch subscribes to commits on branch ("" means DefaultBranch) that change
// a path under prefix ("" means everything, and every move of the branch,
// one that changes no path included: an event with no paths), from now on, whatever makes them
// through this Store: Update, merges, pulls, pushes received over HTTP,
// reverts. (Commits made by another process on the same repository are not
// seen.) Close the watcher when done.
func (s *Store) Watch(branch, prefix string) (*Watcher, error) {
	if branch == "" {
		branch = DefaultBranch
	}
	if err := validateBranch(branch); err != nil {
		return nil, err
	}
	prefix = trimSlash(prefix)
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, ErrClosed
	}
	w := &Watcher{hub: &s.watch, branch: branch, prefix: prefix, ready: make(chan struct{}, 1)}
	s.watch.mu.Lock()
	if s.watch.watchers == nil {
		s.watch.watchers = map[*Watcher]bool{}
	}
	s.watch.watchers[w] = true
	s.watch.mu.Unlock()
	return w, nil
}

// Ready has a value when Next would not block; use it in a select.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Next returns the next event, waiting for one until ctx is done. After
// Close (or the store's Close) it returns ErrClosed.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			ev := w.queue[0]
			w.queue = w.queue[1:]
			if len(w.queue) > 0 {
				w.signal()
			}
			w.mu.Unlock()
			return ev, nil
		}
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return Event{}, ErrClosed
		}
		select {
		case <-w.ready:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Close ends the subscription.
func (w *Watcher) Close() {
	w.hub.mu.Lock()
	delete(w.hub.watchers, w)
	w.hub.mu.Unlock()
	w.mu.Lock()
	w.closed = true
	w.signal()
	w.mu.Unlock()
}

func (w *Watcher) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

func (w *Watcher) push(ev Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if len(w.queue) >= maxQueued {
		first := w.queue[0]
		seen := map[string]bool{}
		var paths []string
		for _, e := range append(w.queue, ev) {
			for _, p := range e.Paths {
				if !seen[p] {
					seen[p] = true
					paths = append(paths, p)
				}
			}
		}
		w.queue = []Event{{Branch: ev.Branch, Old: first.Old, New: ev.New, Paths: sortedStrings(paths)}}
	} else {
		w.queue = append(w.queue, ev)
	}
	w.signal()
}

func (h *watchHub) closeAll() {
	h.mu.Lock()
	ws := make([]*Watcher, 0, len(h.watchers))
	for w := range h.watchers {
		ws = append(ws, w)
	}
	h.mu.Unlock()
	for _, w := range ws {
		w.Close()
	}
}

// notify tells the watchers of branch that it moved from old to h.
func (s *Store) notify(branch string, old, h Hash) {
	s.watch.mu.Lock()
	var ws []*Watcher
	for w := range s.watch.watchers {
		if w.branch == branch {
			ws = append(ws, w)
		}
	}
	s.watch.mu.Unlock()
	if len(ws) == 0 {
		return
	}
	changes, err := s.DiffCommits(old, h)
	if err != nil {
		s.log.Warn("store: watch: diff failed; watchers get an event without paths", "branch", branch, "err", err)
	}
	for _, w := range ws {
		var paths []string
		for _, c := range changes {
			if w.prefix == "" || c.Path == w.prefix || strings.HasPrefix(c.Path, w.prefix+"/") {
				paths = append(paths, c.Path)
			}
		}
		// A watcher of the whole branch hears of every move, one that
		// changes no path too (a merge whose tree is the branch's own:
		// replicas must push it on, or their peers wait for their poll).
		if len(paths) == 0 && err == nil && w.prefix != "" {
			continue
		}
		w.push(Event{Branch: branch, Old: old, New: h, Paths: paths})
	}
}
