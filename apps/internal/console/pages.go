package console

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

//go:embed templates/*.html static/*
var files embed.FS

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"join":  strings.Join,
	"list":  func(s ...string) []string { return s },
	"flags": func(v any) string { return strings.TrimSuffix(strings.TrimPrefix(fmt.Sprint(v), "["), "]") },
	"bytes": humanBytes,
	"query": func(kv ...string) template.URL {
		q := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				q.Set(kv[i], kv[i+1])
			}
		}
		return template.URL(q.Encode())
	},
}).ParseFS(files, "templates/*.html"))

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// view is what every page template gets.
type view struct {
	App    string
	Title  string
	User   string
	Admin  bool
	CSRF   string
	Flash  string
	Error  string
	Active string
	Data   any
}

// pageFunc serves a page for a signed-in user.
type pageFunc func(w http.ResponseWriter, r *http.Request, s *session) error

// page wraps a page handler: without a session it sends the browser to
// the login page.
func (c *Console) page(fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil || !c.userExists(s.user) {
			http.Redirect(w, r, "/console/login?"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
			return
		}
		if err := fn(w, r, s); err != nil {
			c.pageError(w, r, s, err)
		}
	}
}

// form wraps a POST handler: a session and its CSRF token are required.
func (c *Console) form(fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		s := c.session(r)
		if s == nil || !c.userExists(s.user) {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if !sameToken(r.PostFormValue("csrf"), s.csrf) {
			http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		if err := fn(w, r, s); err != nil {
			c.pageError(w, r, s, err)
		}
	}
}

func (c *Console) pageError(w http.ResponseWriter, r *http.Request, s *session, err error) {
	st := statusOf(err)
	msg := err.Error()
	if st == 500 {
		c.log.Error("console: request failed", "path", r.URL.Path, "err", err)
		msg = "internal error (see the server's log)"
	}
	c.render(w, st, "error", s, "Error", msg)
}

func (c *Console) render(w http.ResponseWriter, status int, name string, s *session, title string, data any) {
	v := view{App: c.opts.App, Title: title, Active: name, Data: data}
	if s != nil {
		v.User, v.CSRF, v.Admin = s.user, s.csrf, c.isAdmin(s.user)
	}
	if e, ok := data.(string); ok && name == "error" {
		v.Error = e
	}
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, name, v); err != nil {
		c.log.Error("console: template", "name", name, "err", err)
		http.Error(w, "internal error", 500)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func (c *Console) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	data, err := fs.ReadFile(files, "static/"+name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch {
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".js"):
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	}
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Write(data)
}

// loginForm shows the login form with a token bound to a pre-session
// cookie (login CSRF).
func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	c.showLogin(w, r, http.StatusOK, "")
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/console/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	v := view{App: c.opts.App, Title: "Sign in", CSRF: tok, Error: msg, Data: safeNext(r.FormValue("next"))}
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, "login", v); err != nil {
		http.Error(w, "internal error", 500)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// safeNext keeps a redirect target within the console.
func safeNext(next string) string {
	if strings.HasPrefix(next, "/console/") && !strings.HasPrefix(next, "//") && !strings.Contains(next, "\\") {
		return next
	}
	return "/console/"
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(r.PostFormValue("csrf"), ck.Value) {
		c.showLogin(w, r, http.StatusForbidden, "The form had expired: please sign in again.")
		return
	}
	name, pw := strings.TrimSpace(r.PostFormValue("user")), r.PostFormValue("password")
	if err := c.checkLogin(r.Context(), r.RemoteAddr, name, pw); err != nil {
		st := statusOf(err)
		msg := err.Error()
		if st == 500 {
			c.log.Error("console: login", "err", err)
			msg = "internal error"
		}
		if st == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "10")
		}
		c.showLogin(w, r, st, msg)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/console/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	c.newSession(w, name)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) error {
	c.endSession(w, r)
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
	return nil
}

