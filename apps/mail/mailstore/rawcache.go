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
type rawCache struct{ lru *byteLRU[string, []byte] }

func newRawCache(max int64) *rawCache { return &rawCache{newByteLRU[string, []byte](max)} }

func (c *rawCache) get(key string) []byte {
	b, _ := c.lru.get(key)
	return b
}

// put adds data under key; unless evict is set, only if it fits without
// pushing anything out.
func (c *rawCache) put(key string, data []byte, evict bool) {
	if int64(len(data)) > min(c.lru.max/8, maxCachedRaw) {
		return
	}
	c.lru.put(key, data, int64(len(data)), evict)
}

// byteLRU is a map of values with sizes, up to a byte budget (none if the
// budget is not positive), that drops the least recently used first.
type byteLRU[K comparable, V any] struct {
	max int64

	mu   sync.Mutex
	size int64
	ll   *list.List
	m    map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key  K
	val  V
	size int64
}

func newByteLRU[K comparable, V any](max int64) *byteLRU[K, V] {
	return &byteLRU[K, V]{max: max, ll: list.New(), m: map[K]*list.Element{}}
}

func (c *byteLRU[K, V]) get(key K) (V, bool) {
	var zero V
	if c.max <= 0 {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruEntry[K, V]).val, true
	}
	return zero, false
}

// put adds val of size bytes under key (a key already there is only
// marked used); unless evict is set, only if it fits without pushing
// anything out.
func (c *byteLRU[K, V]) put(key K, val V, size int64, evict bool) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		c.ll.MoveToFront(e)
		return
	}
	if !evict && c.size+size > c.max {
		return
	}
	c.m[key] = c.ll.PushFront(&lruEntry[K, V]{key, val, size})
	c.size += size
	for c.size > c.max {
		e := c.ll.Back()
		le := e.Value.(*lruEntry[K, V])
		c.ll.Remove(e)
		delete(c.m, le.key)
		c.size -= le.size
	}
}
