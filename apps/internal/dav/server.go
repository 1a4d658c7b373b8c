package dav

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

// Listener is a pre-opened listener and the protocol to serve on it:
// "http", or "https" (TLS with Config.TLS is added on top).
type Listener struct {
	Proto string
	net.Listener
}

// Config configures Serve.
type Config struct {
	Options
	// TLS is required when a listener's Proto is "https".
	TLS *tls.Config
	// InsecureHTTP serves DAV on "http" listeners, passwords in the clear
	// (loopback tests only). Without it an "http" listener only redirects
	// to https, so that no client sends its password unencrypted.
	InsecureHTTP bool
	// ACME, if set, answers ACME http-01 challenges
	// (/.well-known/acme-challenge/) on the "http" listeners: the hook
	// for certificates from Let's Encrypt.
	ACME http.Handler
	// Console, if set, serves the paths under /console/ and /api/, and
	// /metrics, (the app's web console and HTTP API, see
	// apps/internal/console) beside DAV, on the listeners that serve DAV.
	// Those names are then not reachable as DAV homes.
	Console http.Handler
	// Conns bounds the connections of every listener (see
	// guard.ListenerOptions; zero values are guard's defaults). Serve sets
	// TLS and Busy per listener.
	Conns guard.ListenerOptions
	// Wrap, if set, wraps the DAV handler: a check in front of it, such as
	// capability tokens (signpost/capability.Handler with WithUser).
	Wrap func(http.Handler) http.Handler
	// Replica, if set, serves the paths under /replica/ (the store's
	// replication endpoint, replica.Engine.Handler) where DAV is served.
	Replica http.Handler
}

// bodyIdle bounds each read of a request body and each write of a
// response (see guard.Idle): a large PUT at a steady pace succeeds, a
// stalled one is dropped.
const bodyIdle = time.Minute

const httpBusy = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 37\r\nConnection: close\r\n\r\nToo many connections; try again later"

// Serve serves a Handler for cfg on every listener until ctx is done, then
// stops accepting and waits (up to 10 seconds) for requests in flight. It
// never opens sockets itself, so an appliance runtime can hand it host
// sockets or netstack listeners alike. Every listener is wrapped in a
// guard.Listener.
func Serve(ctx context.Context, cfg Config, lns []Listener) error {
	if cfg.Store == nil || cfg.Kind == nil {
		return errors.New("dav: Serve needs a store and a kind")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var h http.Handler = NewHandler(cfg.Options)
	if cfg.Wrap != nil {
		h = cfg.Wrap(h)
	}
	if cfg.Console != nil {
		// The console has its own sign-in: outside Wrap.
		h = withConsole(h, cfg.Console)
	}
	if cfg.Replica != nil {
		// Replication authenticates peers by their tokens: outside Wrap.
		dh, rh := h, cfg.Replica
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/replica/") {
				rh.ServeHTTP(w, r)
				return
			}
			dh.ServeHTTP(w, r)
		})
	}
	httpsPort := ""
	for _, l := range lns {
		if l.Proto == "https" {
			if _, p, err := net.SplitHostPort(l.Addr().String()); err == nil {
				httpsPort = p
			}
		}
	}
	co := cfg.Conns
	if co.Logger == nil {
		co.Logger = log
	}
	var srvs []*http.Server
	var glns []net.Listener
	for _, l := range lns {
		handler := guard.Idle(h, bodyIdle)
		lo := co
		switch l.Proto {
		case "http":
			lo.Busy = httpBusy
			if !cfg.InsecureHTTP {
				handler = guard.RedirectHTTPS(httpsPort, cfg.ACME)
			}
		case "https":
			if cfg.TLS == nil {
				return fmt.Errorf("dav: https listener %s without a TLS configuration", l.Addr())
			}
			lo.TLS = cfg.TLS
		default:
			return fmt.Errorf("dav: unknown protocol %q", l.Proto)
		}
		glns = append(glns, guard.NewListener(l.Listener, lo))
		srvs = append(srvs, &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: guard.HTTPHeaderTimeout,
			IdleTimeout:       guard.HTTPIdleTimeout,
			MaxHeaderBytes:    guard.HTTPMaxHeader,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		})
	}
	errc := make(chan error, len(lns))
	var wg sync.WaitGroup
	for i, l := range lns {
		srv, ln := srvs[i], glns[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("dav: serving %s on %s: %w", l.Proto, ln.Addr(), err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range srvs {
		if serr := srv.Shutdown(sctx); serr != nil && err == nil {
			err = serr
		}
	}
	wg.Wait()
	return err
}

// withConsole sends the console's paths to console and the rest to dav.
func withConsole(dav, console http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "/console" || p == "/metrics" || strings.HasPrefix(p, "/console/") || strings.HasPrefix(p, "/api/") {
			console.ServeHTTP(w, r)
			return
		}
		dav.ServeHTTP(w, r)
	})
}
