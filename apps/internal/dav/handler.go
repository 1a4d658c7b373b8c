package dav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/store"
)

// Options configure a Handler. Store and Kind are required.
type Options struct {
	Store *store.Store
	Kind  Kind
	// Logger receives request logs (never passwords). Nil discards them.
	Logger *slog.Logger
	// MaxObjectSize is the largest object accepted, in bytes; zero means
	// DefaultMaxObjectSize.
	MaxObjectSize int64
	// DefaultCollection is created (with DefaultDisplayName) in a user's
	// home the first time the user is seen; "" means "default", "-" none.
	DefaultCollection, DefaultDisplayName string
	// Auth rate-limits logins per client host and per account; nil means
	// one of the Handler's own with guard's defaults.
	Auth *guard.Auth
}

// DefaultMaxObjectSize is the object size limit when Options names none.
const DefaultMaxObjectSize = 4 << 20

// Handler serves one Kind of DAV collections over the store: every user
// has a principal and home at /USER/, with collections /USER/COLL/ and
// objects /USER/COLL/NAME. A user reaches only their own home.
type Handler struct {
	opts  Options
	st    *store.Store
	kind  Kind
	prof  *Profile
	log   *slog.Logger
	repo  *repo
	views *viewCache
	homes sync.Map // users whose home is set up
	guard *guard.Auth
}

// NewHandler returns a Handler.
func NewHandler(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxObjectSize == 0 {
		opts.MaxObjectSize = DefaultMaxObjectSize
	}
	if opts.DefaultCollection == "" {
		opts.DefaultCollection = "default"
	}
	if opts.Auth == nil {
		opts.Auth = guard.NewAuth(guard.AuthOptions{})
	}
	return &Handler{opts: opts, st: opts.Store, kind: opts.Kind, prof: opts.Kind.Profile(), log: opts.Logger, repo: &repo{kind: opts.Kind.Name()}, views: &viewCache{st: opts.Store}, guard: opts.Auth}
}

// target is what a request's path names.
type target struct {
	user string
	// segs are the path segments after the user.
	segs []string
	// coll is the deepest existing collection on the path; obj the object
	// (nil when the path names a collection or nothing).
	coll *Collection
	obj  *Object
	// name is the last segment when the path names an object or nothing
	// inside coll (or the home when coll is nil).
	name string
	// missing: the path names nothing (yet); parentMissing: not even its
	// parent collection exists.
	missing, parentMissing bool
}

func (t *target) isHome() bool { return len(t.segs) == 0 }
func (t *target) isCollection() bool {
	return !t.missing && t.obj == nil && t.coll != nil
}

