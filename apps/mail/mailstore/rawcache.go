package mailstore

import (
	"container/list"
	"math"
	"runtime/debug"
	"sync"
)

// DefaultRawCacheBytes is the raw cache's size unless Options say: an
// eighth of the machine's memory or of the Go runtime's memory limit,
// whichever is less, at least 2 MiB and at most 256 MiB (about 22 MiB on
// a 256 MiB appliance, about 3 MiB on a 64 MiB one, whose limit is 25
// MiB). It
// plays the part that the kernel's page cache plays for a server that
// keeps messages in files (Dovecot's maildir): a message read from the
// repository is inflated, and its deltas resolved, again on every read.
func DefaultRawCacheBytes() int64 {
	const lo, hi = 2 << 20, 256 << 20
	return min(max(memoryBudget()/8, lo), hi)
}

// memoryBudget is the machine's memory, or the Go runtime's memory limit
// if that is less (the appliance sets it from the VM's memory, less what
// the initramfs holds).
func memoryBudget() int64 {
	m := physicalMemory()
	if lim := debug.SetMemoryLimit(-1); lim < math.MaxInt64 && (m == 0 || lim < m) {
		m = lim
	}
	return m
}

// maxCachedRaw bounds one cached message: a large message is read from the
// repository each time rather than pinning its size in memory (and
// pushing out hundreds of small ones).
const maxCachedRaw = 2 << 20

// rawCache keeps recently read or written raw messages, up to a byte
// budget, so that clients that fetch what just arrived (or fetch a message
// twice) do not inflate it from the repository again.
type rawCache struct {
	max int64

	mu   sync.Mutex
	size int64
	ll   *list.List
	m    map[string]*list.Element
}

type rawEntry struct {
	key  string
	data []byte
}

func newRawCache(max int64) *rawCache {
	return &rawCache{max: max, ll: list.New(), m: map[string]*list.Element{}}
}

func (c *rawCache) get(key string) []byte {
	if c.max <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*rawEntry).data
	}
	return nil
}

// put adds data under key; unless evict is set, only if it fits without
// pushing anything out.
func (c *rawCache) put(key string, data []byte, evict bool) {
	if c.max <= 0 || int64(len(data)) > min(c.max/8, maxCachedRaw) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		c.ll.MoveToFront(e)
		return
	}
	if !evict && c.size+int64(len(data)) > c.max {
		return
	}
	c.m[key] = c.ll.PushFront(&rawEntry{key, data})
	c.size += int64(len(data))
	for c.size > c.max {
		e := c.ll.Back()
		re := e.Value.(*rawEntry)
		c.ll.Remove(e)
		delete(c.m, re.key)
		c.size -= int64(len(re.data))
	}
}
