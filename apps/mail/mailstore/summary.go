package mailstore

import (
	"container/list"
	"encoding/json"
	"sync"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// DefaultSummaryCacheBytes is the summary cache's size unless Options say:
// a sixteenth of the machine's memory or an eighth of the Go memory limit,
// whichever is less, at least 2 MiB and at most 256 MiB (about 3 MiB,
// 2,500 summaries, on a 64 MiB appliance; every summary of a mailbox of
// 100k messages on a host with 4 GiB or more).
func DefaultSummaryCacheBytes() int64 {
	const lo, hi = 2 << 20, 256 << 20
	m := physicalMemory() / 16
	if b := memoryBudget() / 8; b < m {
		m = b
	}
	return min(max(m, lo), hi)
}

// Summary returns the message's summary (envelope, body structure,
// header): from the summary cache, or read from its .meta in the
// repository. The index keeps only a message's UID, dates, size, flags and
// hashes in memory, so that a mailbox of 50,000 messages fits a 64 MiB
// appliance; summaries are the bulk of what parsing gives (about 1 KB a
// message, the header most of it), and are read again when a FETCH or
// SEARCH needs them and the cache no longer has them. A summary that
// cannot be read is an empty one (and logged): FETCH answers an empty
// envelope rather than failing the whole command.
func (m *Message) Summary() *Summary {
	s := m.s
	if s == nil {
		return m.pinned
	}
	if c := s.sums.get(m.meta); c != nil {
		return c
	}
	data, err := s.st.ReadBlob(m.meta)
	var meta struct {
		Summary *Summary `json:"cache"`
	}
	if err == nil {
		err = json.Unmarshal(data, &meta)
	}
	if err != nil || meta.Summary == nil {
		if err != nil {
			s.log.Warn("mail: cannot read a message's summary", "uid", m.UID, "key", m.Key, "err", err)
		}
		return &Summary{Envelope: &imap.Envelope{}}
	}
	s.sums.put(m.meta, meta.Summary, len(data))
	return meta.Summary
}

// setSummary makes c m's summary, known without a read (an APPEND, a COPY,
// a merge), with data the .meta that holds it.
func (s *Store) setSummary(m *Message, c *Summary, data []byte) {
	m.s, m.meta = s, store.BlobHash(data)
	if c != nil {
		s.sums.put(m.meta, c, len(data))
	}
}

// summaryCache keeps recently used summaries, by the hash of the .meta
// they came from, up to a byte budget (the .meta's length stands for a
// summary's size in memory: within a factor of two of it).
type summaryCache struct {
	max int64

	mu   sync.Mutex
	size int64
	ll   *list.List
	m    map[store.Hash]*list.Element
}

type summaryEntry struct {
	h    store.Hash
	c    *Summary
	size int64
}

func newSummaryCache(max int64) *summaryCache {
	return &summaryCache{max: max, ll: list.New(), m: map[store.Hash]*list.Element{}}
}

func (c *summaryCache) get(h store.Hash) *Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[h]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*summaryEntry).c
	}
	return nil
}

func (c *summaryCache) put(h store.Hash, sum *Summary, n int) {
	size := int64(n) + 128
	if c.max <= 0 || size > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[h]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.m[h] = c.ll.PushFront(&summaryEntry{h, sum, size})
	c.size += size
	for c.size > c.max {
		e := c.ll.Back()
		se := e.Value.(*summaryEntry)
		c.ll.Remove(e)
		delete(c.m, se.h)
		c.size -= se.size
	}
}
