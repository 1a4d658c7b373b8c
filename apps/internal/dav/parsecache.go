package dav

import (
	"net/http"
	"strings"
	"sync"

	"github.com/nymote/nymote/store"
)

// ParseCache keeps the parses of objects by blob hash (the ETag), so that
// queries and partial renderings need not parse an object again. It is the
// one parse cache of every kind: bounded by the size of the objects whose
// parses it holds (a parse takes some times that), in two generations: when
// the newer is full it becomes the older, and the older is dropped. A parse
// found in the older generation moves to the newer.
type ParseCache[T any] struct {
	parse func([]byte) (T, error)
	max   int

	mu       sync.Mutex
	cur, old map[store.Hash]parsed[T]
	size     int
}

type parsed[T any] struct {
	v T
	n int
}

// ParseCacheBytes is the default bound of a ParseCache: the bytes of
// objects whose parses it holds. A parsed vCard or iCalendar object takes
// about ten times its size, so the cache holds some tens of megabytes at
// most; a few thousand typical objects fit.
const ParseCacheBytes = 4 << 20

// NewParseCache returns a cache of parse's results holding the parses of at
// most maxBytes of objects (zero: ParseCacheBytes).
func NewParseCache[T any](maxBytes int, parse func([]byte) (T, error)) *ParseCache[T] {
	if maxBytes <= 0 {
		maxBytes = ParseCacheBytes
	}
	return &ParseCache[T]{parse: parse, max: maxBytes}
}

// Put keeps v, the parse of size bytes with blob hash h (such as an object
// just validated: the first query after a PUT need not parse it again).
// Callers must not change v afterwards.
func (c *ParseCache[T]) Put(h store.Hash, size int, v T) {
	c.mu.Lock()
	c.putLocked(h, parsed[T]{v, size})
	c.mu.Unlock()
}

func (c *ParseCache[T]) putLocked(h store.Hash, p parsed[T]) {
	if c.cur == nil {
		c.cur = map[store.Hash]parsed[T]{}
	}
	if _, ok := c.cur[h]; ok {
		return
	}
	if c.size+p.n > c.max/2 {
		c.old, c.cur, c.size = c.cur, map[store.Hash]parsed[T]{}, 0
	}
	c.cur[h] = p
	c.size += p.n
}

// Get returns the parse of o, from the cache or parsed now (and kept).
// Callers must not change it.
func (c *ParseCache[T]) Get(o *Object) (T, error) {
	c.mu.Lock()
	p, ok := c.cur[o.ETag]
	if !ok {
		if p, ok = c.old[o.ETag]; ok {
			c.putLocked(o.ETag, p)
		}
	}
	c.mu.Unlock()
	if ok {
		return p.v, nil
	}
	v, err := c.parse(o.Data)
	if err != nil {
		return v, err
	}
	c.Put(o.ETag, len(o.Data), v)
	return v, nil
}

// Len is the number of parses held.
func (c *ParseCache[T]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}

// TextMatch evaluates a text-match element of the kind's queries (RFC 4791
// section 9.7.5, RFC 6352 section 10.5.4) against a value: collations
// i;unicode-casemap, i;ascii-casemap (the default) and i;octet; a
// substring match, or where the kind takes match-type (p.MatchTypes)
// equals, contains (the default), starts-with or ends-with;
// negate-condition.
//
// An unsupported collation is the supported-collation precondition in the
// kind's namespace, with 403 Forbidden: both RFCs make it a precondition of
// the query REPORT (RFC 4791 sections 7.5.1 and 7.8, RFC 6352 sections 8.3
// and 8.6), and a failed method precondition is 403 when the request would
// always fail as it is (RFC 4791 section 1.3 after RFC 3253 section 1.6;
// RFC 6352 uses the same convention); 412 belongs to conditional headers
// (RFC 9110 section 15.5.13).
func (p *Profile) TextMatch(tm *Node, value string) (bool, error) {
	want := tm.Text
	switch coll := tm.AttrValue("collation"); coll {
	case "", "i;unicode-casemap", "i;ascii-casemap":
		want, value = strings.ToLower(want), strings.ToLower(value)
	case "i;octet":
	default:
		return false, Errorf(http.StatusForbidden, p.precond("supported-collation"), "unsupported collation %q: this server has i;ascii-casemap, i;unicode-casemap and i;octet", coll)
	}
	var ok bool
	mt := ""
	if p.MatchTypes {
		mt = tm.AttrValue("match-type")
	}
	switch mt {
	case "", "contains":
		ok = strings.Contains(value, want)
	case "equals":
		ok = value == want
	case "starts-with":
		ok = strings.HasPrefix(value, want)
	case "ends-with":
		ok = strings.HasSuffix(value, want)
	default:
		return false, Errorf(http.StatusBadRequest, errNoCond, "unknown match-type %q in text-match: want equals, contains, starts-with or ends-with", mt)
	}
	if tm.AttrValue("negate-condition") == "yes" {
		ok = !ok
	}
	return ok, nil
}
