// Package gitsvc serves a store's git smart HTTP endpoint (git clone, fetch
// and push) with the defences every Nymote service shares: the listener goes
// through a guard.Listener (connection caps in total and per host, a
// deadline on the TLS handshake and the first bytes), logins through a
// guard.Auth (rate limits per host and per account), and the http.Server
// bounds headers, idle keep-alive connections and each read and write.
//
// The mail service serves its store's git endpoint with it, and so does the
// host tool's `nymote store serve`; it lives outside apps/internal so that
// cmd/nymote can use it, and imports neither gVisor nor the appliance
// runtime.
//
//	srv := gitsvc.New(gitsvc.Config{Store: st, TLS: tlsConfig, Logger: log})
//	go srv.Serve(ln)
//	...
//	srv.Shutdown(ctx)
package gitsvc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/store"
)

// IdleTimeout bounds each read of a request body and each write of a
// response (see guard.Idle): a push or clone at a slow but steady pace
// succeeds, a client that stops is dropped.
const IdleTimeout = 2 * time.Minute

// Busy is the answer to a connection over the caps on a plain HTTP port.
const Busy = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 37\r\nConnection: close\r\n\r\nToo many connections; try again later"

// Config configures New. Zero values are the defaults named.
type Config struct {
	// Store is the store served (required).
	Store *store.Store
	// TLS serves HTTPS with this configuration (the handshake done by the
	// guard, within its deadline). Nil serves plain HTTP, where passwords
	// travel in the clear: for loopback tests only.
	TLS *tls.Config
	// Auth rate-limits the logins; nil means one with guard's defaults.
	// A service passes the one its other protocols use, so that guessing
	// is limited across all of them.
	Auth *guard.Auth
	// Conns bounds the connections (see guard.ListenerOptions; zero values
	// are guard's defaults). New sets TLS and Busy, and no login deadline:
	// git logs in on every request.
	Conns guard.ListenerOptions
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Replica, if set, serves the paths under /replica/ (the store's
	// replication endpoint for its peers, replica.Engine.Handler, which
	// authenticates peers by their own tokens).
	Replica http.Handler
}

// Server is a store's guarded git endpoint.
type Server struct {
	http  *http.Server
	conns guard.ListenerOptions
}

// New returns a Server for cfg.Store.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	auth := cfg.Auth
	if auth == nil {
		auth = guard.NewAuth(guard.AuthOptions{})
	}
	st := cfg.Store
	var h http.Handler = st.GitHandler(log, store.WithGitAuthenticator(Authenticator(auth, st)))
	if cfg.Replica != nil {
		h = withReplica(h, cfg.Replica)
	}
	conns := cfg.Conns
	conns.LoginTimeout = 0
	conns.TLS, conns.Busy = cfg.TLS, ""
	if cfg.TLS == nil {
		conns.Busy = Busy
	}
	if conns.Logger == nil {
		conns.Logger = log
	}
	return &Server{
		http: &http.Server{
			Handler:           guard.Idle(h, IdleTimeout),
			ReadHeaderTimeout: guard.HTTPHeaderTimeout,
			IdleTimeout:       guard.HTTPIdleTimeout,
			MaxHeaderBytes:    guard.HTTPMaxHeader,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		conns: conns,
	}
}

// Serve serves on ln (a plain TCP listener: Serve adds the guard and TLS)
// until Shutdown, then returns nil; ln is closed when it returns.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.http.Serve(guard.NewListener(ln, s.conns)); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gitsvc: %w", err)
	}
	return nil
}

// Shutdown stops accepting, waits for the requests in flight until ctx ends,
// then closes the connections left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	return err
}

// Authenticator checks git's logins against st's users through auth's rate
// limits, keyed on the request's remote address.
func Authenticator(auth *guard.Auth, st *store.Store) store.GitAuthenticator {
	return func(r *http.Request, name, password string) (store.User, error) {
		var u store.User
		err := auth.Check(r.Context(), r.RemoteAddr, name, password, func() (err error) {
			u, err = st.Authenticate(name, password)
			return err
		})
		if errors.Is(err, guard.ErrBusy) {
			return store.User{}, fmt.Errorf("%w: %w", store.ErrAuthBusy, err)
		}
		return u, err
	}
}

// TLSConfig returns the TLS configuration for a host process serving st:
// from certFile and keyFile (PEM), or if both are empty a self-signed
// certificate for hosts kept among the node's files (see svc.TLSConfig),
// with its SHA-256 fingerprint to print.
func TLSConfig(ctx context.Context, st *store.Store, certFile, keyFile string, hosts []string, log *slog.Logger) (*tls.Config, string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, fp, err := svc.TLSConfig(ctx, st, svc.TLSOptions{CertFile: certFile, KeyFile: keyFile, Hostnames: hosts}, log)
	if err != nil {
		return nil, "", fmt.Errorf("gitsvc: %w", err)
	}
	return c, fp, nil
}

// CertFile is the file of the node's generated certificate (the one
// TLSConfig makes when given no certificate), for clients to trust, as in
// GIT_SSL_CAINFO=FILE git clone https://...
func CertFile(st *store.Store) string {
	return filepath.Join(st.NodeDir(), filepath.FromSlash(svc.CertPath))
}

// withReplica sends the requests under /replica/ to rh, the others to h.
func withReplica(h, rh http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/replica/") {
			rh.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
