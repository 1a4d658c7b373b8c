package imapd

import (
	"bufio"
	"bytes"
	"math"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// Heavy SEARCHes. A SEARCH that reads messages reads every message of
// the mailbox it looks at: on a large mailbox it allocates at the rate it
// can read, and holds what it is reading. So that sessions searching at
// once cannot push the program past its memory (eight clients searching a
// 50,000-message mailbox at once ran a 96 MiB appliance out of memory),
// they take turns, sized from the Go memory limit, and the others wait,
// in no particular order:
//
//   - TEXT and BODY hold a whole message (which may be large) and its
//     decoded text: Options.BodySearches at once, one per 16 MiB of the
//     limit (two in a 96 MiB appliance, one in a 64 MiB one).
//   - Header fields (FROM, SUBJECT, HEADER) and sent dates hold a header
//     at a time: Options.HeaderSearches at once, one per 4 MiB (ten in a
//     96 MiB appliance). Sessions that search at once share what they
//     read through the header cache (mailstore's SearchHeader), so that
//     fewer turns would mean more reads, not less memory.
//
// A SEARCH that the index answers (flags, UIDs, sequence numbers, dates,
// sizes, MODSEQ) never waits.

// turns is a bounded count of SEARCHes under way.
type turns struct {
	ch      chan struct{}
	waiting atomic.Int32 // how many wait for a turn
}

// newTurns makes n turns if n is positive, else one per per bytes of the
// Go memory limit, from lo to hi, or none if there is no limit.
func newTurns(n int, per int64, lo, hi, none int) *turns {
	if n <= 0 {
		n = none
		if lim := debug.SetMemoryLimit(-1); lim != math.MaxInt64 {
			n = int(min(max(lim/per, int64(lo)), int64(hi)))
		}
	}
	return &turns{ch: make(chan struct{}, max(n, 1))}
}

// acquire waits for a turn (false if done is closed first); give it back
// with release.
func (t *turns) acquire(done <-chan struct{}) bool {
	select {
	case t.ch <- struct{}{}:
		return true
	default:
	}
	t.waiting.Add(1)
	defer t.waiting.Add(-1)
	select {
	case t.ch <- struct{}{}:
		return true
	case <-done:
		return false
	}
}

func (t *turns) release() { <-t.ch }

// searchTurns is what SEARCH c waits for: the body turns if it reads
// whole messages, the header turns if it reads headers, nil if the index
// answers it.
func (s *Server) searchTurns(c *imap.SearchCriteria) *turns {
	switch searchReads(c) {
	case readsBodies:
		return s.bodySearches
	case readsHeaders:
		return s.headerSearches
	}
	return nil
}

const (
	readsIndex = iota
	readsHeaders
	readsBodies
)

// searchReads is what c reads beside the index: readsHeaders (the .meta's
// header or envelope), readsBodies (raw messages) or readsIndex.
func searchReads(c *imap.SearchCriteria) int {
	r := readsIndex
	if len(c.Text) > 0 || len(c.Body) > 0 {
		return readsBodies
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		r = readsHeaders
	}
	for i := range c.Not {
		r = max(r, searchReads(&c.Not[i]))
	}
	for i := range c.Or {
		r = max(r, searchReads(&c.Or[i][0]), searchReads(&c.Or[i][1]))
	}
	return r
}

// matchHeader reports whether message m has a header field key (lower
// case) whose decoded value contains pattern (lower case; any value if
// empty): from the index of header fields kept with the message's summary
// if the summary cache has it (on a host, or for a small mailbox), else
// from the header alone (mailstore.Message.SearchHeader), parsed only
// when the pattern may be there (mayContain).
func (sc *searchCtx) matchHeader(m *mailstore.Message, key, pattern string) bool {
	if vals, ok := m.CachedHeaderField(key); ok {
		return matchValues(vals, pattern)
	}
	hdr, ok := m.SearchHeader()
	if !ok {
		return matchValues(rawHeaderField(sc.raw(m), key), pattern)
	}
	if !mayContain(hdr, pattern) {
		return false
	}
	if simpleMatch(hdr, pattern) {
		return fieldContainsASCII(hdr, key, pattern)
	}
	return matchValues(mailstore.HeaderFieldValues(hdr, key), pattern)
}

// simpleMatch reports whether a header field's value in hdr contains
// pattern exactly when one of its raw lines does, ignoring ASCII case:
// when hdr is ASCII without encoded words (decoding changes nothing) and
// pattern is ASCII without white space (it cannot span a folded line).
func simpleMatch(hdr, pattern string) bool {
	if pattern == "" || strings.Contains(hdr, "=?") {
		return false
	}
	for i := 0; i < len(pattern); i++ {
		if c := pattern[i]; c >= 0x80 || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			return false
		}
	}
	for i := 0; i < len(hdr); i++ {
		if hdr[i] >= 0x80 {
			return false
		}
	}
	return true
}

