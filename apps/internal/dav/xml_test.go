package dav

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseXMLLimits(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("<a>", n) + strings.Repeat("</a>", n) }
	flat := func(n int) string { return "<r>" + strings.Repeat("<a/>", n-1) + "</r>" }
	tests := []struct {
		name  string
		in    string
		limit string // the XMLLimitError's What; "" none
		err   bool   // another error
	}{
		{"64 levels", nest(MaxXMLDepth), "", false},
		{"65 levels", nest(MaxXMLDepth + 1), "nesting", false},
		{"200,000 levels", nest(200000), "nesting", false},
		{"the element limit", flat(MaxXMLElements), "", false},
		{"one element more", flat(MaxXMLElements + 1), "elements", false},
		{"attributes count", `<r>` + strings.Repeat(`<a x="1"/>`, MaxXMLElements/2) + `</r>`, "elements", false},
		{"malformed", "<a><b></a>", "", true},
		{"two roots", "<a/><b/>", "", true},
		{"text outside", "<a/>text", "", true},
		{"empty", "  ", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseXML(strings.NewReader(tc.in))
			var le *XMLLimitError
			switch {
			case tc.limit != "":
				if !errors.As(err, &le) || le.What != tc.limit {
					t.Errorf("got %v, want the %s limit", err, tc.limit)
				}
			case tc.err:
				if err == nil || errors.As(err, &le) {
					t.Errorf("got %v, want a malformed-XML error", err)
				}
			case err != nil:
				t.Errorf("got %v, want no error", err)
			}
		})
	}
}

func TestParseXMLText(t *testing.T) {
	tests := []struct{ name, in, text, inner string }{
		{"pieces", `<a>x<!-- c -->y<![CDATA[<z>]]>&amp;</a>`, "xy<z>&", "xy&lt;z&gt;&amp;"},
		{"mixed", `<a xmlns="DAV:"> t <b>u</b> v </a>`, " t  v ", " t  v <d:b>u</d:b>"},
		{"whitespace between children", "<a xmlns=\"DAV:\">\n <b/>\n</a>", "\n \n", "<d:b></d:b>"},
		{"other namespaces", `<a xmlns:z="urn:z"><z:b z:q="1" r="2">v</z:b><c/></a>`, "", `<x:b xmlns:x="urn:z" xmlns:a0="urn:z" a0:q="1" r="2">v</x:b><c xmlns=""></c>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ParseXML(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if n.Text != tc.text {
				t.Errorf("text: got %q, want %q", n.Text, tc.text)
			}
			inner, ok := n.InnerXML(1 << 10)
			if !ok || inner != tc.inner {
				t.Errorf("inner XML: got %q (%v), want %q", inner, ok, tc.inner)
			}
		})
	}
	// A namespace declared once is declared again on every element in
	// the serialised form: InnerXML stops at its limit.
	ns := strings.Repeat("u", 10000)
	n, err := ParseXML(strings.NewReader(`<a xmlns:z="` + ns + `">` + strings.Repeat("<z:b/>", 1000) + `</a>`))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := n.InnerXML(1 << 20); ok {
		t.Errorf("inner XML of %d bytes past a limit of %d", len(s), 1<<20)
	}
}

// wrapInner parses inner XML back inside an element that declares the
// well-known prefixes, as a multistatus does.
func wrapInner(inner string) (*Node, error) {
	var b strings.Builder
	b.WriteString("<w")
	for _, p := range prefixes {
		fmt.Fprintf(&b, ` xmlns:%s="%s"`, p.prefix, p.ns)
	}
	b.WriteString(">" + inner + "</w>")
	return ParseXML(strings.NewReader(b.String()))
}

// sameTree compares a parsed tree with its serialised and re-parsed form:
// names, attributes, and text (whitespace-only text beside children is
// not kept).
func sameTree(a, b *Node) error {
	if a.Name != b.Name {
		return fmt.Errorf("name %v, then %v", a.Name, b.Name)
	}
	if len(a.Attr) != len(b.Attr) {
		return fmt.Errorf("<%s>: attributes %v, then %v", a.Name.Local, a.Attr, b.Attr)
	}
	for i := range a.Attr {
		if a.Attr[i] != b.Attr[i] {
			return fmt.Errorf("<%s>: attribute %v, then %v", a.Name.Local, a.Attr[i], b.Attr[i])
		}
	}
	return sameContent(a, b)
}

func sameContent(a, b *Node) error {
	want := a.Text
	if len(a.Children) > 0 && strings.TrimSpace(a.Text) == "" {
		want = ""
	}
	if b.Text != want {
		return fmt.Errorf("<%s>: text %q, then %q", a.Name.Local, want, b.Text)
	}
	if len(a.Children) != len(b.Children) {
		return fmt.Errorf("<%s>: %d children, then %d", a.Name.Local, len(a.Children), len(b.Children))
	}
	for i := range a.Children {
		if err := sameTree(a.Children[i], b.Children[i]); err != nil {
			return err
		}
	}
	return nil
}

// FuzzParseXML feeds the request-body parser arbitrary bytes: it must not
// panic, must keep its limits (depth, elements, text no longer than the
// input), and what it keeps as a dead property must parse back to the same
// tree.
//
// make test runs it for 8000 inputs past its seeds (fuzz-short: 8000x).
func FuzzParseXML(f *testing.F) {
	f.Add([]byte(`<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseXML(bytes.NewReader(data))
		if err != nil {
			return
		}
		elems, text := 0, 0
		var walk func(n *Node, depth int)
		walk = func(n *Node, depth int) {
			if depth > MaxXMLDepth {
				t.Fatalf("a node at depth %d", depth)
			}
			elems += 1 + len(n.Attr)
			text += len(n.Text)
			for _, c := range n.Children {
				walk(c, depth+1)
			}
		}
		walk(n, 1)
		if elems > MaxXMLElements || text > len(data) {
			t.Fatalf("%d elements and attributes, %d bytes of text from %d bytes", elems, text, len(data))
		}
		max := 64*len(data) + 1024
		inner, ok := n.InnerXML(max)
		if !ok {
			return
		}
		if len(inner) > max {
			t.Fatalf("inner XML of %d bytes past its limit %d", len(inner), max)
		}
		back, err := wrapInner(inner)
		if err != nil {
			t.Fatalf("inner XML %q does not parse: %v", inner, err)
		}
		if err := sameContent(n, back); err != nil {
			t.Fatalf("inner XML %q: %v", inner, err)
		}
	})
}

// TestText: character data is escaped for XML 1.0: markup characters, CR
// kept as a reference, other control characters, invalid UTF-8 and
// noncharacters replaced; everything else, multi-byte runes included, as
// it is.
func TestText(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"plain text\n\twith tabs":         "plain text\n\twith tabs",
		"BEGIN:VCARD\r\nFN:A & B <c>\r\n": "BEGIN:VCARD&#13;\nFN:A &amp; B &lt;c&gt;&#13;\n",
		"Zoë 日本 😀":                        "Zoë 日本 😀",
		"bell\x07 del\x7f":                "bell\uFFFD del\x7f",
		"bad \xff\xfe utf8 \xe6\x97":      "bad \uFFFD\uFFFD utf8 \uFFFD\uFFFD",
		"nonchar \uFFFE\uFFFF end":        "nonchar \uFFFD\uFFFD end",
		"\uFFFD kept":                     "\uFFFD kept",
		"x\u0085y":                        "x\u0085y",
	} {
		if got := Text(in); got != want {
			t.Errorf("Text(%q) = %q; want %q", in, got, want)
		}
	}
}
