package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/mail/mailstore"
)

const (
	xssSubject = `<script>alert("subject")</script>`
	xssName    = `<img src=x onerror=alert("name")>`
	xssTitle   = `"><svg onload=alert("title")>`
)

// TestStoredXSS: HTML and script in a subject, a contact's name and an
// event's title come out escaped on every page that shows them.
func TestStoredXSS(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", xssSubject)
	e.davPut(e.contacts, "alice", "/alice/default/x.vcf", "text/vcard", vcard("x-1", xssName, "+1"))
	e.davPut(e.contacts, "alice", "/alice/default/x.vcf", "text/vcard", vcard("x-1", xssName, "+2"))
	e.davPut(e.calendar, "alice", "/alice/default/x.ics", "text/calendar", vevent("x-2", xssTitle, "20261207T100000Z"))
	e.expunge("alice", xssSubject)
	// A mailbox named with markup (IMAP allows it).
	u, _ := e.ms.User(context.Background(), "alice")
	if err := e.ms.Update(context.Background(), "alice", "mail: create x", func(w *mailstore.Writer) error {
		_, err := w.Create(u, `<script>alert("box")</script>`, "")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c, _ := e.login("alice")
	p := e.timeline("alice", "limit=100")
	pages := []string{"/console/", "/console/?service=mail&folder=INBOX", "/console/storage", "/console/restore", "/console/account", "/console/users"}
	for _, x := range p.Entries {
		pages = append(pages, "/console/change/"+x.Rev)
	}
	var before string // the commit before the expunge
	for _, x := range p.Entries {
		if strings.Contains(x.Words[0], "deleted from INBOX") {
			before = x.Parent
		}
	}
	var l struct{ Messages []MessageView }
	e.api("GET", "/api/v1/users/alice/items?service=mail&folder=INBOX&rev="+before, "alice", "").json(t, &l)
	if len(l.Messages) != 1 {
		t.Fatalf("INBOX before the expunge: %+v", l)
	}
	pages = append(pages, "/console/message?"+url.Values{"rev": {before}, "box": {"INBOX"}, "key": {l.Messages[0].Key}}.Encode())
	seen := map[string]bool{}
	for _, pg := range pages {
		r := do(t, c, mustReq("GET", e.srv.URL+pg, nil))
		if r.status != 200 {
			t.Errorf("%s: %d", pg, r.status)
			continue
		}
		for _, bad := range []string{"<script>alert", "<img src=x", "<svg onload"} {
			if strings.Contains(r.body, bad) {
				t.Errorf("%s carries %q unescaped", pg, bad)
			}
		}
		for _, esc := range []string{"&lt;script&gt;alert", "&lt;img src=x", "&lt;svg onload"} {
			if strings.Contains(r.body, esc) {
				seen[esc] = true
			}
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: CSP %q", pg, csp)
		}
	}
	if len(seen) != 3 {
		t.Errorf("the pages showed only %v of the three hostile strings (escaped): the test saw too little", seen)
	}
	// The growth plot is SVG made of numbers and service names only.
	r := do(t, c, mustReq("GET", e.srv.URL+"/console/storage/growth.svg", nil))
	if r.status != 200 || !strings.HasPrefix(r.body, "<svg") || strings.Contains(r.body, "alert") {
		t.Errorf("growth.svg: %d %.200s", r.status, r.body)
	}
}

// TestCSRFAndCookies: the session cookie is Secure, HttpOnly and
// SameSite=Strict; every form refuses a POST without the session's token
// or with another's; the login form needs its pre-session token.
func TestCSRFAndCookies(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "hello")
	rev := e.timeline("alice", "").Entries[0].Rev
	c := e.client()
	r := do(t, c, mustReq("GET", e.srv.URL+"/console/login", nil))
	tok := formToken(t, r.body)
	// Without the login cookie's token.
	bare := e.client()
	r = do(t, bare, postForm(e.srv.URL+"/console/login", url.Values{"csrf": {tok}, "user": {"alice"}, "password": {passwords["alice"]}}))
	if r.status != 403 {
		t.Errorf("login without the pre-session cookie: %d", r.status)
	}
	res, err := c.Do(postForm(e.srv.URL+"/console/login", url.Values{"csrf": {tok}, "user": {"alice"}, "password": {passwords["alice"]}}))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var sc *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == sessionCookie && ck.Value != "" {
			sc = ck
		}
	}
	if sc == nil {
		t.Fatalf("no session cookie: %d %v", res.StatusCode, res.Header["Set-Cookie"])
	}
	if !sc.Secure || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie flags: %s", res.Header.Get("Set-Cookie"))
	}
	_, csrf := e.login("alice")
	forms := []struct {
		path string
		v    url.Values
	}{
		{"/console/undo/" + rev, url.Values{}},
		{"/console/restore", url.Values{"folder": {"mail:INBOX"}, "rev": {rev}}},
		{"/console/password", url.Values{"old": {passwords["alice"]}, "new": {"new-password-1"}}},
		{"/console/users/add", url.Values{"name": {"mallory"}, "password": {"mallory-password"}}},
		{"/console/users/password", url.Values{"name": {"bob"}, "password": {"bob-password-2"}}},
		{"/console/users/delete", url.Values{"name": {"bob"}}},
		{"/console/app-passwords/add", url.Values{"name": {"evil"}}},
		{"/console/app-passwords/delete", url.Values{"id": {"aaaaaa"}}},
		{"/console/logout", url.Values{}},
	}
	for _, f := range forms {
		for _, tokv := range []string{"", "wrong", csrf} {
			v := url.Values{}
			for k, x := range f.v {
				v[k] = x
			}
			if tokv != "" {
				v.Set("csrf", tokv)
			}
			r := do(t, c, postForm(e.srv.URL+f.path, v))
			if r.status != 403 {
				t.Errorf("POST %s with token %q: %d, want 403", f.path, tokv, r.status)
			}
		}
	}
	// Nothing of it happened.
	if _, err := e.st.LookupUser("mallory"); err == nil {
		t.Error("mallory was added without a valid token")
	}
	if _, err := e.st.LookupUser("bob"); err != nil {
		t.Error("bob was deleted without a valid token")
	}
	if aps, _ := e.st.AppPasswords("alice"); len(aps) != 0 {
		t.Errorf("app passwords made without a valid token: %+v", aps)
	}
	// The API: a cookie-authenticated write needs X-CSRF-Token.
	c2, csrf2 := e.login("alice")
	req := mustReq("POST", e.srv.URL+"/api/v1/users/alice/restore", strings.NewReader(`{"undo":"`+rev+`"}`))
	if r := do(t, c2, req); r.status != 403 {
		t.Errorf("API write with the cookie and no token: %d", r.status)
	}
	req = mustReq("POST", e.srv.URL+"/api/v1/users/alice/restore", strings.NewReader(`{"undo":"`+rev+`"}`))
	req.Header.Set("X-CSRF-Token", csrf2)
	if r := do(t, c2, req); r.status != 200 {
		t.Errorf("API write with the cookie and its token: %d %s", r.status, r.body)
	}
	// A form with the right token works; bob (no admin) is refused users.
	cb, csrfb := e.login("bob")
	if r := do(t, cb, postForm(e.srv.URL+"/console/users/delete", url.Values{"csrf": {csrfb}, "name": {"alice"}})); r.status != 403 {
		t.Errorf("bob deleting alice: %d", r.status)
	}
	if r := do(t, cb, mustReq("GET", e.srv.URL+"/console/users", nil)); r.status != 403 {
		t.Errorf("bob's users page: %d", r.status)
	}
	if r := do(t, cb, postForm(e.srv.URL+"/console/logout", url.Values{"csrf": {csrfb}})); r.status != http.StatusSeeOther {
		t.Errorf("logout: %d", r.status)
	}
	if r := do(t, cb, mustReq("GET", e.srv.URL+"/console/", nil)); r.status != http.StatusSeeOther {
		t.Errorf("timeline after logout: %d, want a redirect to login", r.status)
	}
}

