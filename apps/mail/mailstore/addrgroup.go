package mailstore

import (
	"mime"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// addGroups puts the groups of RFC 5322 3.4 (display-name ":"
// [group-list] ";") back into env's address lists, where
// imapserver.ExtractEnvelope drops them (it lists a group's members as
// plain addresses and an empty group as nothing). In an ENVELOPE a group
// is its members between a start marker (NIL NIL "name" NIL) and an end
// marker (NIL NIL NIL NIL) (RFC 3501 7.4.2); go-imap writes the start
// for an Address with a Mailbox and no Host and the end for a zero one.
// Only headers with a group are read again.
func addGroups(h textproto.Header, env *imap.Envelope) {
	for _, f := range []struct {
		key string
		dst *[]imap.Address
	}{{"From", &env.From}, {"Sender", &env.Sender}, {"Reply-To", &env.ReplyTo}, {"To", &env.To}, {"Cc", &env.Cc}, {"Bcc", &env.Bcc}} {
		v := h.Get(f.key)
		if !strings.Contains(v, ":") {
			continue
		}
		if l, ok := groupList(v); ok {
			*f.dst = l
		}
	}
}

// groupList parses an address list with groups (ok is false if it has
// none). A mailbox that does not parse is left out, as ExtractEnvelope
// leaves it out; a group without its ";" ends with the list.
func groupList(v string) (l []imap.Address, ok bool) {
	mailbox := func(s string) {
		if strings.TrimSpace(s) == "" {
			return
		}
		if a, err := mail.ParseAddress(s); err == nil {
			if addr, ok := imapAddress(a); ok {
				l = append(l, addr)
			}
		}
	}
	members := func(s string) {
		if strings.TrimSpace(s) == "" {
			return
		}
		if as, err := mail.ParseAddressList(s); err == nil {
			for _, a := range as {
				if addr, ok := imapAddress(a); ok {
					l = append(l, addr)
				}
			}
			return
		}
		for _, m := range splitTop(s) { // one bad member loses only itself
			mailbox(m)
		}
	}
	inGroup := false
	start, groupStart := 0, 0 // of the entry (mailbox or group) and of the group's members
	eachTop(v, func(i int, c byte) {
		switch {
		case c == ':' && !inGroup:
			ok = true
			name := groupName(v[start:i])
			if name == "" {
				name = "undisclosed-recipients" // a start marker needs a name
			}
			l = append(l, imap.Address{Mailbox: name})
			inGroup, groupStart = true, i+1
		case c == ';' && inGroup:
			members(v[groupStart:i])
			l = append(l, imap.Address{})
			inGroup, start = false, i+1
		case c == ',' && !inGroup:
			mailbox(v[start:i])
			start = i + 1
		}
	})
	if inGroup {
		members(v[groupStart:])
		l = append(l, imap.Address{})
	} else {
		mailbox(v[start:])
	}
	return l, ok
}

// eachTop calls fn for each byte of s outside quoted strings, comments
// and <...> (RFC 5322 3.2.4, 3.2.2, 3.4).
func eachTop(s string, fn func(i int, c byte)) {
	depth, quoted, esc, angle := 0, false, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case c == '\\' && (quoted || depth > 0):
			esc = true
		case quoted:
			quoted = c != '"'
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case angle:
		default:
			fn(i, c)
		}
	}
}

// splitTop splits s at the commas outside quotes, comments and <...>.
func splitTop(s string) []string {
	var out []string
	start := 0
	eachTop(s, func(i int, c byte) {
		if c == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	})
	return append(out, s[start:])
}

// groupName is a group's display name as a person reads it: comments
// dropped, quotes and their escapes removed, encoded words decoded.
func groupName(s string) string {
	var b strings.Builder
	depth, quoted, esc := 0, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			b.WriteByte(c)
			esc = false
		case c == '\\' && (quoted || depth > 0):
			esc = true
		case quoted && c == '"':
			quoted = false
		case quoted:
			b.WriteByte(c)
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		default:
			b.WriteByte(c)
		}
	}
	name := strings.Join(strings.Fields(b.String()), " ")
	if dec, err := new(mime.WordDecoder).DecodeHeader(name); err == nil {
		name = dec
	}
	return name
}

// imapAddress is a parsed address as ENVELOPE has it: the local part and
// the domain apart (at the last "@": a quoted local part may have one).
func imapAddress(a *mail.Address) (imap.Address, bool) {
	i := strings.LastIndexByte(a.Address, '@')
	if i < 0 {
		return imap.Address{}, false
	}
	return imap.Address{Name: a.Name, Mailbox: a.Address[:i], Host: a.Address[i+1:]}, true
}
