package dav_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
)

func vcf(uid, fn string) string {
	return "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:" + uid + "\r\nFN:" + fn + "\r\nEMAIL:" + uid + "@example.com\r\nEND:VCARD\r\n"
}

const vcardType = "text/vcard; charset=utf-8"

func start(t *testing.T) *davtest.Server {
	return davtest.Start(t, carddav.New(2048), func(o *dav.Options) { o.MaxObjectSize = 2048 })
}

func TestAuth(t *testing.T) {
	s := start(t)
	tests := []struct {
		name, user, method, path string
		want                     int
	}{
		{"options needs no login", "", "OPTIONS", "/alice/", 200},
		{"no login", "", "PROPFIND", "/alice/", 401},
		{"own home", "alice", "PROPFIND", "/alice/", 207},
		{"someone else's home", "bob", "PROPFIND", "/alice/", 403},
		{"someone else's collection", "bob", "PROPFIND", "/alice/default/", 403},
		{"someone else's object", "bob", "GET", "/alice/default/x.vcf", 403},
		{"put into someone else's collection", "bob", "PUT", "/alice/default/x.vcf", 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.Do(tc.user, tc.method, tc.path, "", "Depth", "0")
			if r.Status != tc.want {
				t.Errorf("got %d, want %d (%s)", r.Status, tc.want, r.Body)
			}
		})
	}
	req, _ := http.NewRequest("PROPFIND", s.URL+"/alice/", nil)
	req.SetBasicAuth("alice", "wrong password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("wrong password: got %d %q, want 401 with a Basic challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if r := s.Do("", "OPTIONS", "/", ""); !strings.Contains(r.Header.Get("DAV"), "addressbook") {
		t.Errorf("DAV header %q lacks addressbook", r.Header.Get("DAV"))
	}

	// Logins are remembered, but a changed password or a deleted user
	// counts at once.
	login := func(user, password string) int {
		req, _ := http.NewRequest("PROPFIND", s.URL+"/"+user+"/", nil)
		req.SetBasicAuth(user, password)
		req.Header.Set("Depth", "0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ctx := context.Background()
	steps := []struct {
		name           string
		change         func() error
		user, password string
		want           int
	}{
		{"remembered login", nil, "alice", davtest.Users["alice"], 207},
		{"old password after a change", func() error { return s.Store.SetPassword(ctx, "alice", "a-new-password") }, "alice", davtest.Users["alice"], 401},
		{"new password", nil, "alice", "a-new-password", 207},
		{"new password again", nil, "alice", "a-new-password", 207},
		{"deleted user", func() error { return s.Store.DeleteUser(ctx, "bob") }, "bob", davtest.Users["bob"], 401},
	}
	if got := login("bob", davtest.Users["bob"]); got != 207 {
		t.Fatalf("bob: got %d, want 207", got)
	}
	for _, st := range steps {
		if st.change != nil {
			if err := st.change(); err != nil {
				t.Fatal(err)
			}
		}
		if got := login(st.user, st.password); got != st.want {
			t.Errorf("%s: got %d, want %d", st.name, got, st.want)
		}
	}
}

func TestDiscovery(t *testing.T) {
	s := start(t)
	r := s.Do("", "GET", "/.well-known/carddav", "")
	if r.Status != 301 || r.Header.Get("Location") != "/" {
		t.Errorf("well-known: got %d to %q, want 301 to /", r.Status, r.Header.Get("Location"))
	}
	r = s.Do("alice", "PROPFIND", "/", `<propfind xmlns="DAV:"><prop><current-user-principal/></prop></propfind>`, "Depth", "0")
	if !strings.Contains(r.Body, "<d:current-user-principal><d:href>/alice/</d:href>") {
		t.Errorf("root PROPFIND: %s", r.Body)
	}
	r = s.Do("alice", "PROPFIND", "/alice/", `<propfind xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><prop><C:addressbook-home-set/><resourcetype/></prop></propfind>`, "Depth", "1")
	for _, want := range []string{"<card:addressbook-home-set><d:href>/alice/</d:href>", "<d:href>/alice/default/</d:href>", "<card:addressbook/>"} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("home PROPFIND lacks %s: %s", want, r.Body)
		}
	}
}

var etagRE = regexp.MustCompile(`"[0-9a-f]{40}"`)

