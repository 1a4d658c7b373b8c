package dav

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// XML namespaces this package speaks.
const (
	NSDAV     = "DAV:"
	NSCardDAV = "urn:ietf:params:xml:ns:carddav"
	NSCalDAV  = "urn:ietf:params:xml:ns:caldav"
	NSCS      = "http://calendarserver.org/ns/"
	NSApple   = "http://apple.com/ns/ical/"
	NSNymote  = "urn:x-nymote:dav"
)

// prefixes are the namespace prefixes declared on every multistatus root.
var prefixes = []struct{ ns, prefix string }{
	{NSDAV, "d"}, {NSCardDAV, "card"}, {NSCalDAV, "cal"}, {NSCS, "cs"}, {NSApple, "ical"}, {NSNymote, "n"},
}

func prefixOf(ns string) (string, bool) {
	for _, p := range prefixes {
		if p.ns == ns {
			return p.prefix, true
		}
	}
	return "", false
}

// Name is a shorthand for an xml.Name.
func Name(ns, local string) xml.Name { return xml.Name{Space: ns, Local: local} }

// Node is an element of a parsed XML request body, with namespaces resolved.
type Node struct {
	Name     xml.Name
	Attr     []xml.Attr
	Children []*Node
	// Text is the element's own character data, concatenated.
	Text string
	// Raw is the element's content re-serialised with explicit namespace
	// declarations (so it can be stored and sent back as a dead property).
	Raw string
}

// Child returns the first child named n, or nil.
func (n *Node) Child(name xml.Name) *Node {
	if n == nil {
		return nil
	}
	for _, c := range n.Children {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// All returns the children named name.
func (n *Node) All(name xml.Name) []*Node {
	if n == nil {
		return nil
	}
	var out []*Node
	for _, c := range n.Children {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// AttrValue returns the value of the attribute with the local name, or "".
func (n *Node) AttrValue(local string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Name.Local == local && (a.Name.Space == "" || a.Name.Space == n.Name.Space) {
			return a.Value
		}
	}
	return ""
}

// errEmptyBody says a request had no XML body.
var errEmptyBody = errors.New("empty body")

// ParseXML parses an XML document into a Node tree. An empty document gives
// errEmptyBody.
func ParseXML(r io.Reader) (*Node, error) {
	dec := xml.NewDecoder(r)
	var stack []*Node
	var root *Node
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("malformed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space == "" && strings.Contains(t.Name.Local, ":") {
				return nil, fmt.Errorf("malformed XML: undeclared namespace prefix in <%s>", t.Name.Local)
			}
			n := &Node{Name: t.Name}
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" && a.Value == "" {
					// XML Namespaces 1.0: a prefix cannot be bound to "".
					return nil, fmt.Errorf("malformed XML: prefix %q bound to an empty namespace", a.Name.Local)
				}
				if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
					continue
				}
				n.Attr = append(n.Attr, a)
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, n)
			} else if root != nil {
				return nil, errors.New("malformed XML: more than one root element")
			} else {
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].Text += string(t)
			} else if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("malformed XML: text outside the root element")
			}
		}
	}
	if root == nil {
		return nil, errEmptyBody
	}
	if len(stack) != 0 {
		return nil, errors.New("malformed XML: unclosed element")
	}
	fillRaw(root)
	return root, nil
}

// fillRaw sets Raw on every node.
func fillRaw(n *Node) {
	var b strings.Builder
	writeContent(&b, n)
	n.Raw = b.String()
	for _, c := range n.Children {
		fillRaw(c)
	}
}

// writeContent writes n's content (text and children), children with
// explicit namespace declarations.
func writeContent(b *strings.Builder, n *Node) {
	if len(n.Children) == 0 {
		xml.EscapeText(b, []byte(n.Text))
		return
	}
	// Mixed content: keep non-whitespace text, then the children.
	if t := strings.TrimSpace(n.Text); t != "" {
		xml.EscapeText(b, []byte(n.Text))
	}
	for _, c := range n.Children {
		writeElement(b, c)
	}
}

func writeElement(b *strings.Builder, n *Node) {
	open, close := tagFor(n.Name)
	b.WriteString(open[:len(open)-1])
	for i, a := range n.Attr {
		if a.Name.Space != "" {
			fmt.Fprintf(b, ` xmlns:a%d="%s" a%d:%s="`, i, escAttr(a.Name.Space), i, a.Name.Local)
		} else {
			fmt.Fprintf(b, ` %s="`, a.Name.Local)
		}
		b.WriteString(escAttr(a.Value))
		b.WriteString(`"`)
	}
	b.WriteString(">")
	writeContent(b, n)
	b.WriteString(close)
}

