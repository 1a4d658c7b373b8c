package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// pending holds the commits that are durable in the commit log (wal.go)
// but not yet in the repository's files. Update returns once a commit is in
// the log and here; a background goroutine then writes queued commits in
// batches: the objects of a batch as one pack (synced before it is renamed
// into place, so that a pack in objects/pack is always whole), then the
// branch files (unsynced, like every branch move the log covers). One pack
// per batch instead of a loose file per object: creating ~10 files per
// commit cost more kernel CPU than everything else a commit does.
//
// The store's own readers see pending commits at once: readObjs looks here
// before the object reader, and the branch heads here before the branch
// files. Everything that reads the repository through go-git (history,
// merges, sync, the git server, GC) first waits until nothing is pending
// (Store.read calls drain, which writes the queue at once), as do
// checkpoints and Close. Other processes see a commit once its branch file
// is written, after its pack.
type pending struct {
	mu    sync.Mutex
	idle  *sync.Cond // broadcast when queued commits are written
	objs  map[Hash]pendingObject
	heads map[string]Hash // branch -> newest pending head
	queue []pendingCommit
	bytes int   // content bytes of the queued commits' objects
	hurry int   // drain calls waiting: write the queue without delay
	err   error // the first failed write; the commit log still holds it
	wake  chan struct{}
	// entryBytes is what the objects' kept pack entries hold (entry.go),
	// up to entryLimit.
	entryBytes, entryLimit int
	// added counts the commits queued, written those written (in order).
	added, written uint64
}

// pendingObject is a logged object and the number of queued commits that
// hold it (the same blob can come in two commits).
type pendingObject struct {
	obj  plumbing.EncodedObject
	refs int
	// entry is the object's pack entry once a push or the batch writer
	// has compressed it (entry.go), for the others to copy.
	entry packEntry
}

type pendingCommit struct {
	seq     uint64 // its place in the queue's order (pending.added)
	branch  string
	head    Hash
	objects []plumbing.EncodedObject
	size    int       // content bytes of objects
	at      time.Time // when it was queued
}

func newPending() *pending {
	p := &pending{objs: map[Hash]pendingObject{}, heads: map[string]Hash{}, wake: make(chan struct{}, 1), entryLimit: entryLimit()}
	p.idle = sync.NewCond(&p.mu)
	return p
}

const (
	// batchDelay is how long a queued commit may wait for others to share
	// its pack. Readers in the process do not wait for it (they read
	// pending commits from memory), nor do go-git's readers (they drain);
	// only other processes see the commit that much later.
	batchDelay = 500 * time.Millisecond
	// batchCommits and batchBytes write a batch before batchDelay when
	// this much is queued.
	batchCommits = 256
	batchBytes   = 4 << 20
	// maxPending and maxPendingBytes bound the queue: a writer that gets
	// this far ahead of the background waits, so that memory stays
	// bounded on a small appliance.
	maxPending      = 2 * batchCommits
	maxPendingBytes = 2 * batchBytes
)

// add queues a commit that is durable in the log.
func (p *pending) add(c pendingCommit) {
	c.at = time.Now()
	for _, o := range c.objects {
		c.size += int(o.Size())
	}
	p.mu.Lock()
	for (len(p.queue) >= maxPending || p.bytes >= maxPendingBytes) && p.err == nil {
		p.idle.Wait()
	}
	for _, o := range c.objects {
		po := p.objs[o.Hash()]
		po.obj, po.refs = o, po.refs+1
		p.objs[o.Hash()] = po
	}
	p.heads[c.branch] = c.head
	p.added++
	c.seq = p.added
	p.queue = append(p.queue, c)
	p.bytes += c.size
	// The writer needs waking when the queue starts (to time the batch)
	// and when it is full enough to go at once.
	wake := len(p.queue) == 1 || len(p.queue) >= batchCommits || p.bytes >= batchBytes
	p.mu.Unlock()
	if wake {
		p.poke()
	}
}

func (p *pending) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// busy reports whether commits are queued, or left unwritten by an error.
func (p *pending) busy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue) > 0
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

// drain waits until every commit queued when it is called is written (or
// failed), asking the writer not to wait for a fuller batch. Commits
// queued meanwhile are not waited for: under a steady stream of commits,
// a reader that waited for an empty queue (a replica's push arriving
// while a client writes) waited for the stream to pause, and had the
// writer make a pack per commit or two all that time.
func (p *pending) drain() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 || p.err != nil {
		return p.err
	}
	target := p.added
	p.hurry++
	p.poke()
	for p.written < target && p.err == nil {
		p.idle.Wait()
	}
	p.hurry--
	return p.err
}

// ready says how many queued commits to write now, or how long to wait
// before the oldest has waited batchDelay. The caller holds p.mu.
func (p *pending) ready(now time.Time) (n int, wait time.Duration) {
	if len(p.queue) == 0 || p.err != nil {
		return 0, -1
	}
	if p.hurry > 0 || len(p.queue) >= batchCommits || p.bytes >= batchBytes {
		return len(p.queue), 0
	}
	if w := batchDelay - now.Sub(p.queue[0].at); w > 0 {
		return 0, w
	}
	return len(p.queue), 0
}