func TestConditionalWrites(t *testing.T) {
	s := start(t)
	const p = "/alice/default/a.vcf"
	r := s.Do("alice", "PUT", p, vcf("a", "A"), "Content-Type", vcardType, "If-None-Match", "*")
	if r.Status != 201 || !etagRE.MatchString(r.Header.Get("ETag")) {
		t.Fatalf("create: got %d etag %q", r.Status, r.Header.Get("ETag"))
	}
	etag1 := r.Header.Get("ETag")
	if g := s.Do("alice", "GET", p, ""); g.Body != vcf("a", "A") || g.Header.Get("ETag") != etag1 {
		t.Errorf("GET: got %q etag %s, want the bytes PUT with etag %s", g.Body, g.Header.Get("ETag"), etag1)
	}
	steps := []struct {
		name, method, body string
		headers            []string
		want               int
	}{
		{"create again with If-None-Match *", "PUT", vcf("a", "A2"), []string{"If-None-Match", "*"}, 412},
		{"update with a stale If-Match", "PUT", vcf("a", "A2"), []string{"If-Match", `"0000000000000000000000000000000000000000"`}, 412},
		{"update with If-Match", "PUT", vcf("a", "A2"), []string{"If-Match", etag1}, 204},
		{"update with the old If-Match", "PUT", vcf("a", "A3"), []string{"If-Match", etag1}, 412},
		{"delete with the old If-Match", "DELETE", "", []string{"If-Match", etag1}, 412},
		{"update without conditions", "PUT", vcf("a", "A4"), nil, 204},
		{"delete", "DELETE", "", nil, 204},
		{"delete again", "DELETE", "", nil, 404},
		{"If-Match on a missing object", "PUT", vcf("a", "A5"), []string{"If-Match", etag1}, 412},
	}
	for _, st := range steps {
		r := s.Do("alice", st.method, p, st.body, append([]string{"Content-Type", vcardType}, st.headers...)...)
		if r.Status != st.want {
			t.Errorf("%s: got %d, want %d (%s)", st.name, r.Status, st.want, r.Body)
		}
	}
}

func TestValidation(t *testing.T) {
	s := start(t)
	if r := s.Do("alice", "PUT", "/alice/default/taken.vcf", vcf("taken", "T"), "Content-Type", vcardType); r.Status != 201 {
		t.Fatalf("setup: %d %s", r.Status, r.Body)
	}
	head := func() string {
		sn, err := s.Store.Snapshot("")
		if err != nil {
			t.Fatal(err)
		}
		return sn.Commit().String()
	}
	before := head()
	tests := []struct {
		name, path, ctype, body string
		want                    int
		says                    string
	}{
		{"wrong content type", "/alice/default/x.vcf", "text/plain", vcf("x", "X"), 415, "supported-address-data"},
		{"not a vCard", "/alice/default/x.vcf", vcardType, "hello", 400, "valid-address-data"},
		{"unterminated", "/alice/default/x.vcf", vcardType, "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:x\r\n", 400, "valid-address-data"},
		{"no UID", "/alice/default/x.vcf", vcardType, "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:X\r\nEND:VCARD\r\n", 400, "no UID"},
		{"two cards", "/alice/default/x.vcf", vcardType, vcf("x", "X") + vcf("y", "Y"), 400, "more than one"},
		{"UID clash", "/alice/default/x.vcf", vcardType, vcf("taken", "X"), 409, "no-uid-conflict"},
		{"too large", "/alice/default/x.vcf", vcardType, vcf("x", strings.Repeat("x", 3000)), 413, "max-resource-size"},
		{"no collection", "/alice/nothing/x.vcf", vcardType, vcf("x", "X"), 409, "create it first"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.Do("alice", "PUT", tc.path, tc.body, "Content-Type", tc.ctype)
			if r.Status != tc.want || !strings.Contains(r.Body, tc.says) {
				t.Errorf("got %d %q, want %d saying %q", r.Status, r.Body, tc.want, tc.says)
			}
		})
	}
	if h := head(); h != before {
		t.Errorf("refused writes changed the store: head %s, was %s", h, before)
	}
	// The same UID under the same name is an update, not a clash.
	if r := s.Do("alice", "PUT", "/alice/default/taken.vcf", vcf("taken", "T2"), "Content-Type", vcardType); r.Status != 204 {
		t.Errorf("update: got %d %s", r.Status, r.Body)
	}
}

