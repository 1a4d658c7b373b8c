// Package mailsvc is the mail appliance as a library: Serve runs IMAP, SMTP
// (inbound and submission), the outbound queue and optionally the store's
// git endpoint on listeners it is handed, so that the appliance runtime can
// give it netstack listeners and a host process host sockets. Every
// listener goes through a guard.Listener (connection caps, handshake and
// login deadlines), and IMAP, SMTP AUTH and git share one guard.Auth (login
// rate limits). Service is the app as the appliance runtime runs it (its
// descriptor is app.Mail; apps/mail's main is appliance.Main(Service())),
// with the program's own host-mode flags (runHost; Main runs them).
package mailsvc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/apps/gitsvc"
	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/apps/mail/imapd"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/queue"
	"github.com/nymote/nymote/apps/mail/smtpd"
	"github.com/nymote/nymote/replica"
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
	// InsecureAuth allows logins without TLS, and serves the git endpoint
	// over plain HTTP (loopback tests only).
	InsecureAuth bool
	// Auth rate-limits logins of every protocol (see guard.Auth); nil
	// means one with guard's defaults.
	Auth *guard.Auth
	// Conns bounds the connections of every listener (see
	// guard.ListenerOptions; zero values are guard's defaults, and
	// LoginTimeout zero is two minutes). Serve sets TLS and Busy per
	// protocol, and LoginTimeout only where there is a login.
	Conns guard.ListenerOptions
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
	// Replica configures the replication with the store's peers (see
	// package replica): its endpoint is served under /replica/ on the git
	// port. Logger and Stdout default to the service's.
	Replica replica.Options
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
	// Live sync with the store's peers (none: it waits for some).
	ropts := cfg.Replica
	if ropts.Logger == nil {
		ropts.Logger = log
	}
	if ropts.Stdout == nil {
		ropts.Stdout = out
	}
	eng, err := replica.Start(st, ropts)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	defer eng.Close()

	maxMsg := cfg.MaxMessageBytes
	if maxMsg == 0 {
		maxMsg = 50 << 20
	}
	q := queue.New(queue.Options{Mail: ms, Domains: cfg.Domains, Hostname: hostname, Resolver: cfg.Resolver,
		Port: cfg.RemotePort, Dial: cfg.Dial, Backoff: cfg.Backoff, RetryWindow: cfg.RetryWindow, Logger: log})
	auth := cfg.Auth
	if auth == nil {
		auth = guard.NewAuth(guard.AuthOptions{})
	}
	imapSrv := imapd.New(imapd.Options{Mail: ms, Domains: cfg.Domains, TLSConfig: tlsConfig,
		InsecureAuth: cfg.InsecureAuth, AppendLimit: uint32(maxMsg), Auth: auth, Logger: log})
	inbound := smtpd.New(smtpd.Options{Mail: ms, Domains: cfg.Domains, Hostname: hostname, TLSConfig: tlsConfig,
		MaxMessageBytes: maxMsg, Logger: log})
	submission := smtpd.New(smtpd.Options{Mail: ms, Domains: cfg.Domains, Hostname: hostname, Submission: true,
		Queue: q, TLSConfig: tlsConfig, InsecureAuth: cfg.InsecureAuth, MaxMessageBytes: maxMsg,
		Auth: auth, Logger: log})
	var gitSrv *gitsvc.Server
	if ls.Git != nil {
		gitTLS := tlsConfig
		if cfg.InsecureAuth {
			gitTLS = nil
		}
		gitSrv = gitsvc.New(gitsvc.Config{Store: st, TLS: gitTLS, Auth: auth, Conns: cfg.Conns, Logger: log, Replica: eng.Handler()})
	}
	ls = guarded(ls, cfg.Conns, tlsConfig, log)

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
			// imapd puts TLS on top itself (over its write coalescing);
			// the guard's deadline bounds the handshake beneath.
			run(n.name, func() error { return imapSrv.ServeTLS(ln, tlsConfig) })
		case "smtp":
			run(n.name, func() error { return inbound.Serve(ln) })
		case "submission":
			run(n.name, func() error { return submission.Serve(ln) })
		case "submissions":
			run(n.name, func() error { return submission.Serve(ln) }) // TLS by the guard
		case "git":
			run(n.name, func() error { return gitSrv.Serve(ln) }) // guarded by gitsvc
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

// Busy answers for connections over the caps, on plain-text ports.
const (
	imapBusy = "* BYE Too many connections; try again later\r\n"
	smtpBusy = "421 4.7.0 Too many connections; try again later\r\n"
)

// guarded wraps every listener but git's (which gitsvc guards) in a
// guard.Listener: connection caps, handshake deadline, and a login deadline
// where there is a login. TLS is done by the guard for submissions (which
// serves *tls.Conn as handed), by imapd for imaps.
func guarded(ls Listeners, o guard.ListenerOptions, tlsConfig *tls.Config, log *slog.Logger) Listeners {
	if o.LoginTimeout == 0 {
		o.LoginTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = log
	}
	wrap := func(ln *net.Listener, busy string, login bool, withTLS bool) {
		if *ln == nil {
			return
		}
		lo := o
		lo.Busy, lo.TLS = busy, nil
		if !login {
			lo.LoginTimeout = 0
		}
		if withTLS {
			lo.Busy, lo.TLS = "", tlsConfig
		}
		*ln = guard.NewListener(*ln, lo)
	}
	wrap(&ls.IMAP, imapBusy, true, false)
	wrap(&ls.IMAPS, "", true, false)
	wrap(&ls.SMTP, smtpBusy, false, false)
	wrap(&ls.Submission, smtpBusy, true, false)
	wrap(&ls.Submissions, "", true, true)
	return ls
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
