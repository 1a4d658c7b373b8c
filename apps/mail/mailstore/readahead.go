package mailstore

import (
	"runtime"
	"sync"
)

// readAheadWindow bounds the bytes that a ReadAhead has read and its caller
// has not taken yet (one message is always allowed, whatever its size).
const readAheadWindow = 8 << 20

// ReadAhead reads messages in parallel ahead of a caller that writes them
// out in order (FETCH of many bodies): reading a message from a pack
// (inflating it, resolving deltas) is CPU work that other cores can do while
// the caller writes the previous ones.
type ReadAhead struct {
	r     *Reader
	mb    *Mailbox
	msgs  []*Message
	slots []chan rawResult
	taken int

	tmu  sync.Mutex // taken by one worker at a time while it claims the next message
	next int

	mu       sync.Mutex
	cond     *sync.Cond
	inflight int64
	stopped  bool
	wg       sync.WaitGroup
}

type rawResult struct {
	raw []byte
	err error
}

// ReadAhead starts reading msgs (of mb) in parallel. Take them in order
// with Next; Close stops the reads that are left.
func (r *Reader) ReadAhead(mb *Mailbox, msgs []*Message) *ReadAhead {
	ra := &ReadAhead{r: r, mb: mb, msgs: msgs, slots: make([]chan rawResult, len(msgs))}
	ra.cond = sync.NewCond(&ra.mu)
	for i := range ra.slots {
		ra.slots[i] = make(chan rawResult, 1)
	}
	n := min(runtime.GOMAXPROCS(0), len(msgs))
	ra.wg.Add(n)
	for range n {
		go ra.work()
	}
	return ra
}

func (ra *ReadAhead) work() {
	defer ra.wg.Done()
	for {
		// Claim the next message and its bytes in order, so that a later
		// message never holds the window that an earlier one waits for.
		ra.tmu.Lock()
		i := ra.next
		if i >= len(ra.msgs) {
			ra.tmu.Unlock()
			return
		}
		ra.next++
		size := ra.msgs[i].Size
		ra.mu.Lock()
		for !ra.stopped && ra.inflight > 0 && ra.inflight+size > readAheadWindow {
			ra.cond.Wait()
		}
		stopped := ra.stopped
		ra.inflight += size
		ra.mu.Unlock()
		ra.tmu.Unlock()
		if stopped {
			return
		}
		raw, err := ra.r.ReadRaw(ra.mb, ra.msgs[i])
		ra.slots[i] <- rawResult{raw, err}
	}
}

// Next returns the next message's raw bytes, in the order given.
func (ra *ReadAhead) Next() ([]byte, error) {
	i := ra.taken
	ra.taken++
	res := <-ra.slots[i]
	ra.mu.Lock()
	ra.inflight -= ra.msgs[i].Size
	ra.cond.Broadcast()
	ra.mu.Unlock()
	return res.raw, res.err
}

// Close stops the reads that have not started and waits for the others.
func (ra *ReadAhead) Close() {
	ra.mu.Lock()
	ra.stopped = true
	ra.cond.Broadcast()
	ra.mu.Unlock()
	ra.wg.Wait()
}
