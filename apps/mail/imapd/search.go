package imapd

import (
	"math"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/emersion/go-imap/v2"

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