func escAttr(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// tagFor returns the opening and closing tags of an element named n, with a
// namespace declaration on the opening tag when n's namespace has no
// well-known prefix.
func tagFor(n xml.Name) (open, close string) {
	if p, ok := prefixOf(n.Space); ok {
		return "<" + p + ":" + n.Local + ">", "</" + p + ":" + n.Local + ">"
	}
	if n.Space == "" {
		return `<` + n.Local + ` xmlns="">`, "</" + n.Local + ">"
	}
	return `<x:` + n.Local + ` xmlns:x="` + escAttr(n.Space) + `">`, "</x:" + n.Local + ">"
}

// Elem renders an element with already-serialised inner XML.
func Elem(n xml.Name, inner string) string {
	return string(appendElem(make([]byte, 0, 2*len(n.Local)+len(inner)+8), n, inner))
}

// appendElem appends the element Elem renders. A name with a well-known
// prefix (nearly every one in a multistatus) is written piece by piece,
// without making its tags as strings first.
func appendElem(b []byte, n xml.Name, inner string) []byte {
	p, ok := prefixOf(n.Space)
	if !ok {
		open, close := tagFor(n)
		if inner == "" {
			return append(append(b, open[:len(open)-1]...), "/>"...)
		}
		return append(append(append(b, open...), inner...), close...)
	}
	b = append(b, '<')
	b = append(b, p...)
	b = append(b, ':')
	b = append(b, n.Local...)
	if inner == "" {
		return append(b, "/>"...)
	}
	b = append(b, '>')
	b = append(b, inner...)
	b = append(b, "</"...)
	b = append(b, p...)
	b = append(b, ':')
	b = append(b, n.Local...)
	return append(b, '>')
}

// Text escapes s as XML character data: &, < and > as entities, CR as a
// character reference (so CRLF line ends survive XML parsing), and what
// XML cannot carry (other control characters, invalid UTF-8) as U+FFFD.
func Text(s string) string {
	if textClean(s) {
		return s
	}
	return string(appendEscaped(make([]byte, 0, len(s)+len(s)/16), s))
}

func textClean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '&' || c == '<' || c == '>' || (c < 0x20 && c != '\n' && c != '\t') || c >= 0x80 {
			return false
		}
	}
	return true
}

// appendText appends s escaped as Text does.
func appendText(b []byte, s string) []byte {
	if textClean(s) {
		return append(b, s...)
	}
	return appendEscaped(b, s)
}

// appendEscaped appends s with what Text escapes escaped.
func appendEscaped(b []byte, s string) []byte {
	for _, r := range s {
		switch {
		case r == '&':
			b = append(b, "&amp;"...)
		case r == '<':
			b = append(b, "&lt;"...)
		case r == '>':
			b = append(b, "&gt;"...)
		case r == '\r':
			b = append(b, "&#13;"...)
		case r == '\n' || r == '\t':
			b = append(b, byte(r))
		case r < 0x20 || r == utf8.RuneError || (r >= 0xD800 && r <= 0xDFFF) || r == 0xFFFE || r == 0xFFFF:
			b = utf8.AppendRune(b, '\uFFFD')
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return b
}

// Href renders a DAV:href.
func Href(p string) string { return Elem(Name(NSDAV, "href"), Text(escapePath(p))) }

// PropValue is one property of a resource: its name and inner XML.
type PropValue struct {
	Name  xml.Name
	Inner string
}

// multistatus builds a DAV:multistatus body. It appends to one buffer,
// element by element, without making a string per element: a listing of
// thousands of objects is mostly this.
type multistatus struct {
	b []byte
}

func newMultistatus() *multistatus {
	m := &multistatus{b: make([]byte, 0, 4096)}
	m.b = append(m.b, `<?xml version="1.0" encoding="utf-8"?>`+"\n<d:multistatus"...)
	for _, p := range prefixes {
		m.b = append(m.b, ` xmlns:`+p.prefix+`="`+p.ns+`"`...)
	}
	m.b = append(m.b, '>')
	return m
}

// grow makes room for about n more responses.
func (m *multistatus) grow(n int) {
	if need := len(m.b) + n*256; need > cap(m.b) {
		nb := make([]byte, len(m.b), need)
		copy(nb, m.b)
		m.b = nb
	}
}

// propstatGroup is a set of properties that share a status.
type propstatGroup struct {
	status int
	props  []PropValue
	// errXML is an optional error element (inner XML of DAV:error).
	errXML string
	// desc is an optional responsedescription: what was wrong.
	desc string
}

// elem appends an element with already-serialised inner XML (as Elem).
func (m *multistatus) elem(n xml.Name, inner string) { m.b = appendElem(m.b, n, inner) }

// href appends a DAV:href of URL path p (as Href).
func (m *multistatus) href(p string) {
	m.b = append(m.b, "<d:href>"...)
	m.b = appendText(m.b, escapePath(p))
	m.b = append(m.b, "</d:href>"...)
}

func (m *multistatus) status(code int) {
	m.b = append(m.b, "<d:status>HTTP/1.1 "...)
	m.b = strconv.AppendInt(m.b, int64(code), 10)
	m.b = append(m.b, ' ')
	m.b = append(m.b, statusText(code)...)
	m.b = append(m.b, "</d:status>"...)
}

// response adds a response with propstats.
func (m *multistatus) response(href string, groups ...propstatGroup) {
	m.b = append(m.b, "<d:response>"...)
	m.href(href)
	for _, g := range groups {
		if len(g.props) == 0 {
			continue
		}
		m.b = append(m.b, "<d:propstat><d:prop>"...)
		for _, p := range g.props {
			m.elem(p.Name, p.Inner)
		}
		m.b = append(m.b, "</d:prop>"...)
		m.status(g.status)
		if g.errXML != "" {
			m.b = append(m.b, "<d:error>"+g.errXML+"</d:error>"...)
		}
		if g.desc != "" {
			m.elem(Name(NSDAV, "responsedescription"), Text(g.desc))
		}
		m.b = append(m.b, "</d:propstat>"...)
	}
	m.b = append(m.b, "</d:response>"...)
}

// statusResponse adds a response with only a status.
func (m *multistatus) statusResponse(href string, status int) {
	m.b = append(m.b, "<d:response>"...)
	m.href(href)
	m.status(status)
	m.b = append(m.b, "</d:response>"...)
}

func (m *multistatus) raw(s string) { m.b = append(m.b, s...) }

func (m *multistatus) bytes() []byte {
	return append(m.b, "</d:multistatus>\n"...)
}

func sortNames(ns []xml.Name) {
	sort.Slice(ns, func(i, j int) bool {
		if ns[i].Space != ns[j].Space {
			return ns[i].Space < ns[j].Space
		}
		return ns[i].Local < ns[j].Local
	})
}
