package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// davPutAs is davPut with a given password; it returns the status.
func (e *env) davPutAs(srv *httptest.Server, user, password, path, body string) int {
	e.t.Helper()
	req, _ := http.NewRequest("PUT", srv.URL+path, strings.NewReader(body))
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "text/vcard")
	req.Header.Set("User-Agent", "TestPhone/1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAppPasswordsAPI: a user makes, lists and revokes app passwords
// through the API; CardDAV takes one and its changes name it in the
// timeline; the API itself does not take it; another user's are 403.
func TestAppPasswordsAPI(t *testing.T) {
	e := newEnv(t)
	r := e.api("POST", "/api/v1/users/alice/app-passwords", "alice", `{"name":"phone"}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var made appPasswordJSON
	r.json(t, &made)
	if made.Name != "phone" || made.ID == "" || !strings.HasPrefix(made.Password, made.ID+"-") {
		t.Fatalf("create answered %+v", made)
	}
	for _, tc := range []struct {
		body string
		want int
	}{{`{"name":"phone"}`, 409}, {`{"name":""}`, 400}, {`{"name":"a\nb"}`, 400}, {`{"nam`, 400}} {
		if r := e.api("POST", "/api/v1/users/alice/app-passwords", "alice", tc.body); r.status != tc.want {
			t.Errorf("create %s: %d %s, want %d", tc.body, r.status, r.body, tc.want)
		}
	}
	r = e.api("GET", "/api/v1/users/alice/app-passwords", "alice", "")
	if r.status != 200 || !strings.Contains(r.body, `"phone"`) || strings.Contains(r.body, made.Password) || strings.Contains(r.body, `"password"`) {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	// Another user's: neither seen nor revoked; nor without credentials.
	for _, tc := range []struct{ method, path, user string }{
		{"GET", "/api/v1/users/alice/app-passwords", "bob"},
		{"DELETE", "/api/v1/users/alice/app-passwords/" + made.ID, "bob"},
		{"POST", "/api/v1/users/alice/app-passwords", "bob"},
	} {
		body := ""
		if tc.method == "POST" {
			body = `{"name":"bobs"}`
		}
		if r := e.api(tc.method, tc.path, tc.user, body); r.status != 403 || strings.Contains(r.body, "phone") {
			t.Errorf("%s %s as %s: %d %s, want 403", tc.method, tc.path, tc.user, r.status, r.body)
		}
		if r := e.api(tc.method, tc.path, "", body); r.status != 401 {
			t.Errorf("%s %s without credentials: %d, want 401", tc.method, tc.path, r.status)
		}
	}
	if r := e.api("GET", "/api/v1/users/bob/app-passwords", "bob", ""); r.status != 200 || strings.Contains(r.body, "phone") {
		t.Errorf("bob's list: %d %s", r.status, r.body)
	}
	// The API (like the console) takes the user's own password only.
	if r := e.api("GET", "/api/v1/users/alice/app-passwords", "alice", "", made.Password); r.status != 401 {
		t.Errorf("API with an app password: %d, want 401", r.status)
	}
	// CardDAV takes it, and the timeline says which app password.
	if st := e.davPutAs(e.contacts, "alice", made.Password, "/alice/default/jane.vcf", vcard("jane-1", "Jane Doe", "+1 555 0100")); st != 201 {
		t.Fatalf("CardDAV PUT with the app password: %d", st)
	}
	p := e.timeline("alice", "service=contacts")
	if len(p.Entries) == 0 || p.Entries[0].Client != "TestPhone/1.0 (app password phone)" || p.Entries[0].Protocol != "CardDAV" {
		t.Errorf("timeline entry: %+v, want CardDAV by TestPhone/1.0 (app password phone)", p.Entries)
	}
	if r := e.api("DELETE", "/api/v1/users/alice/app-passwords/"+made.ID, "alice", ""); r.status != 204 {
		t.Errorf("revoke: %d %s", r.status, r.body)
	}
	if r := e.api("DELETE", "/api/v1/users/alice/app-passwords/"+made.ID, "alice", ""); r.status != 404 {
		t.Errorf("revoke again: %d %s, want 404", r.status, r.body)
	}
	if st := e.davPutAs(e.contacts, "alice", made.Password, "/alice/default/jane.vcf", vcard("jane-1", "Jane Doe", "+1 555 0101")); st != 401 {
		t.Errorf("CardDAV PUT with the revoked app password: %d, want 401", st)
	}
}

var newAppPasswordRE = regexp.MustCompile(`<code id="new-app-password">([^<]+)</code>`)

// TestAppPasswordsPages: the account page makes an app password, shows it
// once, lists it by name (escaped) and revokes it.
func TestAppPasswordsPages(t *testing.T) {
	e := newEnv(t)
	c, csrf := e.login("bob")
	r := do(t, c, postForm(e.srv.URL+"/console/app-passwords/add", url.Values{"csrf": {csrf}, "name": {`<script>alert(1)</script>`}}))
	m := newAppPasswordRE.FindStringSubmatch(r.body)
	if r.status != 200 || m == nil {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	pw := m[1]
	if strings.Contains(r.body, "<script>alert") {
		t.Errorf("the name is not escaped on the new password's page")
	}
	if st := e.davPutAs(e.contacts, "bob", pw, "/bob/default/a.vcf", vcard("a", "A", "1")); st != 201 {
		t.Errorf("CardDAV with the password the page showed: %d", st)
	}
	r = do(t, c, mustReq("GET", e.srv.URL+"/console/account", nil))
	if !strings.Contains(r.body, "&lt;script&gt;alert(1)&lt;/script&gt;") || strings.Contains(r.body, "<script>alert") || strings.Contains(r.body, pw) {
		t.Errorf("account page: want the name escaped and the password not shown again:\n%s", r.body)
	}
	ids := regexp.MustCompile(`name="id" value="([a-z0-9]+)"`).FindAllStringSubmatch(r.body, -1)
	if len(ids) != 1 {
		t.Fatalf("account page lists %d app passwords to revoke, want 1", len(ids))
	}
	// alice's page does not show bob's.
	ca, _ := e.login("alice")
	if r := do(t, ca, mustReq("GET", e.srv.URL+"/console/account", nil)); strings.Contains(r.body, ids[0][1]) || strings.Contains(r.body, "alert(1)") {
		t.Errorf("alice's account page shows bob's app password")
	}
	r = do(t, c, postForm(e.srv.URL+"/console/app-passwords/delete", url.Values{"csrf": {csrf}, "id": {ids[0][1]}}))
	if r.status != http.StatusSeeOther {
		t.Errorf("revoke: %d %s", r.status, r.body)
	}
	if st := e.davPutAs(e.contacts, "bob", pw, "/bob/default/a.vcf", vcard("a", "A", "2")); st != 401 {
		t.Errorf("CardDAV with the revoked password: %d, want 401", st)
	}
}
