package console

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/calendar/caldav"
	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

var passwords = map[string]string{"alice": "alice-password", "bob": "bob-password"}

// env is a store with alice (an admin: git write) and bob, the mail index
// over it, CardDAV and CalDAV handlers, and the console on HTTPS.
type env struct {
	t        *testing.T
	st       *store.Store
	ms       *mailstore.Store
	c        *Console
	srv      *httptest.Server
	contacts *httptest.Server
	calendar *httptest.Server
}

func newEnv(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	st, err := store.InitData(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := st.AddUser(ctx, "alice", passwords["alice"], store.GitWrite); err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(ctx, "bob", passwords["bob"], store.GitNone); err != nil {
		t.Fatal(err)
	}
	ms, err := mailstore.Open(st, mailstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, ms: ms}
	// Failures are not delayed (TestLoginRateLimited has its own).
	o := Options{Store: st, App: "test", Mail: ms, Auth: guard.NewAuth(guard.AuthOptions{BaseDelay: time.Microsecond, MaxDelay: time.Microsecond})}
	for _, f := range opts {
		f(&o)
	}
	e.c = New(o)
	e.srv = httptest.NewTLSServer(e.c)
	e.contacts = httptest.NewServer(dav.NewHandler(dav.Options{Store: st, Kind: carddav.New(0), DefaultDisplayName: "Contacts"}))
	e.calendar = httptest.NewServer(dav.NewHandler(dav.Options{Store: st, Kind: caldav.New(0), DefaultDisplayName: "Calendar"}))
	t.Cleanup(func() {
		e.srv.Close()
		e.contacts.Close()
		e.calendar.Close()
		ms.Close()
		st.Close()
	})
	return e
}

func testMessage(subject string) []byte {
	return []byte("From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: " + subject +
		"\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <" + fmt.Sprint(time.Now().UnixNano()) + "@example.org>\r\n\r\nHello.\r\n")
}

// deliver adds messages to a user's INBOX as SMTP delivery does (its
// commit message).
func (e *env) deliver(user string, subjects ...string) {
	e.t.Helper()
	ctx := context.Background()
	u, err := e.ms.User(ctx, user)
	if err != nil {
		e.t.Fatal(err)
	}
	inbox, _ := u.Mailbox("INBOX")
	if err := e.ms.Update(ctx, "", fmt.Sprintf("mail: deliver to %d local, 0 remote", 1), func(w *mailstore.Writer) error {
		for _, s := range subjects {
			if _, err := w.Append(inbox, testMessage(s), nil, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

// expunge removes the INBOX message with subject as IMAP EXPUNGE does.
func (e *env) expunge(user, subject string) {
	e.t.Helper()
	ctx := context.Background()
	u, _ := e.ms.User(ctx, user)
	inbox, _ := u.Mailbox("INBOX")
	if err := e.ms.Update(ctx, user, "mail: expunge from INBOX", func(w *mailstore.Writer) error {
		for _, m := range inbox.Messages() {
			if m.Summary().Envelope.Subject == subject {
				return w.Expunge(inbox, m)
			}
		}
		return fmt.Errorf("no message %q", subject)
	}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) inboxSubjects(user string) []string {
	u, _ := e.ms.User(context.Background(), user)
	inbox, _ := u.Mailbox("INBOX")
	var out []string
	for _, m := range inbox.Messages() {
		out = append(out, m.Summary().Envelope.Subject)
	}
	return out
}

// davPut stores an object over CardDAV or CalDAV.
func (e *env) davPut(srv *httptest.Server, user, path, ctype, body string) {
	e.t.Helper()
	req, _ := http.NewRequest("PUT", srv.URL+path, strings.NewReader(body))
	req.SetBasicAuth(user, passwords[user])
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		e.t.Fatalf("PUT %s: %d %s", path, resp.StatusCode, b)
	}
}

func vcard(uid, fn, tel string) string {
	return "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:" + uid + "\r\nFN:" + fn + "\r\nN:;" + fn + ";;;\r\nTEL;TYPE=cell:" + tel + "\r\nEND:VCARD\r\n"
}

func vevent(uid, summary, start string) string {
	return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:" + uid + "\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:" + start +
		"\r\nDURATION:PT1H\r\nSUMMARY:" + summary + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
}

// client is an HTTPS client of the console with a cookie jar.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *e.srv.Client() // the same *Client each time: copied, so that each has its own jar
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

func do(t *testing.T, c *http.Client, req *http.Request) resp {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, string(b)}
}

// api sends an API request as user (no credentials when user is "",
// password pw when given).
func (e *env) api(method, path, user string, body string, pw ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if user != "" {
		p := passwords[user]
		if len(pw) > 0 {
			p = pw[0]
		}
		req.SetBasicAuth(user, p)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(e.t, e.srv.Client(), req)
}

// login signs user in through the login form and returns the client and
// the session's CSRF token.
func (e *env) login(user string) (*http.Client, string) {
	e.t.Helper()
	c := e.client()
	r := do(e.t, c, mustReq("GET", e.srv.URL+"/console/login", nil))
	tok := formToken(e.t, r.body)
	r = do(e.t, c, postForm(e.srv.URL+"/console/login", url.Values{"csrf": {tok}, "user": {user}, "password": {passwords[user]}}))
	if r.status != http.StatusSeeOther {
		e.t.Fatalf("login as %s: %d %s", user, r.status, r.body)
	}
	r = do(e.t, c, mustReq("GET", e.srv.URL+"/console/account", nil))
	if r.status != 200 {
		e.t.Fatalf("account page after login: %d", r.status)
	}
	return c, formToken(e.t, r.body)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func formToken(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

func mustReq(method, u string, body io.Reader) *http.Request {
	r, err := http.NewRequest(method, u, body)
	if err != nil {
		panic(err)
	}
	return r
}

func postForm(u string, v url.Values) *http.Request {
	r := mustReq("POST", u, strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func (e *env) timeline(user, query string) Page {
	e.t.Helper()
	r := e.api("GET", "/api/v1/users/"+user+"/timeline?"+query, user, "")
	if r.status != 200 {
		e.t.Fatalf("timeline: %d %s", r.status, r.body)
	}
	var p Page
	r.json(e.t, &p)
	return p
}

func words(p Page) []string {
	var out []string
	for _, e := range p.Entries {
		out = append(out, strings.Join(e.Words, "; ")+" ["+e.Protocol+"]")
	}
	return out
}

// TestTimelineInWords: mail delivered by SMTP, a contact's phone changed
// and an event moved over DAV appear in words, newest first, with their
// protocol; another user's changes do not; filters select.
func TestTimelineInWords(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "one", "two", "three")
	e.deliver("bob", "for bob")
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+1 555 0100"))
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+1 555 0199"))
	e.davPut(e.calendar, "alice", "/alice/default/dentist.ics", "text/calendar", vevent("ev-1", "Dentist", "20261207T100000Z"))
	e.davPut(e.calendar, "alice", "/alice/default/dentist.ics", "text/calendar", vevent("ev-1", "Dentist", "20261208T100000Z"))
	p := e.timeline("alice", "")
	got := strings.Join(words(p), "\n")
	for _, want := range []string{
		"event “Dentist” moved to Tuesday 8 Dec 2026 10:00 UTC [CalDAV]",
		"event “Dentist” added to Calendar [CalDAV]",
		"contact “Jane Doe”: phone changed [CardDAV]",
		"contact “Jane Doe” added to Contacts [CardDAV]",
		"3 messages arrived in INBOX [SMTP]",
		"account created [administration]",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("timeline lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "for bob") || strings.Contains(got, "1 message arrived") {
		t.Errorf("alice's timeline shows bob's mail:\n%s", got)
	}
	if p.Entries[0].Words[0] != "event “Dentist” moved to Tuesday 8 Dec 2026 10:00 UTC" {
		t.Errorf("newest first: got %q", p.Entries[0].Words)
	}
	// DAV commits name their client (the User-Agent).
	if c := p.Entries[0].Client; !strings.HasPrefix(c, "Go-http-client/") {
		t.Errorf("the event's client: %q", c)
	}
	// Filters: a service, a folder, and pages that chain.
	for q, n := range map[string]int{"service=mail": 2, "service=mail&folder=INBOX": 2, "service=account": 1, "service=contacts": 3, "service=calendar&folder=default": 3} {
		if got := len(e.timeline("alice", q).Entries); got != n {
			t.Errorf("%s: %d entries, want %d:\n%s", q, got, n, strings.Join(words(e.timeline("alice", q)), "\n"))
		}
	}
	all := e.timeline("alice", "limit=100").Entries
	var paged []Entry
	cursor := ""
	for i := 0; i < 20; i++ {
		p := e.timeline("alice", "limit=2&cursor="+cursor)
		paged = append(paged, p.Entries...)
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if len(paged) != len(all) {
		t.Errorf("pages of 2 gave %d entries, one page %d", len(paged), len(all))
	}
	future := time.Now().Add(48 * time.Hour).Format("2006-01-02")
	if n := len(e.timeline("alice", "after="+future).Entries); n != 0 {
		t.Errorf("after tomorrow: %d entries", n)
	}
	if n := len(e.timeline("alice", "before="+future).Entries); n != len(all) {
		t.Errorf("before tomorrow: %d entries, want %d", n, len(all))
	}
}

// TestChangeFields: one change opened shows the field before and after,
// and the messages a delivery added.
func TestChangeFields(t *testing.T) {
	e := newEnv(t)
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+1 555 0100"))
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+1 555 0199"))
	e.deliver("alice", "Quarterly report")
	p := e.timeline("alice", "")
	var d Detail
	r := e.api("GET", "/api/v1/users/alice/changes/"+p.Entries[0].Rev, "alice", "")
	r.json(t, &d)
	if len(d.Mail) != 1 || len(d.Mail[0].Added) != 1 || d.Mail[0].Added[0].Subject != "Quarterly report" || d.Mail[0].Mailbox != "INBOX" {
		t.Errorf("delivery detail: %s", r.body)
	}
	var phone string
	for _, x := range p.Entries {
		if strings.Contains(x.Words[0], "phone changed") {
			phone = x.Rev
		}
	}
	r = e.api("GET", "/api/v1/users/alice/changes/"+phone, "alice", "")
	d = Detail{}
	r.json(t, &d)
	if len(d.Objects) != 1 || len(d.Objects[0].Fields) != 1 {
		t.Fatalf("contact detail: %s", r.body)
	}
	f := d.Objects[0].Fields[0]
	if f.Label != "phone" || f.Before != "+1 555 0100 (cell)" || f.After != "+1 555 0199 (cell)" {
		t.Errorf("phone change: %+v", f)
	}
}

// TestUndoDeletedMessage: a message expunged over IMAP comes back when
// the expunge is undone, with a new UID and the same content, and an open
// session is told; undoing twice does not duplicate it.
func TestUndoDeletedMessage(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "keep me", "other")
	e.expunge("alice", "keep me")
	u, _ := e.ms.User(context.Background(), "alice")
	inbox, _ := u.Mailbox("INBOX")
	v, _ := inbox.Open(true)
	defer v.Close()
	p := e.timeline("alice", "service=mail")
	if got := p.Entries[0].Words[0]; got != "message “keep me” deleted from INBOX" || p.Entries[0].Protocol != "IMAP" {
		t.Fatalf("expunge in words: %q [%s]", got, p.Entries[0].Protocol)
	}
	r := e.api("POST", "/api/v1/users/alice/restore", "alice", `{"undo":"`+p.Entries[0].Rev+`"}`)
	if r.status != 200 {
		t.Fatalf("undo: %d %s", r.status, r.body)
	}
	var res RestoreResult
	r.json(t, &res)
	if res.MessagesAdded != 1 {
		t.Errorf("undo: %s", r.body)
	}
	select {
	case <-v.Wake():
	case <-time.After(time.Minute):
		t.Fatal("an open session was not told")
	}
	if got := fmt.Sprint(e.inboxSubjects("alice")); got != "[other keep me]" {
		t.Errorf("INBOX after undo: %s", got)
	}
	r = e.api("POST", "/api/v1/users/alice/restore", "alice", `{"undo":"`+p.Entries[0].Rev+`"}`)
	if got := fmt.Sprint(e.inboxSubjects("alice")); r.status != 200 || got != "[other keep me]" {
		t.Errorf("second undo: %d %s; INBOX %s", r.status, r.body, got)
	}
	p = e.timeline("alice", "service=mail")
	if got := p.Entries[0]; !strings.Contains(got.Words[0], "restored to INBOX") || got.Protocol != "API" {
		t.Errorf("the undo in the timeline: %q [%s]", got.Words, got.Protocol)
	}
}

// TestRestoreFolders: a mailbox and an address book brought back to an
// earlier time; a DAV client's sync token sees the change.
func TestRestoreFolders(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "a", "b")
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+1 555 0100"))
	point := e.timeline("alice", "").Entries[0].Rev
	e.expunge("alice", "a")
	e.deliver("alice", "c")
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Roe", "+1 555 0100"))
	e.davPut(e.contacts, "alice", "/alice/default/john.vcf", "text/vcard", vcard("john-1", "John", "+1 555 0101"))
	r := e.api("POST", "/api/v1/users/alice/restore", "alice", `{"service":"mail","folder":"INBOX","rev":"`+point+`"}`)
	if r.status != 200 {
		t.Fatalf("restore INBOX: %d %s", r.status, r.body)
	}
	if got := fmt.Sprint(e.inboxSubjects("alice")); got != "[b a]" {
		t.Errorf("INBOX after restore: %s", got)
	}
	token := e.syncToken("/alice/default/")
	r = e.api("POST", "/api/v1/users/alice/restore", "alice", `{"service":"contacts","folder":"default","rev":"`+point+`"}`)
	if r.status != 200 {
		t.Fatalf("restore contacts: %d %s", r.status, r.body)
	}
	if e.syncToken("/alice/default/") == token {
		t.Error("the address book's sync token did not change")
	}
	d := e.get(e.contacts, "alice", "/alice/default/jane.vcf")
	if !strings.Contains(d, "FN:Jane Doe") {
		t.Errorf("jane after restore: %q", d)
	}
	if got := e.get(e.contacts, "alice", "/alice/default/john.vcf"); got != "404" {
		t.Errorf("john after restore: %q", got)
	}
	// At a time: the same through "at".
	at := time.Now().UTC().Add(time.Hour).Format(time.RFC3339)
	r = e.api("POST", "/api/v1/users/alice/restore", "alice", `{"service":"contacts","folder":"default","at":"`+at+`"}`)
	if r.status != 200 {
		t.Errorf("restore to now: %d %s", r.status, r.body)
	}
	var res RestoreResult
	r.json(t, &res)
	if res.Items != 0 {
		t.Errorf("restore to now changed %d items", res.Items)
	}
}

func (e *env) get(srv *httptest.Server, user, path string) string {
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	req.SetBasicAuth(user, passwords[user])
	r := do(e.t, http.DefaultClient, req)
	if r.status == 404 {
		return "404"
	}
	return r.body
}

var syncTokenRE = regexp.MustCompile(`<[a-z:]*sync-token>([^<]+)<`)

func (e *env) syncToken(path string) string {
	req, _ := http.NewRequest("PROPFIND", e.contacts.URL+path, strings.NewReader(`<propfind xmlns="DAV:"><prop><sync-token/></prop></propfind>`))
	req.SetBasicAuth("alice", passwords["alice"])
	req.Header.Set("Depth", "0")
	r := do(e.t, http.DefaultClient, req)
	m := syncTokenRE.FindStringSubmatch(r.body)
	if m == nil {
		e.t.Fatalf("no sync token: %s", r.body)
	}
	return m[1]
}

// TestAPIAuthAndScope: every endpoint refuses no or wrong credentials
// (401), another user's paths (403), revisions that do not exist (404);
// admin endpoints are for admins.
func TestAPIAuthAndScope(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "hello")
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+1"))
	rev := e.timeline("alice", "").Entries[0].Rev
	missing := strings.Repeat("ab", 20)
	key := ""
	{
		var l struct{ Messages []MessageView }
		e.api("GET", "/api/v1/users/alice/items?service=mail&folder=INBOX", "alice", "").json(t, &l)
		if len(l.Messages) != 1 {
			t.Fatalf("INBOX listing: %+v", l)
		}
		key = l.Messages[0].Key
	}
	endpoints := []struct{ method, path, body string }{
		{"GET", "/api/v1/users/%s/timeline", ""},
		{"GET", "/api/v1/users/%s/changes/" + rev, ""},
		{"GET", "/api/v1/users/%s/folders", ""},
		{"GET", "/api/v1/users/%s/items?service=mail&folder=INBOX", ""},
		{"GET", "/api/v1/users/%s/items?service=contacts&folder=default", ""},
		{"GET", "/api/v1/users/%s/item?service=mail&folder=INBOX&item=" + key, ""},
		{"GET", "/api/v1/users/%s/item?service=contacts&folder=default&item=jane.vcf&format=raw", ""},
		{"GET", "/api/v1/users/%s/history?service=contacts&folder=default&item=jane.vcf", ""},
		{"GET", "/api/v1/users/%s/diff?from=" + rev + "~1&to=" + rev, ""},
		{"GET", "/api/v1/users/%s/storage", ""},
		{"POST", "/api/v1/users/%s/restore", `{"service":"contacts","folder":"default","rev":"` + rev + `"}`},
	}
	for _, ep := range endpoints {
		p := fmt.Sprintf(ep.path, "alice")
		if r := e.api(ep.method, p, "", ep.body); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s without credentials: %d", ep.method, p, r.status)
		}
		if r := e.api(ep.method, p, "alice", ep.body, "wrong-password"); r.status != 401 {
			t.Errorf("%s %s with a wrong password: %d", ep.method, p, r.status)
		}
		if r := e.api(ep.method, p, "alice", ep.body); r.status != 200 {
			t.Errorf("%s %s: %d %s", ep.method, p, r.status, r.body)
		}
		if r := e.api(ep.method, fmt.Sprintf(ep.path, "bob"), "alice", ep.body); r.status != 403 {
			t.Errorf("%s %s as alice: %d, want 403", ep.method, fmt.Sprintf(ep.path, "bob"), r.status)
		}
		if r := e.api(ep.method, p, "bob", ep.body); r.status != 403 {
			t.Errorf("%s %s as bob: %d, want 403", ep.method, p, r.status)
		}
	}
	for _, p := range []string{
		"/api/v1/users/alice/changes/" + missing,
		"/api/v1/users/alice/changes/nonsense",
		"/api/v1/users/alice/folders?rev=" + missing,
		"/api/v1/users/alice/items?service=mail&folder=INBOX&rev=" + missing,
		"/api/v1/users/alice/item?service=mail&folder=INBOX&item=" + key + "&rev=" + missing,
		"/api/v1/users/alice/item?service=mail&folder=INBOX&item=nokey",
		"/api/v1/users/alice/items?service=mail&folder=NoSuchBox",
		"/api/v1/users/alice/diff?from=" + missing,
		"/api/v1/users/alice/timeline?cursor=" + missing,
	} {
		if r := e.api("GET", p, "alice", ""); r.status != 404 {
			t.Errorf("GET %s: %d, want 404 (%s)", p, r.status, r.body)
		}
	}
	if r := e.api("POST", "/api/v1/users/alice/restore", "alice", `{"undo":"`+missing+`"}`); r.status != 404 {
		t.Errorf("undo of a missing revision: %d", r.status)
	}
	for _, p := range []string{"/api/v1/users/alice/timeline?limit=0", "/api/v1/users/alice/timeline?after=yesterday", "/api/v1/users/alice/items?service=nope&folder=x"} {
		if r := e.api("GET", p, "alice", ""); r.status != 400 {
			t.Errorf("GET %s: %d, want 400", p, r.status)
		}
	}
	// Admin endpoints and metrics.
	if r := e.api("GET", "/api/v1/admin/users", "bob", ""); r.status != 403 {
		t.Errorf("users as bob: %d", r.status)
	}
	if r := e.api("GET", "/metrics", "bob", ""); r.status != 403 {
		t.Errorf("metrics as bob: %d", r.status)
	}
	if r := e.api("GET", "/metrics", "", ""); r.status != 401 {
		t.Errorf("metrics without credentials: %d", r.status)
	}
	if r := e.api("GET", "/metrics", "alice", ""); r.status != 200 || !strings.Contains(r.body, "nymote_console_requests_total") || !strings.Contains(r.body, "nymote_store_bytes") {
		t.Errorf("metrics: %d %.300s", r.status, r.body)
	}
	if r := e.api("POST", "/api/v1/admin/users", "alice", `{"name":"carol","password":"carol-password"}`); r.status != 201 {
		t.Errorf("add carol: %d %s", r.status, r.body)
	}
	if r := e.api("POST", "/api/v1/admin/users", "alice", `{"name":"carol","password":"carol-password"}`); r.status != 409 {
		t.Errorf("add carol again: %d %s", r.status, r.body)
	}
	if r := e.api("POST", "/api/v1/admin/users", "alice", `{"name":"<b>x","password":"carol-password"}`); r.status != 400 {
		t.Errorf("add a bad name: %d %s", r.status, r.body)
	}
	if r := e.api("PUT", "/api/v1/admin/users/carol/password", "alice", `{"password":"carol-password-2"}`); r.status != 204 {
		t.Errorf("carol's password: %d %s", r.status, r.body)
	}
	if r := e.api("GET", "/api/v1/me", "carol", "", "carol-password-2"); r.status != 200 {
		t.Errorf("carol's new password: %d", r.status)
	}
	if r := e.api("DELETE", "/api/v1/admin/users/carol", "alice", ""); r.status != 204 {
		t.Errorf("delete carol: %d %s", r.status, r.body)
	}
	if r := e.api("DELETE", "/api/v1/admin/users/carol", "alice", ""); r.status != 404 {
		t.Errorf("delete carol again: %d %s", r.status, r.body)
	}
	if r := e.api("GET", "/api/openapi.json", "", ""); r.status != 200 || !json.Valid([]byte(r.body)) {
		t.Errorf("openapi: %d", r.status)
	}
}

// TestItemsAtRevision: a folder listed at an old revision shows what it
// held then; an item read raw is what was stored.
func TestItemsAtRevision(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "first")
	old := e.timeline("alice", "").Entries[0].Rev
	e.deliver("alice", "second")
	var l struct {
		Messages []MessageView
	}
	e.api("GET", "/api/v1/users/alice/items?service=mail&folder=INBOX&rev="+old, "alice", "").json(t, &l)
	if len(l.Messages) != 1 || l.Messages[0].Subject != "first" {
		t.Fatalf("INBOX at %s: %+v", old, l.Messages)
	}
	r := e.api("GET", "/api/v1/users/alice/item?service=mail&folder=INBOX&format=raw&rev="+old+"&item="+l.Messages[0].Key, "alice", "")
	if r.status != 200 || !strings.Contains(r.body, "Subject: first") || r.header.Get("Content-Type") != "message/rfc822" {
		t.Errorf("raw message: %d %q %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	e.api("GET", "/api/v1/users/alice/items?service=mail&folder=INBOX", "alice", "").json(t, &l)
	if len(l.Messages) != 2 {
		t.Errorf("INBOX now: %+v", l.Messages)
	}
	var diff struct {
		Changes []struct{ Path, Action string }
	}
	e.api("GET", "/api/v1/users/alice/diff?service=mail&from="+old, "alice", "").json(t, &diff)
	if len(diff.Changes) < 2 {
		t.Errorf("diff: %+v", diff)
	}
}

// slowWriter blocks every Write until released, as a client that does not
// read.
type slowWriter struct {
	gate chan struct{}
	mu   sync.Mutex
	buf  strings.Builder
}

func (w *slowWriter) Write(b []byte) (int, error) {
	<-w.gate
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

// TestWatchSlowReader: a stream whose client does not read while 1000
// commits are made holds a bounded queue (the watcher coalesces), and
// tells the client to resync; then it goes on with single changes.
func TestWatchSlowReader(t *testing.T) {
	e := newEnv(t)
	wt, err := e.st.Watch("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer wt.Close()
	ctx, cancel := context.WithCancel(context.Background())
	w := &slowWriter{gate: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- e.c.stream(ctx, w, nil, wt, "alice") }()
	e.deliver("alice", "first")
	// The stream is now blocked writing the first event; these pile up.
	for i := 0; i < 300; i++ {
		e.deliver("alice", fmt.Sprint("m", i))
	}
	close(w.gate) // the client reads again
	e.deliver("alice", "last")
	deadline := time.After(time.Minute)
	for !strings.Contains(w.bufString(), "last") && !strings.Contains(w.bufString(), "1 message arrived in INBOX") {
		select {
		case <-deadline:
			t.Fatalf("the stream did not recover:\n%.2000s", w.bufString())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
	out := w.bufString()
	if !strings.Contains(out, "event: resync") {
		t.Errorf("no resync marker after a slow reader:\n%.2000s", out)
	}
	if n := strings.Count(out, "event: "); n > 280 {
		t.Errorf("%d events for 302 commits: the queue was not bounded", n)
	}
}

func (w *slowWriter) bufString() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestWatchHTTP: the SSE stream over HTTP gives the change in words.
func TestWatchHTTP(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/users/alice/watch", nil)
	req.SetBasicAuth("alice", passwords["alice"])
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", res.Header.Get("Content-Type"))
	}
	buf := make([]byte, 4096)
	n, _ := res.Body.Read(buf) // the hello event
	if !strings.Contains(string(buf[:n]), "event: hello") {
		t.Fatalf("first event: %q", buf[:n])
	}
	e.deliver("bob", "not for alice")
	e.deliver("alice", "for alice")
	var got strings.Builder
	for !strings.Contains(got.String(), "for alice") {
		n, err := res.Body.Read(buf)
		if err != nil {
			t.Fatalf("stream: %v (%q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	if strings.Contains(got.String(), "not for alice") {
		t.Errorf("alice's stream carried bob's change: %s", got.String())
	}
}

var _ = imap.FlagSeen
var _ = tls.VersionTLS12

// TestUndoConflict: undoing a change to a contact that was changed again
// since is a conflict (409), and nothing is written.
func TestUndoConflict(t *testing.T) {
	e := newEnv(t)
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+1"))
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+2"))
	first := e.timeline("alice", "service=contacts").Entries[0].Rev
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+3"))
	head, _ := e.st.Resolve("")
	r := e.api("POST", "/api/v1/users/alice/restore", "alice", `{"undo":"`+first+`"}`)
	if r.status != 409 || !strings.Contains(r.body, "jane.vcf") && !strings.Contains(r.body, "contacts/alice") {
		t.Errorf("undo of a change overwritten since: %d %s", r.status, r.body)
	}
	if now, _ := e.st.Resolve(""); now != head {
		t.Error("a conflicting undo wrote a commit")
	}
	// Undoing the newest change works, and puts +2 back.
	last := e.timeline("alice", "service=contacts").Entries[0].Rev
	if r := e.api("POST", "/api/v1/users/alice/restore", "alice", `{"undo":"`+last+`"}`); r.status != 200 {
		t.Fatalf("undo of the newest change: %d %s", r.status, r.body)
	}
	if got := e.get(e.contacts, "alice", "/alice/default/jane.vcf"); !strings.Contains(got, "TEL;TYPE=cell:+2") {
		t.Errorf("after undo: %q", got)
	}
}