func syncReport(token string) string {
	return `<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>` + token + `</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
}

var tokenRE = regexp.MustCompile(`<d:sync-token>([^<]*)</d:sync-token>`)

func TestSyncCollection(t *testing.T) {
	s := start(t)
	for i := range 5 {
		s.Do("alice", "PUT", fmt.Sprintf("/alice/default/%d.vcf", i), vcf(fmt.Sprint(i), "N"), "Content-Type", vcardType)
	}
	r := s.Do("alice", "REPORT", "/alice/default/", syncReport(""))
	if r.Status != 207 || strings.Count(r.Body, "<d:response>") != 5 {
		t.Fatalf("initial sync: %d %s", r.Status, r.Body)
	}
	tok := tokenRE.FindStringSubmatch(r.Body)[1]
	// Nothing changed: nothing to report.
	r = s.Do("alice", "REPORT", "/alice/default/", syncReport(tok))
	if strings.Count(r.Body, "<d:response>") != 0 {
		t.Errorf("sync without changes: %s", r.Body)
	}
	// Changes elsewhere do not show up here.
	s.Do("alice", "MKCOL", "/alice/other/", "")
	s.Do("alice", "PUT", "/alice/other/o.vcf", vcf("o", "O"), "Content-Type", vcardType)
	s.Do("alice", "PUT", "/alice/default/1.vcf", vcf("1", "changed"), "Content-Type", vcardType)
	s.Do("alice", "PUT", "/alice/default/new.vcf", vcf("new", "N"), "Content-Type", vcardType)
	s.Do("alice", "DELETE", "/alice/default/2.vcf", "")
	r = s.Do("alice", "REPORT", "/alice/default/", syncReport(tok))
	for _, want := range []string{"/alice/default/1.vcf</d:href><d:propstat>", "/alice/default/new.vcf</d:href><d:propstat>", "/alice/default/2.vcf</d:href><d:status>HTTP/1.1 404"} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("incremental sync lacks %s: %s", want, r.Body)
		}
	}
	if n := strings.Count(r.Body, "<d:response>"); n != 3 {
		t.Errorf("incremental sync: %d responses, want 3", n)
	}
	etag := strings.Trim(s.Do("alice", "GET", "/alice/default/1.vcf", "").Header.Get("ETag"), `"`)
	for _, bad := range []string{
		"urn:x-nymote:sync:1234567890123456789012345678901234567890", // no such commit
		"urn:x-nymote:sync:" + etag,                                  // an object, not a commit
		"urn:x-nymote:sync:" + strings.ToUpper(tok[18:]),             // not as we wrote it
		"urn:x-nymote:sync:xyz",
		"http://example.com/sync/1",
	} {
		r = s.Do("alice", "REPORT", "/alice/default/", syncReport(bad))
		if r.Status != 403 || !strings.Contains(r.Body, "valid-sync-token") {
			t.Errorf("bad token %s: got %d %s, want 403 valid-sync-token", bad, r.Status, r.Body)
		}
	}
}