// fieldContainsASCII reports whether a field key (lower case) of hdr has
// pattern (lower case) in its value, ignoring ASCII case, line by line
// without parsing the header (see simpleMatch for when that is exact).
func fieldContainsASCII(hdr, key, pattern string) bool {
	in := false
	for len(hdr) > 0 {
		line := hdr
		if i := strings.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i], hdr[i+1:]
		} else {
			hdr = ""
		}
		line = strings.TrimSuffix(line, "\r")
		switch {
		case line == "":
			return false // the end of the header
		case line[0] == ' ' || line[0] == '\t':
			// A continuation of the field before.
		default:
			in = false
			if len(line) > len(key) && strings.EqualFold(line[:len(key)], key) {
				if rest := strings.TrimLeft(line[len(key):], " \t"); rest != "" && rest[0] == ':' {
					in, line = true, rest[1:]
				}
			}
		}
		if in && containsFoldASCII(line, pattern) {
			return true
		}
	}
	return false
}

// mayContain reports whether a header field's decoded, lower-cased value
// in hdr may contain pattern (lower case): false only where that cannot
// be, without parsing or copying hdr. That is so when hdr is ASCII without
// encoded words (so that decoding changes nothing and lower-casing is
// ASCII's), the pattern is ASCII without white space (so that it cannot
// span a folded line, which unfolding joins with a space), and hdr does
// not contain the pattern, ignoring ASCII case. Most messages of a SEARCH
// FROM or SUBJECT are ruled out so.
func mayContain(hdr, pattern string) bool {
	if !simpleMatch(hdr, pattern) {
		return true
	}
	return containsFoldASCII(hdr, pattern)
}

// containsFoldASCII reports whether s contains sub (ASCII, lower case),
// ignoring the case of ASCII letters in s.
func containsFoldASCII(s, sub string) bool {
	if len(sub) == 0 {
		return true
	}
	first := sub[0]
	upper := first
	if 'a' <= first && first <= 'z' {
		upper -= 'a' - 'A'
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		if c := s[i]; c != first && c != upper {
			continue
		}
		j := 1
		for ; j < len(sub); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

// lowerAll is ss lower-cased (a new slice).
func lowerAll(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, v := range ss {
		out[i] = strings.ToLower(v)
	}
	return out
}

// maxKeptText bounds the buffer of decoded text that a SEARCH keeps from
// one message to the next.
const maxKeptText = 1 << 20

// matchEntity reports whether pattern (lower case) is in the text of raw
// (in its header fields too if includeHeader: TEXT rather than BODY),
// ignoring case: in every text part (text/*, message/*, or no type),
// transfer encoding and charset decoded (by go-message), or in raw itself
// if it cannot be parsed. One reader and one text buffer serve every
// message of the SEARCH.
func (sc *searchCtx) matchEntity(raw []byte, pattern string, includeHeader bool) bool {
	if pattern == "" {
		return true
	}
	if raw == nil {
		return false
	}
	if sc.br == nil {
		sc.br = bufio.NewReaderSize(nil, 4096)
	}
	// gomessage.Read, but through the SEARCH's own reader (Read makes
	// one, 4 KiB, for every message); the header is bounded by raw.
	sc.br.Reset(bytes.NewReader(raw))
	var e *gomessage.Entity
	if h, err := textproto.ReadHeader(sc.br); err == nil {
		e, _ = gomessage.New(gomessage.Header{Header: h}, sc.br)
	}
	if e == nil {
		return bytes.Contains(bytes.ToLower(raw), []byte(pattern))
	}
	return sc.matchPart(e, pattern, includeHeader)
}

func (sc *searchCtx) matchPart(e *gomessage.Entity, pattern string, includeHeader bool) bool {
	if includeHeader {
		fields := e.Header.Fields()
		for fields.Next() {
			v, _ := fields.Text()
			if strings.Contains(strings.ToLower(v), pattern) {
				return true
			}
		}
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil && (part == nil || !gomessage.IsUnknownCharset(err)) {
				return false
			}
			if sc.matchPart(part, pattern, includeHeader) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	buf := bytes.NewBuffer(sc.text[:0])
	_, err := buf.ReadFrom(e.Body)
	text := buf.Bytes()
	if cap(text) <= maxKeptText {
		sc.text = text[:0]
	}
	if err != nil && len(text) == 0 {
		return false
	}
	return bytes.Contains(lowerText(text), []byte(pattern))
}

// lowerText lower-cases text: in place if it is ASCII, else a copy.
func lowerText(text []byte) []byte {
	for _, c := range text {
		if c >= 0x80 {
			return bytes.ToLower(text)
		}
	}
	for i, c := range text {
		if 'A' <= c && c <= 'Z' {
			text[i] = c + 'a' - 'A'
		}
	}
	return text
}