// parseFilter reads the timeline's filter from a query.
func parseFilter(q url.Values) (filter, error) {
	f := filter{Service: q.Get("service")}
	folder, err := cleanFolder(q.Get("folder"))
	if err != nil {
		return f, err
	}
	f.Folder = folder
	if f.Folder != "" && f.Service == "" {
		return f, &httpError{400, "a folder filter needs a service"}
	}
	for _, d := range []struct {
		key string
		t   *time.Time
		end bool
	}{{"after", &f.After, false}, {"before", &f.Before, true}} {
		v := q.Get(d.key)
		if v == "" {
			continue
		}
		t, err := parseTime(v)
		if err != nil {
			return f, &httpError{400, fmt.Sprintf("%s=%q: %v", d.key, v, err)}
		}
		if d.end && len(v) == len("2006-01-02") {
			t = t.Add(24 * time.Hour) // the whole day
		}
		*d.t = t
	}
	return f, nil
}

// parseTime accepts RFC 3339, "2006-01-02T15:04" (a datetime-local input,
// UTC) and a date.
func parseTime(v string) (time.Time, error) {
	for _, l := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(l, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("want a date (2006-01-02), a time (2006-01-02T15:04, UTC) or RFC 3339")
}

const defaultLimit = 50

func parseLimit(v string) (int, error) {
	if v == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 500 {
		return 0, &httpError{400, fmt.Sprintf("limit=%q: want 1 to 500", v)}
	}
	return n, nil
}

func (c *Console) timelineOf(user, cursor string, limit int, f filter) (*Page, error) {
	if cursor != "" {
		if _, err := c.st.Resolve(cursor); err != nil {
			return nil, &httpError{404, fmt.Sprintf("no revision %q", cursor)}
		}
	}
	start := time.Now()
	p, err := newHistorian(c.st, user).page(cursor, limit, f)
	c.timeline.Observe(time.Since(start).Seconds())
	return p, err
}

type timelineData struct {
	Page                                   *Page
	Service, Folder, After, Before, Cursor string
	Folders                                []folderRef
}

type folderRef struct{ Service, Name string }

// foldersOf lists the user's folders at the head.
func (c *Console) foldersOf(user string) []folderRef {
	sn, err := c.st.Snapshot("")
	if err != nil {
		return nil
	}
	var out []folderRef
	if boxes, err := mailstore.ReadMailboxes(sn, user); err == nil {
		for _, b := range boxes {
			out = append(out, folderRef{ServiceMail, b.Info.Name})
		}
	}
	for _, s := range []string{ServiceContacts, ServiceCalendar} {
		for _, coll := range davCollections(sn, s, user) {
			out = append(out, folderRef{s, coll})
		}
	}
	return out
}

// davCollections lists a user's top collections of a DAV service.
func davCollections(sn *store.Snapshot, service, user string) []string {
	ents, err := sn.ReadDir(service + "/" + user + "/c")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.Dir {
			out = append(out, e.Path[strings.LastIndexByte(e.Path, '/')+1:])
		}
	}
	return out
}

func (c *Console) timelinePage(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err != nil {
		return err
	}
	p, err := c.timelineOf(s.user, q.Get("cursor"), defaultLimit, f)
	if err != nil {
		return err
	}
	c.render(w, 200, "timeline", s, "Timeline", timelineData{Page: p, Service: f.Service, Folder: f.Folder,
		After: q.Get("after"), Before: q.Get("before"), Cursor: q.Get("cursor"), Folders: c.foldersOf(s.user)})
	return nil
}

func (c *Console) changePage(w http.ResponseWriter, r *http.Request, s *session) error {
	d, err := newHistorian(c.st, s.user).detail(r.PathValue("rev"))
	if err != nil {
		return err
	}
	c.render(w, 200, "change", s, "Change "+d.Rev[:12], d)
	return nil
}

// messageData is one message shown.
type messageData struct {
	View    MessageView
	Rev     string
	Mailbox string
	Header  string
	Body    string
}

