package dav

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// Limits of a DAV request body. A request's XML is parsed into a tree
// that lives for the request, so its size is bounded in bytes, in nesting
// and in elements (attributes count as elements): a few KB of hostile XML
// must not cost more than a few MB. Real clients' bodies are far inside:
// a PROPFIND nests five deep, a calendar-query filter about ten, and a
// multiget of 10,000 objects has 10,000 elements.
const (
	// MaxXMLBody is the largest XML request body, in bytes.
	MaxXMLBody = 4 << 20
	// MaxXMLDepth is how deep elements may nest.
	MaxXMLDepth = 64
	// MaxXMLElements is how many elements and attributes a body may hold.
	MaxXMLElements = 50_000
)

// XMLLimitError says which limit of a request body was passed.
type XMLLimitError struct {
	// What was too large: "nesting", "elements" or "body".
	What  string
	Limit int64
}

// Error says which limit was passed, for the client.
func (e *XMLLimitError) Error() string {
	switch e.What {
	case "nesting":
		return fmt.Sprintf("XML body nested deeper than %d elements", e.Limit)
	case "elements":
		return fmt.Sprintf("XML body with more than %d elements and attributes", e.Limit)
	}
	return fmt.Sprintf("request body larger than %d bytes", e.Limit)
}

// Node is an element of a parsed XML request body, with namespaces resolved.
type Node struct {
	Name     xml.Name
	Attr     []xml.Attr
	Children []*Node
	// Text is the element's own character data, concatenated.
	Text string
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

// ParseXML parses an XML document into a Node tree, within MaxXMLDepth and
// MaxXMLElements (an *XMLLimitError otherwise). It reads r as a stream and
// stops at the first limit passed, so it costs at most about the size of
// what it read. An empty document gives errEmptyBody.
func ParseXML(r io.Reader) (*Node, error) {
	dec := xml.NewDecoder(r)
	// stack holds the open elements and their text so far: text comes in
	// pieces (between children, comments, CDATA sections) and is joined
	// once, when the element ends.
	type open struct {
		n    *Node
		text []byte
	}
	var stack []open
	var root *Node
	count := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				return nil, &XMLLimitError{What: "body", Limit: mb.Limit}
			}
			return nil, fmt.Errorf("malformed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= MaxXMLDepth {
				return nil, &XMLLimitError{What: "nesting", Limit: MaxXMLDepth}
			}
			if count += 1 + len(t.Attr); count > MaxXMLElements {
				return nil, &XMLLimitError{What: "elements", Limit: MaxXMLElements}
			}
			if t.Name.Space == "" && strings.Contains(t.Name.Local, ":") {
				return nil, fmt.Errorf("malformed XML: undeclared namespace prefix in <%s>", t.Name.Local)
			}
			if t.Name.Local == "" || strings.Contains(t.Name.Local, ":") {
				// encoding/xml takes <:x> or <a::x> with a colon left in
				// the local name; XML Namespaces 1.0 allows none (and a
				// dead property named so could not be written back).
				return nil, fmt.Errorf("malformed XML: element name %q is not a qualified name", t.Name.Local)
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
				if a.Name.Local == "" || strings.Contains(a.Name.Local, ":") {
					return nil, fmt.Errorf("malformed XML: attribute name %q in <%s> is not a qualified name", a.Name.Local, t.Name.Local)
				}
				n.Attr = append(n.Attr, a)
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1].n
				p.Children = append(p.Children, n)
			} else if root != nil {
				return nil, errors.New("malformed XML: more than one root element")
			} else {
				root = n
			}
			stack = append(stack, open{n: n})
		case xml.EndElement:
			top := &stack[len(stack)-1]
			top.n.Text = string(top.text)
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				top := &stack[len(stack)-1]
				top.text = append(top.text, t...)
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
	return root, nil
}

// InnerXML returns the element's content (text and children) serialised
// with explicit namespace declarations, as a dead property keeps it; ok is
// false when that would be longer than max bytes (a namespace declared
// once in the request is declared again on every element that uses it, so
// the serialised form can be longer than the request). It writes once
// through the subtree: the cost follows the size of the result.
func (n *Node) InnerXML(max int) (s string, ok bool) {
	w := &limitedBuilder{max: max}
	writeContent(w, n)
	if w.over {
		return "", false
	}
	return w.b.String(), true
}

// limitedBuilder is a strings.Builder that stops growing past max bytes.
type limitedBuilder struct {
	b    strings.Builder
	max  int
	over bool
}

func (w *limitedBuilder) Write(p []byte) (int, error) {
	if w.over || w.b.Len()+len(p) > w.max {
		w.over = true
		return len(p), nil
	}
	return w.b.Write(p)
}

func (w *limitedBuilder) WriteString(s string) (int, error) {
	if w.over || w.b.Len()+len(s) > w.max {
		w.over = true
		return len(s), nil
	}
	return w.b.WriteString(s)
}

// writeContent writes n's content (text and children), children with
// explicit namespace declarations.
func writeContent(b *limitedBuilder, n *Node) {
	if len(n.Children) == 0 {
		xml.EscapeText(b, []byte(n.Text))
		return
	}
	// Mixed content: keep non-whitespace text, then the children.
	if t := strings.TrimSpace(n.Text); t != "" {
		xml.EscapeText(b, []byte(n.Text))
	}
	for _, c := range n.Children {
		if b.over {
			return
		}
		writeElement(b, c)
	}
}

