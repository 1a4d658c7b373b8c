package dav

import (
	"encoding/xml"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/nymote/nymote/store"
)

// TestTextMatch: one text-match for both kinds; an unsupported collation is
// 403 with the supported-collation precondition in the kind's namespace
// (CalDAV's and CardDAV's copies used to answer 403 and 412).
func TestTextMatch(t *testing.T) {
	cal := &Profile{NS: NSCalDAV}
	card := &Profile{NS: NSCardDAV, MatchTypes: true}
	tm := func(text string, attrs ...string) *Node {
		n := &Node{Text: text}
		for i := 0; i+1 < len(attrs); i += 2 {
			n.Attr = append(n.Attr, xml.Attr{Name: Name("", attrs[i]), Value: attrs[i+1]})
		}
		return n
	}
	for _, tc := range []struct {
		p     *Profile
		tm    *Node
		value string
		want  bool
	}{
		{cal, tm("WEEK"), "weekly standup", true},
		{cal, tm("WEEK", "collation", "i;octet"), "weekly standup", false},
		{cal, tm("week", "negate-condition", "yes"), "weekly standup", false},
		{cal, tm("standup", "match-type", "equals"), "weekly standup", true}, // CalDAV has no match-type: substring
		{card, tm("standup", "match-type", "equals"), "weekly standup", false},
		{card, tm("WEEKLY", "match-type", "starts-with"), "weekly standup", true},
		{card, tm("up", "match-type", "ends-with", "collation", "i;unicode-casemap"), "weekly standUP", true},
	} {
		got, err := tc.p.TextMatch(tc.tm, tc.value)
		if err != nil || got != tc.want {
			t.Errorf("%s %q %v against %q: %v, %v; want %v", tc.p.NS, tc.tm.Text, tc.tm.Attr, tc.value, got, err, tc.want)
		}
	}
	for _, p := range []*Profile{cal, card} {
		_, err := p.TextMatch(tm("x", "collation", "i;basic"), "x")
		var de *Error
		if !errors.As(err, &de) || de.Status != http.StatusForbidden || de.Cond != Name(p.NS, "supported-collation") {
			t.Errorf("%s: unsupported collation: %v; want 403 supported-collation", p.NS, err)
		}
	}
	if _, err := card.TextMatch(tm("x", "match-type", "sounds-like"), "x"); err == nil {
		t.Error("CardDAV: unknown match-type accepted")
	}
}

// TestParseCache: parses are kept by ETag, parsed once, and bounded by the
// size of the objects they came from.
func TestParseCache(t *testing.T) {
	parses := 0
	c := NewParseCache(1000, func(b []byte) (string, error) {
		parses++
		if len(b) == 0 {
			return "", errors.New("empty")
		}
		return string(b), nil
	})
	obj := func(i int) *Object {
		var h store.Hash
		h[0], h[1] = byte(i), byte(i>>8)
		return &Object{ETag: h, Data: []byte("object " + strconv.Itoa(i) + " ..............................................................................................")}
	}
	for range 2 {
		if v, err := c.Get(obj(1)); err != nil || v != string(obj(1).Data) {
			t.Fatalf("Get: %q, %v", v, err)
		}
	}
	if parses != 1 {
		t.Errorf("%d parses of one object; want 1", parses)
	}
	c.Put(obj(2).ETag, len(obj(2).Data), "kept")
	if v, _ := c.Get(obj(2)); v != "kept" || parses != 1 {
		t.Errorf("Put then Get: %q after %d parses", v, parses)
	}
	for i := range 100 {
		c.Get(obj(i))
	}
	if n := c.Len(); n > 1000/len(obj(0).Data)+1 {
		t.Errorf("%d parses held; the bound is 1000 bytes of objects of %d", n, len(obj(0).Data))
	}
	if _, err := c.Get(&Object{Data: nil}); err == nil {
		t.Error("a failed parse was not returned")
	}
}

// TestHrefPath: the shortcut for plain paths answers what url.Parse and
// path.Clean do.
func TestHrefPath(t *testing.T) {
	for _, s := range []string{
		"/alice/default/card-00001.vcf", "/alice/default/", "/alice//default/x", "/alice/./x", "/alice/../x",
		"/a/b/..", "/a/.hidden", "/a/x.vcf/", "/a@b.example/c", "/a/b%20c", "/", "//host/x", "/a/b?c", "/a/b#c",
		"relative/x", " /alice/default/x.vcf ", "/a/~b/c-d_e.f", "/a/..b", "/a/b..",
	} {
		got, ok := hrefPath(s)
		want, wok := "", false
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.Path != "" {
			want, wok = path.Clean(u.Path), true
		}
		if got != want || ok != wok {
			t.Errorf("hrefPath(%q) = %q, %v; want %q, %v", s, got, ok, want, wok)
		}
	}
}