func TestCollections(t *testing.T) {
	s := start(t)
	mk := `<?xml version="1.0"?><D:mkcol xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav" xmlns:I="http://inf-it.com/ns/ab/"><D:set><D:prop>
<D:resourcetype><D:collection/><C:addressbook/></D:resourcetype><D:displayname>Work</D:displayname>
<C:addressbook-description>Colleagues</C:addressbook-description><I:addressbook-color>#ff0000ff</I:addressbook-color></D:prop></D:set></D:mkcol>`
	if r := s.Do("alice", "MKCOL", "/alice/work/", mk, "Content-Type", "application/xml"); r.Status != 201 {
		t.Fatalf("MKCOL: %d %s", r.Status, r.Body)
	}
	if r := s.Do("alice", "MKCOL", "/alice/work/", mk); r.Status != 405 {
		t.Errorf("MKCOL again: got %d, want 405", r.Status)
	}
	if r := s.Do("alice", "MKCOL", "/alice/work/inner/", ""); r.Status != 403 {
		t.Errorf("MKCOL in an address book: got %d, want 403", r.Status)
	}
	pf := `<propfind xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav" xmlns:I="http://inf-it.com/ns/ab/" xmlns:X="urn:example"><prop><displayname/><C:addressbook-description/><I:addressbook-color/><resourcetype/><X:custom/></prop></propfind>`
	r := s.Do("alice", "PROPFIND", "/alice/work/", pf, "Depth", "0")
	for _, want := range []string{"<d:displayname>Work</d:displayname>", "Colleagues", "#ff0000ff", "<card:addressbook/>", `<x:custom xmlns:x="urn:example"/></d:prop><d:status>HTTP/1.1 404`} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("PROPFIND lacks %s: %s", want, r.Body)
		}
	}
	pp := `<propertyupdate xmlns="DAV:" xmlns:X="urn:example"><set><prop><displayname>Office</displayname><X:custom><X:v a="1">v</X:v></X:custom></prop></set></propertyupdate>`
	if r := s.Do("alice", "PROPPATCH", "/alice/work/", pp); r.Status != 207 || strings.Count(r.Body, "200 OK") != 1 {
		t.Errorf("PROPPATCH: %d %s", r.Status, r.Body)
	}
	bad := `<propertyupdate xmlns="DAV:"><set><prop><displayname>Nope</displayname><getetag>x</getetag></prop></set></propertyupdate>`
	if r := s.Do("alice", "PROPPATCH", "/alice/work/", bad); !strings.Contains(r.Body, "403 Forbidden") || !strings.Contains(r.Body, "424 Failed Dependency") {
		t.Errorf("PROPPATCH of a protected property: %s", r.Body)
	}
	r = s.Do("alice", "PROPFIND", "/alice/work/", pf, "Depth", "0")
	if !strings.Contains(r.Body, "<d:displayname>Office</d:displayname>") || !strings.Contains(r.Body, `<x:v xmlns:x="urn:example" a="1">v</x:v>`) {
		t.Errorf("after PROPPATCH: %s", r.Body)
	}
	s.Do("alice", "PUT", "/alice/work/a.vcf", vcf("a", "A"), "Content-Type", vcardType)
	if r := s.Do("alice", "DELETE", "/alice/work/", ""); r.Status != 204 {
		t.Errorf("DELETE collection: %d %s", r.Status, r.Body)
	}
	if r := s.Do("alice", "GET", "/alice/work/a.vcf", ""); r.Status != 404 {
		t.Errorf("object of a deleted collection: got %d, want 404", r.Status)
	}
	// A new collection with the same name starts empty, and its UIDs are free.
	s.Do("alice", "MKCOL", "/alice/work/", mk)
	if r := s.Do("alice", "PUT", "/alice/work/b.vcf", vcf("a", "A"), "Content-Type", vcardType); r.Status != 201 {
		t.Errorf("PUT into the new collection: %d %s", r.Status, r.Body)
	}
}

// TestPlainWebDAV covers what the litmus basic suite does to plain
// collections.
func TestPlainWebDAV(t *testing.T) {
	s := start(t)
	steps := []struct {
		name, method, path, body string
		headers                  []string
		want                     int
	}{
		{"mkcol", "MKCOL", "/alice/litmus/", "", nil, 201},
		{"put any file", "PUT", "/alice/litmus/res", "hello", []string{"Content-Type", "text/plain"}, 201},
		{"get it", "GET", "/alice/litmus/res", "", nil, 200},
		{"put without parent", "PUT", "/alice/litmus/nothere/res", "x", nil, 409},
		{"mkcol over a plain resource", "MKCOL", "/alice/litmus/res", "", nil, 405},
		{"mkcol nested", "MKCOL", "/alice/litmus/coll/", "", nil, 201},
		{"mkcol again", "MKCOL", "/alice/litmus/coll/", "", nil, 405},
		{"put in nested", "PUT", "/alice/litmus/coll/f", "x", nil, 201},
		{"mkcol without parent", "MKCOL", "/alice/litmus/a/b/", "", nil, 409},
		{"mkcol with a non-XML body", "MKCOL", "/alice/litmus/body/", "afafafaf", []string{"Content-Type", "xzy-foo/bar-512"}, 415},
		{"delete nested", "DELETE", "/alice/litmus/coll/", "", nil, 204},
		{"nested is gone", "GET", "/alice/litmus/coll/f", "", nil, 404},
		{"delete missing", "DELETE", "/alice/litmus/missing", "", nil, 404},
		{"propfind bad XML", "PROPFIND", "/alice/litmus/", "<foo>", nil, 400},
	}
	for _, st := range steps {
		r := s.Do("alice", st.method, st.path, st.body, st.headers...)
		if r.Status != st.want {
			t.Errorf("%s: got %d, want %d (%s)", st.name, r.Status, st.want, r.Body)
		}
	}
	pp := `<propertyupdate xmlns="DAV:" xmlns:Z="http://example.com/neon/litmus/"><set><prop><Z:prop0>value0</Z:prop0></prop></set></propertyupdate>`
	if r := s.Do("alice", "PROPPATCH", "/alice/litmus/res", pp); r.Status != 207 || !strings.Contains(r.Body, "200 OK") {
		t.Errorf("PROPPATCH a file: %d %s", r.Status, r.Body)
	}
	r := s.Do("alice", "PROPFIND", "/alice/litmus/res", `<propfind xmlns="DAV:" xmlns:Z="http://example.com/neon/litmus/"><prop><Z:prop0/></prop></propfind>`, "Depth", "0")
	if !strings.Contains(r.Body, ">value0</x:prop0>") {
		t.Errorf("dead property of a file: %s", r.Body)
	}
}

