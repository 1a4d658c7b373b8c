package imapd

import (
	"bufio"
	"bytes"
	"math"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// Heavy SEARCHes. A SEARCH that reads messages (header fields, TEXT, BODY,
// sent dates) reads every message of the mailbox it looks at: on a large
// mailbox it allocates at the rate it can read, and holds what it is
// reading (for TEXT and BODY, a whole message, which may be large). So
// that sessions searching at once cannot push the program past its memory
// (eight clients searching a 50,000-message mailbox at once ran a 96 MiB
// appliance out of memory), only Options.HeavySearches of them run at
// once, sized from the Go memory limit (one per 16 MiB: two in a 96 MiB
// appliance, one in a 64 MiB one); the others wait for a turn, in no
// particular order. A SEARCH that the index answers (flags, UIDs,
// sequence numbers, dates, sizes, MODSEQ) never waits.

// heavySearches is the count of heavy SEARCHes that run at once: n if
// positive, else one per 16 MiB of the memory limit, from 1 to GOMAXPROCS.
func heavySearches(n int) int {
	if n > 0 {
		return n
	}
	procs := runtime.GOMAXPROCS(0)
	lim := debug.SetMemoryLimit(-1)
	if lim == math.MaxInt64 {
		return procs
	}
	return min(max(int(lim/(16<<20)), 1), procs)
}

// heavyCriteria reports whether c reads messages (their .meta or raw
// form) rather than the index alone.
func heavyCriteria(c *imap.SearchCriteria) bool {
	if len(c.Header) > 0 || len(c.Text) > 0 || len(c.Body) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		return true
	}
	for i := range c.Not {
		if heavyCriteria(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if heavyCriteria(&c.Or[i][0]) || heavyCriteria(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// acquireHeavy waits for a turn to run a heavy SEARCH (false if the server
// closed meanwhile); release it with releaseHeavy.
func (s *Server) acquireHeavy() bool {
	select {
	case s.heavy <- struct{}{}:
		return true
	default:
	}
	s.heavyWaiting.Add(1)
	defer s.heavyWaiting.Add(-1)
	select {
	case s.heavy <- struct{}{}:
		return true
	case <-s.ctx.Done():
		return false
	}
}

func (s *Server) releaseHeavy() { <-s.heavy }

// matchHeader reports whether message m has a header field key (lower
// case) whose decoded value contains pattern (lower case; any value if
// empty), reading the header alone (mailstore.Message.SearchHeader) and
// parsing it only when the pattern may be there (mayContain).
func (sc *searchCtx) matchHeader(m *mailstore.Message, key, pattern string) bool {
	hdr, ok := m.SearchHeader()
	if !ok {
		return matchValues(rawHeaderField(sc.raw(m), key), pattern)
	}
	if !mayContain(hdr, pattern) {
		return false
	}
	return matchValues(mailstore.HeaderFieldValues(hdr, key), pattern)
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
	if pattern == "" || strings.Contains(hdr, "=?") {
		return true
	}
	for i := 0; i < len(pattern); i++ {
		if c := pattern[i]; c >= 0x80 || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			return true
		}
	}
	for i := 0; i < len(hdr); i++ {
		if hdr[i] >= 0x80 {
			return true
		}
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
			if err != nil {
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