// TestLoginRateLimited: console logins count against the same guard.Auth
// as IMAP's: after the free failures an attempt waits, right password or
// not, and the API's basic authentication is limited alike.
func TestLoginRateLimited(t *testing.T) {
	auth := guard.NewAuth(guard.AuthOptions{FreeFailures: 2, BaseDelay: time.Hour, MaxDelay: time.Hour})
	e := newEnv(t, func(o *Options) { o.Auth = auth })
	for i := 0; i < 3; i++ {
		if r := e.api("GET", "/api/v1/me", "alice", "", "wrong-password"); r.status != 401 {
			t.Fatalf("wrong password %d: %d", i, r.status)
		}
	}
	// The next attempt is delayed by an hour: it has not been answered
	// when its client gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := e.client()
	r := do(t, c, mustReq("GET", e.srv.URL+"/console/login", nil))
	req := postForm(e.srv.URL+"/console/login", url.Values{"csrf": {formToken(t, r.body)}, "user": {"alice"}, "password": {"wrong-again"}}).WithContext(ctx)
	if res, err := c.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("a login after 3 failures was answered at once: %d", res.StatusCode)
	}
	if st := auth.Stats(); st.Accounts == 0 {
		t.Errorf("the shared guard saw no attempt: %+v", st)
	}
}
