package mailsvc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/apps/internal/guard"
)

// The mail app's web side: HTTPS (port 443) serves one http.ServeMux, the
// Web mux, on which the mail app mounts what mail needs over HTTP (the
// MTA-STS policy, client autoconfiguration) and others mount theirs
// (Config.Web: a web console). Plain HTTP (port 80) answers ACME http-01
// challenges and what clients fetch in the clear (PlainPaths), and
// redirects everything else to HTTPS, so that no password travels
// unencrypted.

// Web is the mail app's HTTPS handler tree. Handlers are plain
// http.Handler values; Mount adds one under a ServeMux pattern.
type Web struct {
	// Mux is what HTTPS serves. Patterns may name a host
	// ("mta-sts.example.org/.well-known/mta-sts.txt") as ServeMux allows.
	Mux *http.ServeMux
	// plain are the path prefixes that plain HTTP serves from Mux too
	// rather than redirecting.
	plain []string
}

// NewWeb returns an empty Web.
func NewWeb() *Web { return &Web{Mux: http.NewServeMux()} }

// Mount serves h under pattern on HTTPS. It panics, as ServeMux does, on a
// pattern mounted twice.
func (w *Web) Mount(pattern string, h http.Handler) { w.Mux.Handle(pattern, h) }

// MountPlain serves h under pattern on HTTPS, and on plain HTTP the
// requests whose path starts with prefix (without a redirect): for what a
// client fetches before it can trust a certificate, and holds no secret.
func (w *Web) MountPlain(pattern, prefix string, h http.Handler) {
	w.Mux.Handle(pattern, h)
	w.plain = append(w.plain, prefix)
}

// httpHandler is what plain HTTP serves: ACME http-01 challenges (acme,
// if set), the plain paths, and a redirect to HTTPS on httpsPort for the
// rest.
func (w *Web) httpHandler(httpsPort string, acme http.Handler) http.Handler {
	redirect := guard.RedirectHTTPS(httpsPort, acme)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		for _, p := range w.plain {
			if strings.HasPrefix(r.URL.Path, p) {
				w.Mux.ServeHTTP(rw, r)
				return
			}
		}
		redirect.ServeHTTP(rw, r)
	})
}

// webIdle bounds each read of a request body and each write of a response
// (see guard.Idle).
const webIdle = time.Minute

const httpBusy = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 37\r\nConnection: close\r\n\r\nToo many connections; try again later"

// webServers serves w on the HTTP and HTTPS listeners (either may be nil)
// until Shutdown. TLS for HTTPS is tlsConfig (done by the guard).
type webServers struct {
	srvs []*http.Server
	lns  []net.Listener
	wg   sync.WaitGroup
}

func startWeb(w *Web, httpLn, httpsLn net.Listener, tlsConfig *tls.Config, acme http.Handler,
	o guard.ListenerOptions, log *slog.Logger, errc chan<- error) *webServers {
	ws := &webServers{}
	httpsPort := ""
	if httpsLn != nil {
		if _, p, err := net.SplitHostPort(httpsLn.Addr().String()); err == nil {
			httpsPort = p
		}
	}
	if o.Logger == nil {
		o.Logger = log
	}
	o.LoginTimeout = 0
	add := func(ln net.Listener, name string, h http.Handler, lo guard.ListenerOptions) {
		if ln == nil {
			return
		}
		srv := &http.Server{
			Handler:           guard.Idle(h, webIdle),
			ReadHeaderTimeout: guard.HTTPHeaderTimeout,
			IdleTimeout:       guard.HTTPIdleTimeout,
			MaxHeaderBytes:    guard.HTTPMaxHeader,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		gln := guard.NewListener(ln, lo)
		ws.srvs, ws.lns = append(ws.srvs, srv), append(ws.lns, gln)
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			if err := srv.Serve(gln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("mail %s: %w", name, err)
			}
		}()
	}
	plain := o
	plain.Busy, plain.TLS = httpBusy, nil
	add(httpLn, "http", w.httpHandler(httpsPort, acme), plain)
	secure := o
	secure.Busy, secure.TLS = "", tlsConfig
	add(httpsLn, "https", w.Mux, secure)
	return ws
}

// Shutdown stops the servers, waiting up to 5 seconds for requests in
// flight.
func (ws *webServers) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range ws.srvs {
		s.Shutdown(ctx)
	}
	for _, ln := range ws.lns {
		ln.Close()
	}
	ws.wg.Wait()
}