func carddavKind() dav.Kind { return carddav.New(0) }

func TestCopyMove(t *testing.T) {
	s := start(t)
	s.Do("alice", "MKCOL", "/alice/other/", `<mkcol xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><set><prop><resourcetype><collection/><C:addressbook/></resourcetype></prop></set></mkcol>`)
	s.Do("alice", "PUT", "/alice/default/a.vcf", vcf("a", "A"), "Content-Type", vcardType)
	s.Do("alice", "PUT", "/alice/other/clash.vcf", vcf("c", "C"), "Content-Type", vcardType)
	steps := []struct {
		name, method, from, to string
		headers                []string
		want                   int
	}{
		{"move to another address book", "MOVE", "/alice/default/a.vcf", "/alice/other/a.vcf", nil, 201},
		{"the source is gone", "GET", "/alice/default/a.vcf", "", nil, 404},
		{"copy back", "COPY", "/alice/other/a.vcf", "/alice/default/a.vcf", nil, 201},
		{"copy onto a UID clash", "COPY", "/alice/other/a.vcf", "/alice/other/b.vcf", nil, 409},
		{"no overwrite", "COPY", "/alice/default/a.vcf", "/alice/other/clash.vcf", []string{"Overwrite", "F"}, 412},
		{"into someone else's home", "MOVE", "/alice/default/a.vcf", "/bob/default/a.vcf", nil, 403},
		{"rename within a collection", "MOVE", "/alice/default/a.vcf", "/alice/default/renamed.vcf", nil, 201},
	}
	for _, st := range steps {
		h := append([]string{"Destination", s.URL + st.to}, st.headers...)
		if st.to == "" {
			h = nil
		}
		if r := s.Do("alice", st.method, st.from, "", h...); r.Status != st.want {
			t.Errorf("%s: got %d, want %d (%s)", st.name, r.Status, st.want, r.Body)
		}
	}
}

// TestConcurrentClients has 8 clients PUT, GET and list at once, and two of
// them race to store one UID under different names: exactly one wins.
func TestConcurrentClients(t *testing.T) {
	s := start(t)
	var wg sync.WaitGroup
	statuses := make(chan int, 2)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w < 2 {
				statuses <- s.Do("alice", "PUT", fmt.Sprintf("/alice/default/race%d.vcf", w), vcf("race", "R"), "Content-Type", vcardType).Status
			}
			for i := range 5 {
				p := fmt.Sprintf("/alice/default/w%d-%d.vcf", w, i)
				if r := s.Do("alice", "PUT", p, vcf(fmt.Sprintf("w%d-%d", w, i), "W"), "Content-Type", vcardType); r.Status != 201 {
					t.Errorf("PUT %s: %d %s", p, r.Status, r.Body)
				}
				if r := s.Do("alice", "GET", p, ""); r.Status != 200 {
					t.Errorf("GET %s: %d", p, r.Status)
				}
				s.Do("alice", "PROPFIND", "/alice/default/", "", "Depth", "1")
			}
		}()
	}
	wg.Wait()
	close(statuses)
	var got []int
	for st := range statuses {
		got = append(got, st)
	}
	if !(got[0] == 201 && got[1] == 409 || got[0] == 409 && got[1] == 201) {
		t.Errorf("racing PUTs of one UID: %v, want one 201 and one 409", got)
	}
	r := s.Do("alice", "REPORT", "/alice/default/", syncReport(""))
	if n := strings.Count(r.Body, "<d:response>"); n != 41 {
		t.Errorf("%d objects after the run, want 41", n)
	}
}