func writeElement(b *limitedBuilder, n *Node) {
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
	// Runs of bytes that stay as they are are copied at once.
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		var esc string
		n := 1
		if c < utf8.RuneSelf {
			switch {
			case c == '&':
				esc = "&amp;"
			case c == '<':
				esc = "&lt;"
			case c == '>':
				esc = "&gt;"
			case c == '\r':
				esc = "&#13;"
			case c >= 0x20 || c == '\n' || c == '\t':
				i++
				continue
			default:
				esc = "\uFFFD"
			}
		} else {
			var r rune
			r, n = utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError && r != 0xFFFE && r != 0xFFFF {
				i += n
				continue
			}
			esc = "\uFFFD" // invalid UTF-8 (a byte at a time), or a noncharacter
		}
		b = append(b, s[last:i]...)
		b = append(b, esc...)
		i += n
		last = i
	}
	return append(b, s[last:]...)
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
// thousands of objects is mostly this. A streaming one (w set) sends the
// buffer to the client whenever it passes msFlushAt, so that a response of
// any length (a listing with every object's data) holds at most about
// msFlushAt and one object in memory.
type multistatus struct {
	b []byte
	// w receives the body in pieces; nil keeps it whole.
	w http.ResponseWriter
	// started: the status line and a first piece are sent.
	started bool
	err     error // of writing to w
}

// msFlushAt is the size past which a streaming multistatus sends what it
// holds.
const msFlushAt = 256 << 10

func newMultistatus() *multistatus {
	m := &multistatus{b: make([]byte, 0, 4096)}
	m.b = append(m.b, `<?xml version="1.0" encoding="utf-8"?>`+"\n<d:multistatus"...)
	for _, p := range prefixes {
		m.b = append(m.b, ` xmlns:`+p.prefix+`="`+p.ns+`"`...)
	}
	m.b = append(m.b, '>')
	return m
}

// newStreamingMultistatus returns a multistatus that streams to w. A
// method that uses one must end with writeMultistatus, and must defer
// abortIfStarted: an error after the first piece was sent cannot change
// the status any more.
func newStreamingMultistatus(w http.ResponseWriter) *multistatus {
	m := newMultistatus()
	m.w = w
	return m
}

// flush sends what m holds once it passes msFlushAt (a streaming one).
func (m *multistatus) flush() error {
	if m.w == nil || m.err != nil || len(m.b) < msFlushAt {
		return m.err
	}
	if !m.started {
		m.w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		m.w.WriteHeader(http.StatusMultiStatus)
		m.started = true
	}
	_, m.err = m.w.Write(m.b)
	m.b = m.b[:0]
	return m.err
}

// abortIfStarted cuts the connection when the method failed (*err) after
// the response began: the client sees a truncated body, never a
// well-formed partial one, nor an error message inside the XML.
func (m *multistatus) abortIfStarted(err *error) {
	if *err != nil && m.started {
		panic(http.ErrAbortHandler)
	}
}

// grow makes room for about n more responses.
func (m *multistatus) grow(n int) {
	need := len(m.b) + n*256
	if m.w != nil && need > msFlushAt+64<<10 {
		need = msFlushAt + 64<<10
	}
	if need > cap(m.b) {
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

// readXMLBody parses a request's XML body as a stream of at most
// MaxXMLBody bytes; nil when the body is empty. A body over a limit is
// refused with 413 (bytes) or 400 (nesting, elements), saying which.
// Clients label XML bodies carelessly, so only MKCOL (where a non-XML
// body is a distinct error, RFC 5689) checks the Content-Type.
func readXMLBody(w http.ResponseWriter, r *http.Request) (*Node, error) {
	t, err := mediaType(r)
	if err != nil {
		return nil, err
	}
	if r.ContentLength > MaxXMLBody {
		return nil, Errorf(http.StatusRequestEntityTooLarge, errNoCond, "%v", &XMLLimitError{What: "body", Limit: MaxXMLBody})
	}
	br := bufio.NewReader(http.MaxBytesReader(w, r.Body, MaxXMLBody))
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, bodyError(fmt.Errorf("reading the body: %w", err))
		}
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			br.UnreadByte()
			break
		}
	}
	if (r.Method == "MKCOL" || r.Method == "MKCALENDAR") && t != "" && t != "application/xml" && t != "text/xml" {
		return nil, Errorf(http.StatusUnsupportedMediaType, errNoCond, "request body of type %s; want application/xml", t)
	}
	n, err := ParseXML(br)
	if err != nil {
		return nil, bodyError(err)
	}
	return n, nil
}

// bodyError is the answer to a request body that could not be read or
// parsed.
func bodyError(err error) error {
	var le *XMLLimitError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &le) && le.What == "body":
		return Errorf(http.StatusRequestEntityTooLarge, errNoCond, "%v", le)
	case errors.As(err, &mb):
		return Errorf(http.StatusRequestEntityTooLarge, errNoCond, "%v", &XMLLimitError{What: "body", Limit: mb.Limit})
	case errors.As(err, &le):
		return Errorf(http.StatusBadRequest, errNoCond, "%v", le)
	}
	return Errorf(http.StatusBadRequest, errNoCond, "%v", err)
}
