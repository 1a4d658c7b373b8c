package imapd

import (
	"bytes"
	"strconv"
	"sync"

	"github.com/emersion/go-imap/v2"
)

// fetchFix rewrites two things imapserver's encoder writes in a FETCH
// response that the grammar does not have, as the response streams by
// (outScan hands it the bytes of the lines it passes on, never a
// literal's data):
//
//   - a space between the addresses of an address list, in ENVELOPE and
//     in the envelope of a message/rfc822 part's BODYSTRUCTURE: RFC 3501's
//     address list is "(" 1*address ")";
//   - the origin octet of a partial BINARY fetch: "BINARY[1]<0> ~{n}"
//     (RFC 3516 4.2, 9), which imapserver leaves out; the offsets come
//     from the Fetch handler in the order it writes the sections
//     (binaryPartials).
//
// It runs only on connections that have fetched ENVELOPE, BODYSTRUCTURE
// or a partial BINARY (proto.fix), so the FETCH FLAGS of most sessions
// pass untouched.
type fetchFix struct {
	on      bool
	quoted  bool
	esc     bool
	stack   []fixFrame
	atom    []byte // the item name being read at the items' level
	last    string // the last item name there
	str     []byte // a quoted string being read in a body structure
	partial *binaryPartials
}

type fixKind uint8

const (
	fixItems fixKind = iota // the FETCH response's list of items
	fixEnvelope
	fixAddrs
	fixBody  // a body structure (one part)
	fixOther // any other list
)

type fixFrame struct {
	kind fixKind
	n    int       // elements before the one being read
	flat bool      // an element that is not a list was seen (a body: not multipart)
	s    [2]string // a body's first two strings (type, subtype)
}

// maxFixAtom bounds an item name kept (BINARY[1.2.3.4]).
const maxFixAtom = 64

// start is called at the start of a FETCH response line.
func (f *fetchFix) start() {
	f.on, f.quoted, f.esc = true, false, false
	f.stack = append(f.stack[:0], fixFrame{kind: fixOther})
	f.atom, f.last, f.str = f.atom[:0], "", f.str[:0]
}

// stop is called at the end of the line.
func (f *fetchFix) stop() { f.on = false }

// apply appends b, rewritten, to out.
func (f *fetchFix) apply(out, b []byte) []byte {
	for _, c := range b {
		top := &f.stack[len(f.stack)-1]
		if f.quoted {
			switch {
			case f.esc:
				f.esc = false
				f.keep(top, c)
			case c == '\\':
				f.esc = true
			case c == '"':
				f.quoted = false
				if top.kind == fixBody && top.n < 2 {
					top.s[top.n] = string(f.str)
				}
			default:
				f.keep(top, c)
			}
			out = append(out, c)
			continue
		}
		switch c {
		case '"':
			f.quoted = true
			f.str = f.str[:0]
			top.flat = true
		case '(':
			kind := fixOther
			switch top.kind {
			case fixItems:
				switch f.atomOrLast() {
				case "ENVELOPE":
					kind = fixEnvelope
				case "BODY", "BODYSTRUCTURE":
					kind = fixBody
				}
			case fixEnvelope:
				kind = fixAddrs
			case fixBody:
				switch {
				case !top.flat:
					kind = fixBody // a part of a multipart
				case eqFold(top.s[0], "MESSAGE") && eqFold(top.s[1], "RFC822") && top.n == 7:
					kind = fixEnvelope
				case eqFold(top.s[0], "MESSAGE") && eqFold(top.s[1], "RFC822") && top.n == 8:
					kind = fixBody
				}
			}
			if len(f.stack) == 1 {
				kind = fixItems // "* N FETCH (": the first list
			}
			f.atom = f.atom[:0]
			f.stack = append(f.stack, fixFrame{kind: kind})
		case ')':
			if len(f.stack) > 1 {
				f.stack = f.stack[:len(f.stack)-1]
			}
		case ' ':
			if top.kind == fixAddrs {
				continue // between two addresses: dropped
			}
			if top.kind == fixItems && len(f.atom) > 0 {
				out = f.binaryOrigin(out)
				f.last = string(f.atom)
				f.atom = f.atom[:0]
			}
			top.n++
		default:
			top.flat = true
			if top.kind == fixItems && len(f.atom) < maxFixAtom {
				f.atom = append(f.atom, c)
			}
		}
		out = append(out, c)
	}
	return out
}

// keep collects a body structure's type and subtype strings.
func (f *fetchFix) keep(top *fixFrame, c byte) {
	if top.kind == fixBody && top.n < 2 && len(f.str) < 16 {
		f.str = append(f.str, c)
	}
}

// atomOrLast is the item name before a list: "ENVELOPE (" has it as the
// last name (the space ended it).
func (f *fetchFix) atomOrLast() string {
	if len(f.atom) > 0 {
		return string(f.atom)
	}
	return f.last
}

// binaryOrigin writes "<offset>" after a BINARY[part] item name ending
// now, if the handler asked for that part partially.
func (f *fetchFix) binaryOrigin(out []byte) []byte {
	a := f.atom
	if f.partial == nil || !bytes.HasPrefix(a, []byte("BINARY[")) || a[len(a)-1] != ']' {
		return out
	}
	if off, ok := f.partial.take(string(a[len("BINARY[") : len(a)-1])); ok {
		out = append(out, '<')
		out = strconv.AppendInt(out, off, 10)
		out = append(out, '>')
	}
	return out
}

func eqFold(a, b string) bool { return len(a) == len(b) && bytes.EqualFold([]byte(a), []byte(b)) }

// binaryPartials are the origins of the partial BINARY sections the Fetch
// handler is writing, in order.
type binaryPartials struct {
	mu sync.Mutex
	q  []binaryPartial
}

type binaryPartial struct {
	part string // "1.2"
	off  int64
}

func (b *binaryPartials) reset() {
	b.mu.Lock()
	b.q = nil
	b.mu.Unlock()
}

func (b *binaryPartials) push(part string, off int64) {
	b.mu.Lock()
	b.q = append(b.q, binaryPartial{part, off})
	b.mu.Unlock()
}

// take pops the first origin if it is for part.
func (b *binaryPartials) take(part string) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.q) == 0 || b.q[0].part != part {
		return 0, false
	}
	off := b.q[0].off
	b.q = b.q[1:]
	if len(b.q) == 0 {
		b.q = nil
	}
	return off, true
}

// needsFix says whether a FETCH asks for what fetchFix rewrites.
func needsFix(o *imap.FetchOptions) bool {
	if o.Envelope || o.BodyStructure != nil {
		return true
	}
	for _, bs := range o.BinarySection {
		if bs.Partial != nil {
			return true
		}
	}
	return false
}

// partName is a section's part as the encoder writes it ("1.2").
func partName(part []int) string {
	b := make([]byte, 0, 8)
	for i, n := range part {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendInt(b, int64(n), 10)
	}
	return string(b)
}
