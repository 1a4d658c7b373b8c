// Package console is each appliance's web console and HTTP API: the
// history of a person's data, made visible and restorable, over the same
// versioned store the protocols use.
//
// New returns a Console, an http.Handler that serves three trees, meant to
// be mounted on the app's HTTPS server:
//
//   - /console/: server-rendered HTML (no build step, no CDN, one small
//     script file): sign-in with the store's users, a timeline of the
//     signed-in person's changes in words (which protocol, when), one
//     change opened field by field, undo of a change and restore of a
//     mailbox, address book or calendar to a chosen time (always as a new
//     commit), storage per service and folder with a growth plot, the
//     node's certificate, app passwords per client, and for admins user
//     administration and the peers the store replicates with (their sync
//     state).
//   - /api/: the same as JSON (basic authentication, or the console's
//     session cookie with an X-CSRF-Token header for writes), a
//     Server-Sent Events watch stream, and its OpenAPI description at
//     /api/openapi.json.
//   - /metrics: Prometheus text format, for admins: requests, logins,
//     restore and timeline times, commit latency, store size, sync lag per
//     peer, and the app's own (the mail queue's length).
//
// Security: logins go through the app's guard.Auth (the same rate limits
// as IMAP, SMTP and DAV logins); the session cookie is Secure, HttpOnly
// and SameSite=Strict; every form carries a CSRF token bound to the
// session (the login form one bound to a pre-session cookie); pages are
// html/template (everything a message, contact or event says is escaped)
// under a Content-Security-Policy without inline script. A user reaches
// only their own data (403 for another's paths); admins (users with git
// write access, the store's owners) also manage users.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/internal/metrics"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/store"
)

// Options configure a Console. Store is required.
type Options struct {
	Store *store.Store
	// App names the appliance in page titles ("mail", "contacts").
	App string
	// Auth rate-limits logins; pass the app's own, so that guesses over
	// every protocol add up. Nil means one with guard's defaults.
	Auth *guard.Auth
	// Mail, in the mail app, is its mailstore: mail restores go through
	// its index so that IMAP sessions see them at once. Nil elsewhere.
	Mail *mailstore.Store
	// TLS is the app's TLS configuration, for the certificate page.
	TLS *tls.Config
	// Collectors are the app's own metrics (queue length...), served on
	// /metrics with the console's.
	Collectors []metrics.Collector
	Logger     *slog.Logger
	// Peers is the app's replica engine's status (replica.Engine.Status),
	// for the peers page and the sync lag metrics. Nil: the status file
	// that an engine of the store last wrote (replica.ReadStatus).
	Peers func() []replica.Status
	// SignpostDir is the node's data directory, where its Signpost
	// identity and state are: admins may then issue invitations (POST
	// /api/v1/admin/invitations). Empty: not offered.
	SignpostDir string
	// SessionTTL is how long a sign-in lasts; zero means 12 hours.
	SessionTTL time.Duration
}

// Console is the web console and API of one app.
type Console struct {
	opts Options
	st   *store.Store
	log  *slog.Logger
	auth *guard.Auth
	mux  *http.ServeMux

	mu       sync.Mutex
	sessions map[string]*session

	reg      *metrics.Registry
	requests *metrics.CounterVec
	logins   *metrics.CounterVec
	restores *metrics.Histogram
	timeline *metrics.Histogram
	sse      *metrics.Gauge
	commits  *metrics.Histogram

	sizes sizeCache
}

type session struct {
	user    string
	csrf    string
	expires time.Time
}

// maxSessions bounds the sessions kept; the oldest go first.
const maxSessions = 10000

// Cookie names.
const (
	sessionCookie = "nymote_session"
	loginCookie   = "nymote_login"
)

