package guard

import (
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// HTTP server bounds for the services' http.Servers: headers must come
// within HTTPHeaderTimeout, a keep-alive connection is closed after
// HTTPIdleTimeout without a request, and Idle (below) bounds each read of a
// body and each write of a response rather than the whole request, so that
// a large upload or clone at a slow but steady pace succeeds while a client
// that stops is dropped.
const (
	HTTPHeaderTimeout = 20 * time.Second
	HTTPIdleTimeout   = 2 * time.Minute
	HTTPMaxHeader     = 64 << 10
)

// Idle wraps h so that each read of a request body and each write of the
// response must make progress within d: before each it moves the
// connection's deadline d ahead (through http.ResponseController).
func Idle(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.Body != nil && r.Body != http.NoBody {
			// A copy: net/http looks at the original's Body to answer
			// "Expect: 100-continue" and to drain what is left unread.
			r = r.WithContext(r.Context())
			r.Body = &idleBody{ReadCloser: r.Body, rc: rc, d: d}
		}
		h.ServeHTTP(&idleWriter{ResponseWriter: w, rc: rc, d: d}, r)
	})
}

type idleBody struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.d))
	return b.ReadCloser.Read(p)
}

type idleWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *idleWriter) Write(p []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.d))
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher.
func (w *idleWriter) Flush() {
	w.rc.SetWriteDeadline(time.Now().Add(w.d))
	w.rc.Flush()
}

// Unwrap returns the ResponseWriter beneath, for http.ResponseController.
func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// RedirectHTTPS answers every request with a permanent redirect to the same
// host and path over https on httpsPort ("" or "443": the default port).
// It is what a service's plain HTTP port serves, so that passwords never
// travel in the clear. acme, if set, answers the ACME http-01 challenges
// under /.well-known/acme-challenge/ instead (the hook for certificates
// from Let's Encrypt, once apps/internal/tls fetches them).
func RedirectHTTPS(httpsPort string, acme http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if acme != nil && strings.HasPrefix(r.URL.Path, acmePrefix) {
			acme.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		switch {
		case host == "":
			http.Error(w, "this port only redirects to https; the request names no host", http.StatusBadRequest)
			return
		case httpsPort != "" && httpsPort != "443":
			host = net.JoinHostPort(host, httpsPort)
		case strings.Contains(host, ":"):
			host = "[" + host + "]"
		}
		w.Header().Set("Connection", "close")
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
}

const acmePrefix = "/.well-known/acme-challenge/"

// StatusWriter records the status a handler answers with, for request
// logs and metrics: 0 until the handler writes a header or a body (200
// for a body written without one).
type StatusWriter struct {
	http.ResponseWriter
	Status int
}

func (w *StatusWriter) WriteHeader(code int) {
	if w.Status == 0 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = 200
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
