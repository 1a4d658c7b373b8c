package dav

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
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
}

// Serve serves a Handler for cfg on every listener until ctx is done, then
// stops accepting and waits (up to 10 seconds) for requests in flight. It
// never opens sockets itself, so an appliance runtime can hand it host
// sockets or netstack listeners alike.
func Serve(ctx context.Context, cfg Config, lns []Listener) error {
	if cfg.Store == nil || cfg.Kind == nil {
		return errors.New("dav: Serve needs a store and a kind")
	}
	h := NewHandler(cfg.Options)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 20 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          nil,
	}
	errc := make(chan error, len(lns))
	var wg sync.WaitGroup
	for _, l := range lns {
		ln := l.Listener
		switch l.Proto {
		case "http":
		case "https":
			if cfg.TLS == nil {
				return fmt.Errorf("dav: https listener %s without a TLS configuration", ln.Addr())
			}
			ln = tls.NewListener(ln, cfg.TLS)
		default:
			return fmt.Errorf("dav: unknown protocol %q", l.Proto)
		}
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
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	wg.Wait()
	return err
}