// New returns a Console.
func New(o Options) *Console {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Auth == nil {
		o.Auth = guard.NewAuth(guard.AuthOptions{})
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.App == "" {
		o.App = "nymote"
	}
	c := &Console{opts: o, st: o.Store, log: o.Logger, auth: o.Auth, sessions: map[string]*session{}, reg: metrics.NewRegistry()}
	c.requests = metrics.NewCounterVec("nymote_console_requests_total",
		"Requests to the web console and API, by area and status code.", "area", "code")
	c.logins = metrics.NewCounterVec("nymote_console_logins_total", "Console and API logins, by result.", "result")
	c.restores = metrics.NewHistogram("nymote_console_restore_seconds",
		"Time of undo and restore commits.", metrics.ExponentialBuckets(0.005, 2, 14))
	c.timeline = metrics.NewHistogram("nymote_console_timeline_seconds",
		"Time to build one page of a timeline.", metrics.ExponentialBuckets(0.001, 2, 14))
	c.sse = metrics.NewGauge("nymote_console_watch_streams", "Open watch streams.")
	c.commits = metrics.NewHistogram("nymote_store_commit_seconds",
		"Time of the store's commits (waiting for the writer lock, building, writing and syncing; not the app's own work in the transaction).",
		metrics.ExponentialBuckets(0.0005, 2, 16))
	c.st.SetCommitObserver(func(d time.Duration) { c.commits.Observe(d.Seconds()) })
	c.reg.MustRegister(c.requests, c.logins, c.restores, c.timeline, c.sse, c.commits, newSyncCollector(c),
		metrics.NewGoCollector(), metrics.NewProcessCollector(),
		metrics.NewGaugeFunc("nymote_store_bytes", "Size of the store's repository on disk.",
			func() float64 { return float64(c.sizes.diskBytes(c.st.Path())) }),
		metrics.NewGaugeFunc("nymote_store_head_age_seconds", "Time since the newest commit of the default branch.",
			func() float64 {
				infos, err := c.st.Log(store.LogOptions{Limit: 1})
				if err != nil || len(infos) == 0 {
					return 0
				}
				return time.Since(infos[0].When).Seconds()
			}))
	for _, col := range o.Collectors {
		c.reg.MustRegister(col)
	}
	c.mux = http.NewServeMux()
	c.routes()
	go warmHistory(c.st)
	return c
}

// warmHistory reads the newest commits once, in the background, as the
// first timeline page will: each of them against its first parent, so
// that the trees the page diffs (and the delta bases they are made from)
// are in the store's caches before anyone asks. At 100k commits it takes
// about 0.2 s of CPU, once per process; without it the first page after
// the app starts took that much longer. It stops after warmChanges
// changed paths: commits of thousands of messages each (a mailbox
// imported or restored in bulk) took seconds of CPU at every start, just
// when the first clients log in, for a page that shows each of them as
// one line anyway.
func warmHistory(st *store.Store) {
	infos, err := st.Log(store.LogOptions{Limit: warmCommits})
	if err != nil {
		return
	}
	changes := 0
	for _, c := range infos {
		if len(c.Parents) > 0 {
			ch, err := st.DiffCommits(c.Parents[0], c.Hash)
			if err != nil {
				return
			}
			if changes += len(ch); changes >= warmChanges {
				return
			}
		}
	}
}

const (
	// warmCommits is how many of the newest commits warmHistory reads:
	// a first page of defaultLimit entries, where other people's
	// changes come between.
	warmCommits = 4 * defaultLimit
	// warmChanges is how many changed paths warmHistory lists at most:
	// a few for each of warmCommits commits of one message or event.
	warmChanges = 16 * warmCommits
)

// ServeHTTP serves /console/, /api/ and /metrics.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &guard.StatusWriter{ResponseWriter: w}
	h := sw.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(sw, r)
	area := "console"
	switch {
	case len(r.URL.Path) >= 5 && r.URL.Path[:5] == "/api/":
		area = "api"
	case r.URL.Path == "/metrics":
		area = "metrics"
	}
	if sw.Status == 0 {
		sw.Status = 200
	}
	c.requests.WithLabelValues(area, strconv.Itoa(sw.Status)).Inc()
}

func (c *Console) routes() {
	m := c.mux
	// Pages.
	m.HandleFunc("GET /console/{$}", c.page(c.timelinePage))
	m.HandleFunc("GET /console/login", c.loginForm)
	m.HandleFunc("POST /console/login", c.login)
	m.HandleFunc("POST /console/logout", c.form(c.logout))
	m.HandleFunc("GET /console/change/{rev}", c.page(c.changePage))
	m.HandleFunc("GET /console/message", c.page(c.messagePage))
	m.HandleFunc("POST /console/undo/{rev}", c.form(c.undoForm))
	m.HandleFunc("GET /console/restore", c.page(c.restorePage))
	m.HandleFunc("POST /console/restore", c.form(c.restoreForm))
	m.HandleFunc("GET /console/storage", c.page(c.storagePage))
	m.HandleFunc("GET /console/storage/growth.svg", c.page(c.growthSVG))
	m.HandleFunc("GET /console/account", c.page(c.accountPage))
	m.HandleFunc("POST /console/password", c.form(c.passwordForm))
	m.HandleFunc("POST /console/app-passwords/add", c.form(c.appPasswordAddForm))
	m.HandleFunc("POST /console/app-passwords/delete", c.form(c.appPasswordDeleteForm))
	m.HandleFunc("GET /console/peers", c.page(c.peersPage))
	m.HandleFunc("GET /console/users", c.page(c.usersPage))
	m.HandleFunc("POST /console/users/add", c.form(c.userAddForm))
	m.HandleFunc("POST /console/users/password", c.form(c.userPasswordForm))
	m.HandleFunc("POST /console/users/delete", c.form(c.userDeleteForm))
	m.HandleFunc("GET /console/static/{file}", c.static)
	m.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	m.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusFound)
	})
	c.apiRoutes()
	m.HandleFunc("GET /metrics", c.metrics)
}

