package capability

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRights(t *testing.T) {
	for s, want := range map[string]Rights{"read": Read, "write": Write, "read,write": Read | Write, "ro": Read, "rw": Read | Write} {
		if r, err := ParseRights(s); err != nil || r != want {
			t.Errorf("ParseRights(%q) = %v, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "all", "read,admin"} {
		if _, err := ParseRights(s); err == nil {
			t.Errorf("ParseRights(%q) accepted", s)
		}
	}
}

func req(method, path string) *http.Request {
	r, _ := http.NewRequest(method, "http://x"+path, nil)
	return r
}

// TestNarrowing: caveats only narrow: a sub-collection confines a token to
// it, a later expiry does not extend it, and unknown caveats are refused.
func TestNarrowing(t *testing.T) {
	dir := t.TempDir()
	tok, err := Mint(dir, "/alice/work/", Read|Write, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := Attenuate(tok, 0, time.Now().Add(48*time.Hour), "/alice/work/team/")
	if err != nil {
		t.Fatal(err)
	}
	g, err := Verify(dir, sub, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Allows(req("PUT", "/alice/work/team/x.ics")); err != nil {
		t.Fatalf("inside the sub-collection: %v", err)
	}
	if err := g.Allows(req("GET", "/alice/work/x.ics")); err == nil {
		t.Fatal("a narrowed token reaches its parent collection")
	}
	if _, err := Verify(dir, sub, time.Now().Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a later expiry extended the token: %v", err)
	}
	m, _ := decode(tok)
	m.AddFirstPartyCaveat([]byte("admin yes"))
	odd, _ := encode(m)
	if _, err := Verify(dir, odd, time.Now()); err == nil || !strings.Contains(err.Error(), "unknown caveat") {
		t.Fatalf("a token with an unknown caveat: %v", err)
	}
	if g.User() != "alice" {
		t.Fatalf("User = %q", g.User())
	}
	// Collections must name one collection.
	for _, c := range []string{"/alice/", "alice/work/", "/alice/../bob/x/", "/"} {
		if _, err := Mint(dir, c, Read, time.Now().Add(time.Hour)); err == nil {
			t.Errorf("Mint(%q) accepted", c)
		}
	}
	if _, err := Revoke(dir, "not-an-id"); err == nil {
		t.Fatal("Revoke accepted a bad ID")
	}
	// A token cannot be used on another node (no identity there yet).
	if _, err := Verify(t.TempDir(), tok, time.Now()); err == nil {
		t.Fatal("a token verified on a node that has no key")
	}
}