type ctxKey struct{}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &guard.StatusWriter{ResponseWriter: rw}
	user, err := h.serve(w, r)
	if err != nil {
		h.writeError(w, r, err)
	}
	if h.log.Enabled(r.Context(), slog.LevelDebug) {
		h.log.Debug("request", "method", r.Method, "path", r.URL.Path, "user", user, "status", w.Status, "duration", time.Since(start))
	}
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var de *Error
	if !errors.As(err, &de) {
		switch {
		case errors.Is(err, store.ErrNotExist):
			de = &Error{Status: http.StatusNotFound, Message: "not found"}
		case errors.Is(err, context.Canceled):
			return
		default:
			h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			de = &Error{Status: http.StatusInternalServerError, Message: "internal error (see the server's log)"}
		}
	}
	if de.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="nymote `+h.kind.Name()+`", charset="UTF-8"`)
	}
	if de.Cond.Local == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(de.Status)
		fmt.Fprintln(w, de.Message)
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(de.Status)
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n<d:error")
	for _, p := range prefixes {
		fmt.Fprintf(&b, ` xmlns:%s="%s"`, p.prefix, p.ns)
	}
	b.WriteString(">")
	b.WriteString(Elem(de.Cond, de.CondInner))
	if de.Message != "" {
		b.WriteString(Elem(Name(NSNymote, "message"), Text(de.Message)))
	}
	b.WriteString("</d:error>\n")
	io.WriteString(w, b.String())
}

func (h *Handler) allow() string {
	a := "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, MKCOL, REPORT, COPY, MOVE"
	if h.prof.MakeMethod != "" {
		a += ", " + h.prof.MakeMethod
	}
	return a
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (string, error) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/.well-known/") {
		if p == h.prof.WellKnown {
			http.Redirect(w, r, "/", http.StatusMovedPermanently)
			return "", nil
		}
		return "", Errorf(http.StatusNotFound, Name("", ""), "nothing at %s", p)
	}
	w.Header().Set("DAV", "1, 3, extended-mkcol, access-control, "+h.prof.Capability)
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", h.allow())
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return "", nil
	}
	name, pass, ok := r.BasicAuth()
	preauth := false
	if u, ok2 := userFrom(r.Context()); ok2 {
		name, ok, preauth = u, true, true
	}
	if !ok {
		return "", &Error{Status: http.StatusUnauthorized, Message: "log in with your user name and password (HTTP basic authentication)"}
	}
	// A home known to be set up before the head is read is in it.
	_, homeKnown := h.homes.Load(name)
	sn, err := h.views.head()
	if err != nil {
		return "", err
	}
	if preauth {
		// Authenticated in front of the handler (WithUser).
	} else if app, err := h.authenticate(r.Context(), r.RemoteAddr, sn, name, pass); err != nil {
		var de *Error
		switch {
		case errors.Is(err, store.ErrAuthFailed):
			h.log.Info("authentication failed", "user", name, "remote", r.RemoteAddr)
			return "", &Error{Status: http.StatusUnauthorized, Message: "wrong user name or password"}
		case errors.As(err, &de) && de.Status == http.StatusTooManyRequests:
			h.log.Warn("authentication refused: too many attempts in flight", "user", name, "remote", r.RemoteAddr)
			w.Header().Set("Retry-After", "10")
		}
		return "", err
	} else if app != "" {
		r = r.WithContext(withAppPassword(r.Context(), app))
	}
	if !homeKnown {
		if err := h.ensureHome(r.Context(), name); err != nil {
			return name, err
		}
		if sn, err = h.views.head(); err != nil {
			return name, err
		}
	}
	segs := splitPath(p)
	if len(segs) == 0 {
		return name, h.serveRoot(w, r, name)
	}
	if segs[0] != name {
		return name, Errorf(http.StatusForbidden, Name(NSDAV, "need-privileges"), "%s is not yours: you may only reach /%s/", p, name)
	}
	for _, s := range segs[1:] {
		if !segOK(s) {
			return name, Errorf(http.StatusBadRequest, Name("", ""), "invalid path segment %q", s)
		}
	}
	t, err := h.resolve(sn, name, segs[1:])
	if err != nil {
		return name, err
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return name, h.get(w, r, sn, t)
	case http.MethodPut:
		return name, h.put(w, r, t)
	case http.MethodDelete:
		return name, h.delete(w, r, t)
	case "MKCOL", "MKCALENDAR": // MKCALENDAR is refused where the kind has no such method
		return name, h.mkcol(w, r, t)
	case "PROPFIND":
		return name, h.propfind(w, r, sn, t)
	case "PROPPATCH":
		return name, h.proppatch(w, r, t)
	case "REPORT":
		return name, h.report(w, r, sn, t)
	case "COPY", "MOVE":
		return name, h.copyMove(w, r, sn, t)
	case "LOCK", "UNLOCK":
		return name, Errorf(http.StatusNotImplemented, Name("", ""), "%s is not supported", r.Method)
	default:
		w.Header().Set("Allow", h.allow())
		return name, Errorf(http.StatusMethodNotAllowed, Name("", ""), "method %s not allowed", r.Method)
	}
}

// splitPath splits a URL path into its segments.
func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// escapePath escapes each segment of a path for an href.
func escapePath(p string) string {
	clean := true
	for i := 0; i < len(p); i++ {
		if c := p[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
			clean = false
			break
		}
	}
	if clean {
		return p // nothing url.PathEscape would change
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// resolve finds what segs (after the user) name.
func (h *Handler) resolve(sn reader, user string, segs []string) (*target, error) {
	t := &target{user: user, segs: segs}
	for i, s := range segs {
		p := strings.Join(segs[:i+1], "/")
		c, err := h.repo.loadCollection(sn, user, p)
		if err != nil {
			return nil, err
		}
		if c != nil {
			t.coll = c
			continue
		}
		t.name = s
		if i < len(segs)-1 {
			t.missing, t.parentMissing = true, true
			return t, nil
		}
		if t.coll == nil {
			t.missing = true
			return t, nil
		}
		o, err := h.repo.statObject(sn, t.coll, s)
		if err != nil {
			return nil, err
		}
		if o == nil {
			t.missing = true
		}
		t.obj = o
	}
	return t, nil
}

// ensureHome sets up a user's home (and the default collection) once.
func (h *Handler) ensureHome(ctx context.Context, user string) error {
	if _, ok := h.homes.Load(user); ok {
		return nil
	}
	home := h.repo.homeDir(user) + "/home.json"
	h.repo.wmu.Lock()
	defer h.repo.wmu.Unlock()
	_, err := h.st.Update(ctx, h.commitOpts(user, "set up the home of "+user), func(tx *store.Tx) error {
		if ok, err := tx.Exists(home); err != nil || ok {
			return err
		}
		now := time.Now().UTC()
		if err := tx.Put(home, []byte(fmt.Sprintf("{\"created\":%q}\n", now.Format(time.RFC3339)))); err != nil {
			return err
		}
		if h.opts.DefaultCollection == "-" {
			return nil
		}
		c := &Collection{User: user, Path: h.opts.DefaultCollection, Type: h.prof.StoredType, DisplayName: h.opts.DefaultDisplayName, Created: now, Components: h.prof.newComponents()}
		return h.putCollection(tx, c)
	})
	if err != nil {
		return err
	}
	h.homes.Store(user, true)
	return nil
}

func (h *Handler) commitOpts(user, msg string) store.CommitOptions {
	return store.CommitOptions{Author: store.Signature{Name: user, Email: user + "@" + h.kind.Name() + ".nymote"}, Message: h.kind.Name() + ": " + msg}
}

// requestOpts is commitOpts for a client's request: the commit names the
// client (its User-Agent, in a "Client:" trailer) so that the history,
// and the web console's timeline, can say which program made a change;
// a login with an app password adds its name ("DAVx5/4.4 (app password
// phone)").
func (h *Handler) requestOpts(r *http.Request, user, msg string) store.CommitOptions {
	o := h.commitOpts(user, msg)
	client := clientName(r.UserAgent())
	if app := appPasswordFrom(r.Context()); app != "" {
		client = strings.TrimSpace(client + " (app password " + app + ")")
	}
	if client != "" {
		o.Message += "\n\nClient: " + client + "\n"
	}
	return o
}

// clientName keeps a User-Agent printable and short.
func clientName(ua string) string {
	ua = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return -1
		}
		return c
	}, ua)
	if r := []rune(strings.TrimSpace(ua)); len(r) > 100 {
		ua = string(r[:100])
	}
	return strings.TrimSpace(ua)
}

// mediaType returns the request's media type ("" when none was given).
func mediaType(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "", nil
	}
	t, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", Errorf(http.StatusBadRequest, Name("", ""), "malformed Content-Type %q: %v", ct, err)
	}
	return strings.ToLower(t), nil
}