func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newSession signs user in and sets the session cookie.
func (c *Console) newSession(w http.ResponseWriter, user string) *session {
	s := &session{user: user, csrf: randomToken(), expires: time.Now().Add(c.opts.SessionTTL)}
	tok := randomToken()
	c.mu.Lock()
	if len(c.sessions) >= maxSessions {
		now := time.Now()
		var oldest string
		var oldestAt time.Time
		for k, v := range c.sessions {
			if now.After(v.expires) {
				delete(c.sessions, k)
				continue
			}
			if oldest == "" || v.expires.Before(oldestAt) {
				oldest, oldestAt = k, v.expires
			}
		}
		if len(c.sessions) >= maxSessions {
			delete(c.sessions, oldest)
		}
	}
	c.sessions[tok] = s
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tok, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Expires: s.expires})
	return s
}

// session returns the request's session, nil when there is none.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if time.Now().After(s.expires) {
		delete(c.sessions, ck.Value)
		return nil
	}
	// (Callers check that the user still exists: a deleted user is
	// signed out.)
	return s
}

func (c *Console) endSession(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		c.mu.Lock()
		delete(c.sessions, ck.Value)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// endUserSessions signs a user out everywhere (password change, deletion).
func (c *Console) endUserSessions(user string, keep *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, s := range c.sessions {
		if s.user == user && s != keep {
			delete(c.sessions, k)
		}
	}
}

func sameToken(a, b string) bool {
	return a != "" && len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// errWrongLogin is what a failed login is told (not which of the two).
var errWrongLogin = errors.New("wrong user name or password")

// checkLogin checks a password through the rate limit.
func (c *Console) checkLogin(ctx context.Context, remote, name, password string) error {
	err := c.auth.Check(ctx, remote, name, password, func() error {
		_, err := c.st.Authenticate(name, password)
		return err
	})
	switch {
	case err == nil:
		c.logins.WithLabelValues("ok").Inc()
		return nil
	case errors.Is(err, guard.ErrBusy):
		c.logins.WithLabelValues("busy").Inc()
		return &httpError{http.StatusTooManyRequests, "too many login attempts in progress; try again later"}
	case errors.Is(err, store.ErrAuthFailed):
		c.log.Info("console: authentication failed", "user", name, "remote", remote)
		c.logins.WithLabelValues("failed").Inc()
		return &httpError{http.StatusUnauthorized, errWrongLogin.Error()}
	}
	return err
}

// isAdmin: the store's owners, the users with git write access, manage
// users.
func (c *Console) isAdmin(user string) bool {
	u, err := c.st.LookupUser(user)
	return err == nil && u.Git == store.GitWrite
}

// userExists reports whether a session's user is still a user.
func (c *Console) userExists(user string) bool {
	_, err := c.st.LookupUser(user)
	return err == nil
}

// certInfo describes the node's certificate.
type certInfo struct {
	Subject  string
	DNSNames []string
	NotAfter time.Time
	DaysLeft int
	Issuer   string
}

func (c *Console) cert() *certInfo {
	if c.opts.TLS == nil {
		return nil
	}
	var crt *tls.Certificate
	if len(c.opts.TLS.Certificates) > 0 {
		crt = &c.opts.TLS.Certificates[0]
	} else if c.opts.TLS.GetCertificate != nil {
		crt, _ = c.opts.TLS.GetCertificate(&tls.ClientHelloInfo{})
	}
	if crt == nil || len(crt.Certificate) == 0 {
		return nil
	}
	leaf := crt.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(crt.Certificate[0]); err != nil {
			return nil
		}
	}
	return &certInfo{Subject: leaf.Subject.String(), DNSNames: leaf.DNSNames, NotAfter: leaf.NotAfter,
		DaysLeft: int(time.Until(leaf.NotAfter).Hours() / 24), Issuer: leaf.Issuer.String()}
}

func (c *Console) metrics(w http.ResponseWriter, r *http.Request) {
	user, _, err := c.apiAuth(w, r)
	if err != nil {
		c.apiError(w, r, err)
		return
	}
	if !c.isAdmin(user) {
		c.apiError(w, r, &httpError{403, "metrics are for admins"})
		return
	}
	c.reg.ServeHTTP(w, r)
}
