package mailstore

import (
	"encoding/json"

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
		return nil // a Message made outside a Store
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
// they came from, up to a byte budget. A summary costs about twice its
// .meta in memory once decoded and its header parsed for SEARCH
// (HeaderField): it is charged so. (Charged its .meta's length alone, the
// cache of a 96 MiB appliance held twice its budget when eight clients
// searched 50,000 messages at once, and the VM ran out of memory.)
type summaryCache struct {
	lru *byteLRU[store.Hash, *Summary]
}

func newSummaryCache(max int64) *summaryCache {
	return &summaryCache{newByteLRU[store.Hash, *Summary](max)}
}

func (c *summaryCache) get(h store.Hash) *Summary {
	sum, _ := c.lru.get(h)
	return sum
}

func (c *summaryCache) put(h store.Hash, sum *Summary, n int) {
	if size := 2*int64(n) + 256; size <= c.lru.max/4 {
		c.lru.put(h, sum, size, true)
	}
}