// runPending writes queued commits in order, in batches, until stop is
// closed (Close drains the queue first).
func (s *Store) runPending(stop <-chan struct{}) {
	p := s.pend
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		p.mu.Lock()
		n, wait := p.ready(time.Now())
		if n == 0 {
			if len(p.queue) == 0 || p.err != nil {
				p.idle.Broadcast()
			}
			p.mu.Unlock()
			if wait > 0 {
				timer.Reset(wait)
			}
			select {
			case <-p.wake:
			case <-timer.C:
			case <-stop:
				timer.Stop()
				return
			}
			timer.Stop()
			continue
		}
		p.mu.Unlock()
		if err := s.writeQueued(n); err == nil {
			s.maybeCheckpoint()
			s.releaseFlock(false)
			s.maybeMergePacks()
		}
	}
}

// writeQueued writes the first n queued commits into the repository (the
// batch writer's step). A failure stops the queue (pending.err).
func (s *Store) writeQueued(n int) error {
	p := s.pend
	p.mu.Lock()
	batch := p.queue[:n:n]
	p.mu.Unlock()
	err := s.writeBatch(batch)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		// The commits stay readable from memory and durable in the
		// log; Open replays them. Nothing more is written until then.
		p.err = err
		s.log.Error("store: writing logged commits into the repository failed; they are kept in the commit log", "err", err)
	} else {
		p.done(batch)
	}
	// Wake drain (its commits written) and add (room in the queue).
	p.idle.Broadcast()
	return err
}

// done takes the batch of the first queued commits, just written, off the
// queue. The caller holds p.mu.
func (p *pending) done(batch []pendingCommit) {
	n := len(batch)
	p.queue = p.queue[n:]
	p.written = batch[n-1].seq
	for _, c := range batch {
		p.bytes -= c.size
		for _, o := range c.objects {
			if po := p.objs[o.Hash()]; po.refs > 1 {
				po.refs--
				p.objs[o.Hash()] = po
			} else {
				p.entryBytes -= len(po.entry.data)
				delete(p.objs, o.Hash())
			}
		}
		if p.heads[c.branch] == c.head {
			delete(p.heads, c.branch)
		}
	}
	if len(p.queue) == 0 {
		p.queue = nil // let the written batch go
	}
}

// writeBatch writes logged commits' objects as one pack, then each branch's
// newest head into its branch file, without syncing the branch files (the
// commit log holds the moves until the next checkpoint).
func (s *Store) writeBatch(batch []pendingCommit) error {
	seen := map[Hash]bool{}
	var objs []plumbing.EncodedObject
	for _, c := range batch {
		for _, o := range c.objects {
			if h := o.Hash(); !seen[h] {
				seen[h] = true
				objs = append(objs, o)
			}
		}
	}
	name, _, err := s.writePackDir(context.Background(), false, func(f *os.File) (Hash, *idxfile.MemoryIndex, error) {
		return writeEntriesPack(f, objs, s.pend.entry)
	})
	if err != nil {
		return err
	}
	if err := s.addPack(name); err != nil {
		return err
	}
	var order []string
	heads := map[string]Hash{}
	for _, c := range batch {
		if _, ok := heads[c.branch]; !ok {
			order = append(order, c.branch)
		}
		heads[c.branch] = c.head
	}
	for _, b := range order {
		ref := plumbing.NewBranchReferenceName(b)
		if err := s.writeFileAtomic(filepath.Join(s.path, filepath.FromSlash(ref.String())), []byte(heads[b].String()+"\n"), false); err != nil {
			return err
		}
	}
	return nil
}

// addPack makes a pack that was just written (and its index) readable by
// the object reader at once, and marks go-git's storage for reloading
// before its next use.
func (s *Store) addPack(name string) error {
	path := filepath.Join(s.path, "objects", "pack", name)
	idx, err := openPackIndex(strings.TrimSuffix(path, ".pack") + ".idx")
	if err != nil {
		return fmt.Errorf("store: open new pack's index: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("store: open new pack: %w", err)
	}
	s.packsMu.Lock()
	defer s.packsMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gitStale.Store(true)
	packs := s.objs.packList()
	for _, p := range packs {
		if p.name == name { // a reload found it first
			f.Close()
			return nil
		}
	}
	// A new list (readers without s.mu may hold the old one).
	packs = append(slices.Clip(packs), &packReader{name: name, f: f, idx: idx})
	s.objs.packs.Store(&packs)
	return nil
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

// writeObjectsPack writes objs to f as a pack without deltas, as
// writeRawPack does, streaming each object's content from its reader into
// the compressor: a large blob read back from the commit log (spool.go) is
// never held in memory.
func writeObjectsPack(f *os.File, objs []plumbing.EncodedObject) (Hash, *idxfile.MemoryIndex, error) {
	return writeEntriesPack(f, objs, nil)
}
