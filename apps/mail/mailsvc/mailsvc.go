// Package mailsvc is the mail appliance as a library: Serve runs IMAP, SMTP
// (inbound and submission), the outbound queue and optionally the store's
// git endpoint on listeners it is handed, so that the appliance runtime can
// give it netstack listeners and a host process host sockets. Main is the
// program's flag handling, for apps/mail's thin main.
package mailsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/apps/mail/imapd"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/queue"
	"github.com/nymote/nymote/apps/mail/smtpd"
	"github.com/nymote/nymote/store"
)

// Config configures Serve. Zero values are the defaults named.
type Config struct {
	// DataDir is the data directory holding the store (created on first
	// use). Required unless Store is set.
	DataDir string
	// Store, if set, is used instead of opening DataDir (and not closed).
	Store *store.Store
	// Domains are the local mail domains (required): "alice" is
	// alice@Domains[i].
	Domains []string
	// Hostname names the server (SMTP greeting, Received, certificate);
	// "" means Domains[0].
	Hostname string
	// TLS says where the certificate comes from (zero: a self-signed one
	// generated into the store).
	TLS svc.TLSOptions
	// InsecureAuth allows logins without TLS (loopback tests only).
	InsecureAuth bool
	// MaxMessageBytes limits SMTP messages and IMAP APPEND; zero: 50 MiB.
	MaxMessageBytes int64
	// BodyCacheBytes bounds the in-memory cache of message bodies; zero:
	// mailstore.DefaultRawCacheBytes (an eighth of the machine's memory,
	// 8 to 256 MiB), negative: none.
	BodyCacheBytes int64
	// Queue settings (see queue.Options): the resolver, the remote SMTP
	// port, dialer, backoff and retry window.
	Resolver    queue.Resolver
	RemotePort  string
	Dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	Backoff     []time.Duration
	RetryWindow time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Stdout receives the console lines ("nymote: mail imap listening on
	// ADDR", the certificate's fingerprint); nil discards them.
	Stdout io.Writer
	// ListenLinesPrinted: the caller (the appliance runtime) has printed
	// the "listening on" lines already.
	ListenLinesPrinted bool
}

// Listeners are what Serve serves on; a nil listener is a service not
// offered. IMAPS and Submissions are plain TCP listeners: Serve adds TLS.
type Listeners struct {
	IMAP, IMAPS, SMTP, Submission, Submissions, Git net.Listener
}

type named struct {
	name string
	ln   net.Listener
}

func (ls Listeners) all() []named {
	return []named{{"imap", ls.IMAP}, {"imaps", ls.IMAPS}, {"smtp", ls.SMTP},
		{"submission", ls.Submission}, {"submissions", ls.Submissions}, {"git", ls.Git}}
}

// Serve runs the mail service until ctx ends, then stops accepting, closes
// connections and the store. It returns nil after a clean stop. The
// listeners are closed when it returns, whatever happened.
func Serve(ctx context.Context, cfg Config, ls Listeners) (err error) {
	defer func() {
		for _, n := range ls.all() {
			if n.ln != nil {
				n.ln.Close()
			}
		}
	}()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := cfg.Stdout
	if out == nil {
		out = io.Discard
	}
	if len(cfg.Domains) == 0 {
		return errors.New("mail: no domain given (--domain)")
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = cfg.Domains[0]
	}
	st := cfg.Store
	if st == nil {
		st, err = svc.OpenStore(cfg.DataDir, log)
		if err != nil {
			return fmt.Errorf("mail: %w", err)
		}
		defer st.Close()
	}
	tlsOpts := cfg.TLS
	if len(tlsOpts.Hostnames) == 0 {
		tlsOpts.Hostnames = []string{hostname, "localhost", "127.0.0.1"}
	}
	tlsConfig, fp, err := svc.TLSConfig(ctx, st, tlsOpts, log)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	fmt.Fprintf(out, "nymote: mail tls certificate sha256 %s\n", fp)

	ms, err := mailstore.Open(st, mailstore.Options{Logger: log, RawCacheBytes: cfg.BodyCacheBytes})
	if err != nil {
		return err
	}
	defer ms.Close()
	// The mailbox merge function, for store sync between replicas.
	st.SetMergeFunc(mailstore.Prefix+"/", mailstore.Merge)
	// Pushed mailboxes are checked as IMAP would have written them.
	st.SetValidateFunc(mailstore.Prefix+"/", mailstore.Validate)

	maxMsg := cfg.MaxMessageBytes
	if maxMsg == 0 {
		maxMsg = 50 << 20
	}
	q := queue.New(queue.Options{Mail: ms, Domains: cfg.Domains, Hostname: hostname, Resolver: cfg.Resolver,
		Port: cfg.RemotePort, Dial: cfg.Dial, Backoff: cfg.Backoff, RetryWindow: cfg.RetryWindow, Logger: log})
	imapSrv := imapd.New(imapd.Options{Mail: ms, Domains: cfg.Domains, TLSConfig: tlsConfig,
		InsecureAuth: cfg.InsecureAuth, AppendLimit: uint32(maxMsg), Logger: log})
	inbound := smtpd.New(smtpd.Options{Mail: ms, Domains: cfg.Domains, Hostname: hostname, TLSConfig: tlsConfig,
		MaxMessageBytes: maxMsg, Logger: log})
	submission := smtpd.New(smtpd.Options{Mail: ms, Domains: cfg.Domains, Hostname: hostname, Submission: true,
		Queue: q, TLSConfig: tlsConfig, InsecureAuth: cfg.InsecureAuth, MaxMessageBytes: maxMsg,
		Limiter: imapSrv.Limiter(), Logger: log})
	var gitSrv *http.Server
	if ls.Git != nil {
		gitSrv = &http.Server{Handler: st.GitHandler(log), ReadHeaderTimeout: 30 * time.Second}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("mail %s: %w", name, err)
			}
		}()
	}
	run("queue", func() error {
		if err := q.Run(ctx); !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
	for _, n := range ls.all() {
		if n.ln == nil {
			continue
		}
		ln := n.ln
		switch n.name {
		case "imap":
			run(n.name, func() error { return imapSrv.Serve(ln) })
		case "imaps":
			run(n.name, func() error { return imapSrv.ServeTLS(ln, tlsConfig) })
		case "smtp":
			run(n.name, func() error { return inbound.Serve(ln) })
		case "submission":
			run(n.name, func() error { return submission.Serve(ln) })
		case "submissions":
			run(n.name, func() error { return submission.ServeTLS(ln, tlsConfig) })
		case "git":
			run(n.name, func() error {
				if err := gitSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
					return err
				}
				return nil
			})
		}
		if !cfg.ListenLinesPrinted {
			fmt.Fprintf(out, "nymote: mail %s listening on %s\n", n.name, ln.Addr())
		}
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	imapSrv.Close()
	inbound.Close()
	submission.Close()
	if gitSrv != nil {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		gitSrv.Shutdown(sctx)
		c()
	}
	for _, n := range ls.all() {
		if n.ln != nil {
			n.ln.Close()
		}
	}
	wg.Wait()
	return err
}

// SplitDomains splits a comma-separated --domain value.
func SplitDomains(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, strings.ToLower(d))
		}
	}
	return out
}