var ctagRE = regexp.MustCompile(`<cs:getctag>([^<]*)</cs:getctag>`)

// TestCopyMoveCollections covers COPY and MOVE of collections (RFC 4918
// sections 9.8 and 9.9): depth, Overwrite, the statuses, objects keeping
// their bytes and ETags, sync tokens, and refusals that change nothing.
func TestCopyMoveCollections(t *testing.T) {
	s := start(t)
	ab := `<mkcol xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><set><prop><resourcetype><collection/><C:addressbook/></resourcetype><displayname>Work</displayname></prop></set></mkcol>`
	if r := s.Do("alice", "MKCOL", "/alice/work/", ab); r.Status != 201 {
		t.Fatalf("MKCOL: %d %s", r.Status, r.Body)
	}
	etags := map[string]string{}
	for _, n := range []string{"a", "b"} {
		r := s.Do("alice", "PUT", "/alice/work/"+n+".vcf", vcf(n, n), "Content-Type", vcardType)
		if r.Status != 201 {
			t.Fatalf("PUT: %d %s", r.Status, r.Body)
		}
		etags[n] = r.Header.Get("ETag")
	}
	s.Do("alice", "MKCOL", "/alice/plain/", "")
	s.Do("alice", "MKCOL", "/alice/plain/inner/", "")
	s.Do("alice", "PUT", "/alice/plain/inner/f", "file", "Content-Type", "text/plain")
	syncTok := func(p string) string {
		r := s.Do("alice", "REPORT", p, syncReport(""))
		m := tokenRE.FindStringSubmatch(r.Body)
		if m == nil {
			t.Fatalf("sync of %s: %d %s", p, r.Status, r.Body)
		}
		return m[1]
	}
	ctag := func(p string) string {
		r := s.Do("alice", "PROPFIND", p, `<propfind xmlns="DAV:"><prop><getctag xmlns="http://calendarserver.org/ns/"/></prop></propfind>`, "Depth", "0")
		if m := ctagRE.FindStringSubmatch(r.Body); m != nil {
			return m[1]
		}
		return ""
	}
	head := func() string {
		sn, err := s.Store.Snapshot("")
		if err != nil {
			t.Fatal(err)
		}
		return sn.Commit().String()
	}
	steps := []struct {
		name, method, from, to string
		headers                []string
		want                   int
	}{
		{"copy an address book", "COPY", "/alice/work/", "/alice/copy/", nil, 201},
		{"copy it again without overwrite", "COPY", "/alice/work/", "/alice/copy/", []string{"Overwrite", "F"}, 412},
		{"copy it again", "COPY", "/alice/work/", "/alice/copy/", nil, 204},
		{"copy with Depth 1", "COPY", "/alice/work/", "/alice/d1/", []string{"Depth", "1"}, 400},
		{"move with Depth 0", "MOVE", "/alice/work/", "/alice/d0/", []string{"Depth", "0"}, 400},
		{"bad Overwrite", "COPY", "/alice/work/", "/alice/x/", []string{"Overwrite", "maybe"}, 400},
		{"onto itself", "MOVE", "/alice/work/", "/alice/work/", nil, 403},
		{"into itself", "COPY", "/alice/plain/", "/alice/plain/inner/deeper/", nil, 403},
		{"over its own parent", "MOVE", "/alice/plain/inner/", "/alice/plain/", nil, 403},
		{"into an address book", "COPY", "/alice/plain/", "/alice/work/plain/", nil, 403},
		{"without a parent", "COPY", "/alice/work/", "/alice/no/such/", nil, 409},
		{"to someone else", "COPY", "/alice/work/", "/bob/work/", nil, 403},
		{"shallow copy of a plain collection", "COPY", "/alice/plain/", "/alice/shallow/", []string{"Depth", "0"}, 201},
		{"deep copy of a plain collection", "COPY", "/alice/plain/", "/alice/deep/", nil, 201},
		{"an object over a collection", "COPY", "/alice/plain/inner/f", "/alice/deep/inner/", nil, 204},
		{"move the copy", "MOVE", "/alice/copy/", "/alice/moved/", nil, 201},
		{"move the address book over a plain collection", "MOVE", "/alice/moved/", "/alice/deep/", nil, 204},
		{"an object into the home", "COPY", "/alice/work/a.vcf", "/alice/a.vcf", nil, 409},
		{"a missing source", "MOVE", "/alice/nothing/", "/alice/else/", nil, 404},
		{"the home", "COPY", "/alice/", "/alice/home2/", nil, 403},
	}
	workTok, workTag := syncTok("/alice/work/"), ctag("/alice/work/")
	for _, st := range steps {
		before := head()
		r := s.Do("alice", st.method, st.from, "", append([]string{"Destination", s.URL + st.to}, st.headers...)...)
		if r.Status != st.want {
			t.Errorf("%s: got %d, want %d (%s)", st.name, r.Status, st.want, r.Body)
		}
		if r.Status >= 400 && head() != before {
			t.Errorf("%s: refused with %d but the store changed", st.name, r.Status)
		}
	}
	checks := []struct{ path, etag string }{
		{"/alice/work/a.vcf", etags["a"]},
		{"/alice/deep/a.vcf", etags["a"]},
		{"/alice/deep/b.vcf", etags["b"]},
		{"/alice/moved/a.vcf", ""},
		{"/alice/copy/a.vcf", ""},
		{"/alice/deep/inner/f", ""},
		{"/alice/shallow/inner/f", ""},
		{"/alice/plain/inner/f", `"`},
	}
	for _, c := range checks {
		r := s.Do("alice", "GET", c.path, "")
		switch {
		case c.etag == "" && r.Status != 404:
			t.Errorf("GET %s: got %d, want 404", c.path, r.Status)
		case c.etag != "" && (r.Status != 200 || !strings.HasPrefix(r.Header.Get("ETag"), c.etag)):
			t.Errorf("GET %s: got %d ETag %s, want 200 ETag %s", c.path, r.Status, r.Header.Get("ETag"), c.etag)
		}
	}
	r := s.Do("alice", "PROPFIND", "/alice/deep/", `<propfind xmlns="DAV:"><prop><displayname/><resourcetype/></prop></propfind>`, "Depth", "0")
	if !strings.Contains(r.Body, "<d:displayname>Work</d:displayname>") || !strings.Contains(r.Body, "<card:addressbook/>") {
		t.Errorf("the moved address book lost its properties: %s", r.Body)
	}
	if r := s.Do("alice", "PROPFIND", "/alice/shallow/", "", "Depth", "1"); r.Status != 207 || strings.Contains(r.Body, "inner") {
		t.Errorf("shallow copy: %d %s", r.Status, r.Body)
	}
	// The source's sync token and ctag move on with a copy out of it only
	// when it changes; the destination's report what arrived.
	if tag := ctag("/alice/work/"); tag != workTag {
		t.Errorf("copying out of /alice/work/ changed its ctag from %s to %s", workTag, tag)
	}
	if syncTok("/alice/work/") == workTok {
		t.Errorf("the sync token did not move on")
	}
	r = s.Do("alice", "REPORT", "/alice/deep/", syncReport(workTok))
	for _, want := range []string{"/alice/deep/a.vcf</d:href><d:propstat>", "/alice/deep/b.vcf</d:href><d:propstat>"} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("sync of the destination lacks %s: %s", want, r.Body)
		}
	}
	// The moved address book still refuses UID clashes: its index moved too.
	if r := s.Do("alice", "PUT", "/alice/deep/c.vcf", vcf("a", "again"), "Content-Type", vcardType); r.Status != 409 {
		t.Errorf("UID clash in the moved address book: got %d, want 409", r.Status)
	}
	// A move refused for a UID clash leaves both sides as they were.
	before := head()
	if r := s.Do("alice", "MOVE", "/alice/work/a.vcf", "", "Destination", s.URL+"/alice/deep/other.vcf"); r.Status != 409 || !strings.Contains(r.Body, "no-uid-conflict") {
		t.Errorf("a MOVE onto a UID clash: got %d %s, want 409 no-uid-conflict", r.Status, r.Body)
	}
	if head() != before || s.Do("alice", "GET", "/alice/work/a.vcf", "").Status != 200 {
		t.Errorf("a refused MOVE changed the store")
	}
}
