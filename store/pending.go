package store

import (
	"path/filepath"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// pending holds the commits that are durable in the commit log (wal.go)
// but whose objects and branch file a background goroutine is still
// writing into the repository. Update returns once a commit is in the log
// and here: the ~10 file creations of a commit are off its path.
//
// The store's own readers see pending commits at once: readObjs looks here
// before the object reader, and the branch heads here before the branch
// files. Everything that reads the repository through go-git (history,
// merges, sync, the git server, GC) first waits until nothing is pending
// (Store.read calls drain), as do checkpoints and Close. Other processes
// see a commit once its branch file is written, after its objects.
type pending struct {
	mu    sync.Mutex
	idle  *sync.Cond // broadcast when a queued commit is written
	objs  map[Hash]pendingObject
	heads map[string]Hash // branch -> newest pending head
	queue []pendingCommit
	err   error // the first failed write; the commit log still holds it
	wake  chan struct{}
}

// pendingObject is a logged object and the number of queued commits that
// hold it (the same blob can come in two commits).
type pendingObject struct {
	obj  plumbing.EncodedObject
	refs int
}

type pendingCommit struct {
	branch  string
	head    Hash
	objects []plumbing.EncodedObject
}

func newPending() *pending {
	p := &pending{objs: map[Hash]pendingObject{}, heads: map[string]Hash{}, wake: make(chan struct{}, 1)}
	p.idle = sync.NewCond(&p.mu)
	return p
}

// maxPending bounds the queue: a writer that gets this far ahead of the
// background waits, so that memory stays bounded on a small appliance.
const maxPending = 64

// add queues a commit that is durable in the log.
func (p *pending) add(c pendingCommit) {
	p.mu.Lock()
	for len(p.queue) >= maxPending && p.err == nil {
		p.idle.Wait()
	}
	for _, o := range c.objects {
		po := p.objs[o.Hash()]
		po.obj, po.refs = o, po.refs+1
		p.objs[o.Hash()] = po
	}
	p.heads[c.branch] = c.head
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// object returns a pending object.
func (p *pending) object(h Hash) plumbing.EncodedObject {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.objs[h].obj
}

// head returns the pending head of branch, if any.
func (p *pending) head(branch string) (Hash, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.heads[branch]
	return h, ok
}

// drain waits until every queued commit is written (or failed).
func (p *pending) drain() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) > 0 && p.err == nil {
		p.idle.Wait()
	}
	return p.err
}

// run writes queued commits in order until stop is closed and the queue is
// empty.
func (s *Store) runPending(stop <-chan struct{}) {
	p := s.pend
	for {
		p.mu.Lock()
		if len(p.queue) == 0 || p.err != nil {
			p.idle.Broadcast()
			p.mu.Unlock()
			select {
			case <-p.wake:
				continue
			case <-stop:
				return
			}
		}
		c := p.queue[0]
		p.mu.Unlock()
		err := s.writePending(c)
		p.mu.Lock()
		if err != nil {
			// The commit stays readable from memory and durable in the
			// log; Open replays it. Nothing more is written until then.
			p.err = err
			s.log.Error("store: writing a logged commit into the repository failed; it is kept in the commit log", "err", err)
		} else {
			p.queue = p.queue[1:]
			for _, o := range c.objects {
				if po := p.objs[o.Hash()]; po.refs > 1 {
					po.refs--
					p.objs[o.Hash()] = po
				} else {
					delete(p.objs, o.Hash())
				}
			}
			if p.heads[c.branch] == c.head {
				delete(p.heads, c.branch)
			}
		}
		// Wake drain (queue empty) and add (room in the queue).
		p.idle.Broadcast()
		p.mu.Unlock()
	}
}

// writePending writes one logged commit's objects, then its branch file,
// without syncs (the commit log holds them until the next checkpoint).
func (s *Store) writePending(c pendingCommit) error {
	w := s.newObjWriter()
	w.lazy = true
	for _, o := range c.objects {
		w.write(o)
	}
	if err := w.wait(); err != nil {
		return err
	}
	ref := plumbing.NewBranchReferenceName(c.branch)
	return s.writeFileAtomic(filepath.Join(s.path, filepath.FromSlash(ref.String())), []byte(c.head.String()+"\n"), false)
}

// Flush waits until every commit that Update has returned is written into
// the repository's files, for programs that read them directly (stock git
// on the same folder). Commits are durable before Update returns either
// way; this is only about other readers seeing them.
func (s *Store) Flush() error {
	if s.pend == nil {
		return nil
	}
	return s.pend.drain()
}