func (c *Console) messagePage(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	m, raw, box, err := c.readMessage(s.user, q.Get("rev"), q.Get("box"), q.Get("key"))
	if err != nil {
		return err
	}
	hdr, body, _ := strings.Cut(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n\n")
	if len(body) > 256<<10 {
		body = body[:256<<10] + "\n[…]"
	}
	c.render(w, 200, "message", s, "Message", messageData{View: m, Rev: q.Get("rev"), Mailbox: box, Header: hdr, Body: body})
	return nil
}

// readMessage reads a message of the user at a revision, by mailbox name
// (or id) and key.
func (c *Console) readMessage(user, rev, box, key string) (MessageView, []byte, string, error) {
	if key == "" || strings.ContainsAny(key, "/.") || box == "" {
		return MessageView{}, nil, "", &httpError{400, "give rev, box (a mailbox name) and key"}
	}
	sn, err := c.snapshot(rev)
	if err != nil {
		return MessageView{}, nil, "", err
	}
	id := box
	if b, err := mailstore.FindStoredMailbox(sn, user, box); err == nil {
		id = b.ID
	} else if _, err := mailstore.ReadMailboxInfo(sn, user, box); err != nil {
		return MessageView{}, nil, "", &httpError{404, fmt.Sprintf("no mailbox %q at %s", box, rev)}
	}
	meta, err := sn.Read(mailstore.MessagePath(sn, user, id, key, "meta"))
	if err != nil {
		return MessageView{}, nil, "", &httpError{404, fmt.Sprintf("no message %q in %s at %s", key, box, rev)}
	}
	sm, err := mailstore.ReadMeta(meta)
	if err != nil {
		return MessageView{}, nil, "", err
	}
	sm.Key = key
	raw, err := sn.Read(mailstore.MessagePath(sn, user, id, key, "eml"))
	if err != nil {
		return MessageView{}, nil, "", err
	}
	info, _ := mailstore.ReadMailboxInfo(sn, user, id)
	return messageView(sm), raw, info.Name, nil
}

// snapshot resolves a revision given by a client ("" the head); one that
// does not exist is a 404.
func (c *Console) snapshot(rev string) (*store.Snapshot, error) {
	sn, err := c.st.Snapshot(rev)
	if err != nil {
		return nil, &httpError{404, fmt.Sprintf("no revision %q", rev)}
	}
	return sn, nil
}

func (c *Console) undoForm(w http.ResponseWriter, r *http.Request, s *session) error {
	res, err := c.undo(r, s.user, r.PathValue("rev"), "web console")
	if err != nil {
		return err
	}
	c.render(w, 200, "done", s, "Undone", res)
	return nil
}

func (c *Console) undo(r *http.Request, user, rev, via string) (RestoreResult, error) {
	start := time.Now()
	rs := &restorer{c: c, h: newHistorian(c.st, user), user: user, via: via}
	res, err := rs.undo(r.Context(), rev)
	c.restores.Observe(time.Since(start).Seconds())
	return res, err
}

// restoreAt brings a folder back to a revision or a time.
func (c *Console) restoreAt(r *http.Request, user, service, folder, rev, at, via string) (RestoreResult, error) {
	folder, err := cleanFolder(folder)
	if err != nil || folder == "" {
		return RestoreResult{}, &httpError{400, "give a folder (a mailbox, address book or calendar)"}
	}
	h := newHistorian(c.st, user)
	var ci store.CommitInfo
	switch {
	case rev != "":
		ci, err = h.commit(rev)
	case at != "":
		t, perr := parseTime(at)
		if perr != nil {
			return RestoreResult{}, &httpError{400, fmt.Sprintf("at=%q: %v", at, perr)}
		}
		ci, err = h.atTime(t)
	default:
		err = &httpError{400, "give a revision or a time to restore to"}
	}
	if err != nil {
		return RestoreResult{}, err
	}
	start := time.Now()
	rs := &restorer{c: c, h: h, user: user, via: via}
	res, err := rs.restoreFolder(r.Context(), service, folder, ci)
	c.restores.Observe(time.Since(start).Seconds())
	return res, err
}

func (c *Console) restorePage(w http.ResponseWriter, r *http.Request, s *session) error {
	c.render(w, 200, "restore", s, "Restore", struct {
		Folders []folderRef
		Now     string
	}{c.foldersOf(s.user), time.Now().UTC().Format("2006-01-02T15:04")})
	return nil
}

func (c *Console) restoreForm(w http.ResponseWriter, r *http.Request, s *session) error {
	service, folder, _ := strings.Cut(r.PostFormValue("folder"), ":")
	if f := r.PostFormValue("service"); f != "" {
		service, folder = f, r.PostFormValue("folder")
	}
	res, err := c.restoreAt(r, s.user, service, folder, r.PostFormValue("rev"), r.PostFormValue("at"), "web console")
	if err != nil {
		return err
	}
	c.render(w, 200, "done", s, "Restored", res)
	return nil
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) error {
	u, err := c.st.LookupUser(s.user)
	if err != nil {
		return err
	}
	apps, err := c.st.AppPasswords(s.user)
	if err != nil {
		return err
	}
	c.render(w, 200, "account", s, "Account", struct {
		User         store.User
		Cert         *certInfo
		AppPasswords []store.AppPassword
	}{u, c.cert(), apps})
	return nil
}

func (c *Console) passwordForm(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := c.checkLogin(r.Context(), r.RemoteAddr, s.user, r.PostFormValue("old")); err != nil {
		return err
	}
	if err := c.st.SetPassword(r.Context(), s.user, r.PostFormValue("new")); err != nil {
		return badRequest(err)
	}
	c.endUserSessions(s.user, s)
	c.render(w, 200, "done", s, "Password changed", RestoreResult{Skipped: []string{"Your password was changed; other sessions were signed out."}})
	return nil
}

// badRequest turns the store's refusals of bad input into 400s.
func badRequest(err error) error {
	switch {
	case errors.Is(err, store.ErrNotExist):
		return &httpError{404, err.Error()}
	case errors.Is(err, store.ErrExists):
		return &httpError{409, err.Error()}
	case err != nil && strings.HasPrefix(err.Error(), "store: "):
		return &httpError{400, strings.TrimPrefix(err.Error(), "store: ")}
	}
	return err
}

type usersData struct {
	Users []store.User
	Cert  *certInfo
}

func (c *Console) requireAdmin(s *session) error {
	if !c.isAdmin(s.user) {
		return &httpError{403, "user administration is for admins (users with git write access)"}
	}
	return nil
}

func (c *Console) usersPage(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := c.requireAdmin(s); err != nil {
		return err
	}
	us, err := c.st.Users()
	if err != nil {
		return err
	}
	c.render(w, 200, "users", s, "Users", usersData{Users: us, Cert: c.cert()})
	return nil
}

func (c *Console) userAddForm(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := c.requireAdmin(s); err != nil {
		return err
	}
	access := store.GitAccess(r.PostFormValue("git"))
	if err := c.st.AddUser(r.Context(), r.PostFormValue("name"), r.PostFormValue("password"), access); err != nil {
		return badRequest(err)
	}
	http.Redirect(w, r, "/console/users", http.StatusSeeOther)
	return nil
}

func (c *Console) userPasswordForm(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := c.requireAdmin(s); err != nil {
		return err
	}
	name := r.PostFormValue("name")
	if err := c.st.SetPassword(r.Context(), name, r.PostFormValue("password")); err != nil {
		return badRequest(err)
	}
	c.endUserSessions(name, s)
	http.Redirect(w, r, "/console/users", http.StatusSeeOther)
	return nil
}

func (c *Console) userDeleteForm(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := c.requireAdmin(s); err != nil {
		return err
	}
	name := r.PostFormValue("name")
	if name == s.user {
		return &httpError{400, "you cannot delete yourself"}
	}
	if err := c.st.DeleteUser(r.Context(), name); err != nil {
		return badRequest(err)
	}
	c.endUserSessions(name, nil)
	http.Redirect(w, r, "/console/users", http.StatusSeeOther)
	return nil
}
