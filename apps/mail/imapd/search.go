package imapd

import (
	"strings"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

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
