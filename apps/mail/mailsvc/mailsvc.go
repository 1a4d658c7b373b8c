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
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/apps/gitsvc"
	"github.com/nymote/nymote/apps/internal/acmecert"
	"github.com/nymote/nymote/apps/internal/console"
	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/apps/mail/imapd"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/msgauth"
	"github.com/nymote/nymote/apps/mail/mtasts"
	"github.com/nymote/nymote/apps/mail/queue"
	"github.com/nymote/nymote/apps/mail/smtpd"
	"github.com/nymote/nymote/apps/mail/wellknown"
	"github.com/nymote/nymote/internal/metrics"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/signpost"
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
	// ACME, if set, has the certificate obtained and renewed from an ACME
	// CA (the self-signed one serves until then, and whenever the CA
	// fails).
	ACME *ACME
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
	// mailstore.DefaultRawCacheBytes (an eighth of the machine's memory
	// or of the Go memory limit, 2 to 256 MiB), negative: none.
	BodyCacheBytes int64
	// SummaryCacheBytes bounds the in-memory cache of message summaries
	// (envelopes, body structures, headers); zero:
	// mailstore.DefaultSummaryCacheBytes (a sixteenth of the machine's
	// memory or an eighth of the Go memory limit, 2 to 256 MiB), negative:
	// none.
	SummaryCacheBytes int64
	// Queue settings (see queue.Options): the resolver, the remote SMTP
	// port, dialer, backoff and retry window. The resolver also serves the
	// checks of inbound mail (SPF, DKIM, DMARC) when it can look up TXT,
	// MX, addresses and names (msgauth.Resolver: a *net.Resolver can);
	// otherwise they use net.DefaultResolver.
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
	// SetUpdateAuth, if set, is told who may update the appliance once
	// the store is open: its users with git write access (see
	// appliance.Env.SetUpdateAuth).
	SetUpdateAuth func(check func(user, password string) error)
	// TLSRoots verify the HTTPS of MTA-STS policy servers and, under an
	// enforce policy, the certificates of MX hosts; nil: the system's
	// (tests: a test CA). STSPort is the HTTPS port policies are fetched
	// from; "": 443 (tests).
	TLSRoots *x509.CertPool
	STSPort  string
	// NoInboundChecks turns off SPF, DKIM and DMARC on inbound SMTP
	// (tests of other things only).
	NoInboundChecks bool
	// Web, if set, is called with the HTTPS port's handler tree once the
	// mail app has mounted its own handlers on it, to mount more (a web
	// console). See Web.
	Web func(*Web)
	// Replica configures the replication with the store's peers (see
	// package replica): its endpoint is served under /replica/ on the git
	// port and the HTTPS port. Logger, Stdout and Dial default to the
	// service's; Tunnel defaults
	// to the data directory's Signpost node, dialed with Dial (peers that
	// are nodes of its network are reached over the tunnel, their node
	// keys their credentials).
	Replica replica.Options
	// Peers, if set, are peers from the boot options (nymote.peer=...,
	// --peer; see replica.ParseBoot): joined before the service starts,
	// and a store with no commit yet is cloned from them first (see
	// replica.Join).
	Peers *replica.BootPeers
}

// ACME configures certificates from an ACME CA (see package acmecert).
type ACME struct {
	// DirectoryURL is the CA's directory; "" or "letsencrypt" is Let's
	// Encrypt's.
	DirectoryURL string
	// Email is the account's contact address.
	Email string
	// Names go on the certificate; empty: the hostname, and mta-sts.DOMAIN
	// of each domain (the MTA-STS policy is fetched over HTTPS with a
	// valid certificate).
	Names []string
	// HTTPClient talks to the CA (tests: one trusting a test CA); nil:
	// http.DefaultClient.
	HTTPClient *http.Client
	// RetryMin is the first wait after a failed attempt; zero: a minute.
	RetryMin time.Duration
}

// Listeners are what Serve serves on; a nil listener is a service not
// offered. IMAPS, Submissions and HTTPS are plain TCP listeners: Serve adds
// TLS. HTTP redirects to HTTPS but for ACME challenges and the paths
// mounted plain (see Web).
type Listeners struct {
	IMAP, IMAPS, SMTP, Submission, Submissions, Git, HTTP, HTTPS net.Listener
}

type named struct {
	name string
	ln   net.Listener
}

func (ls Listeners) all() []named {
	return []named{{"imap", ls.IMAP}, {"imaps", ls.IMAPS}, {"smtp", ls.SMTP},
		{"submission", ls.Submission}, {"submissions", ls.Submissions}, {"git", ls.Git},
		{"http", ls.HTTP}, {"https", ls.HTTPS}}
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
	var acmeMgr *acmecert.Manager
	if cfg.ACME != nil {
		names := cfg.ACME.Names
		if len(names) == 0 {
			names = []string{hostname}
			for _, d := range cfg.Domains {
				names = append(names, "mta-sts."+d)
			}
		}
		dir := cfg.ACME.DirectoryURL
		if dir == "" || dir == "letsencrypt" {
			dir = acmecert.LetsEncrypt
		}
		acmeMgr, err = acmecert.New(acmecert.Options{DirectoryURL: dir, Email: cfg.ACME.Email, Names: names, Files: st,
			HTTPClient: acmeClient(cfg.ACME.HTTPClient, cfg.Dial), Fallback: &tlsConfig.Certificates[0], Logger: log, Console: out,
			Prefix: "nymote: mail ", RetryMin: cfg.ACME.RetryMin})
		if err != nil {
			return fmt.Errorf("mail: %w", err)
		}
		if acmeMgr.Certificate() == nil {
			fmt.Fprintf(out, "nymote: mail tls: asking %s for a certificate for %s; the self-signed one (above) serves until then\n", dir, strings.Join(names, ", "))
		}
		tlsConfig = acmeMgr.TLSConfig(tlsConfig)
	}
	printAddresses(out, st, cfg.Domains)

	// The mailbox merge function, for store sync between replicas.
	st.SetMergeFunc(mailstore.Prefix+"/", mailstore.Merge)
	// Pushed (and pulled) mailboxes are checked as IMAP would have
	// written them.
	st.SetValidateFunc(mailstore.Prefix+"/", mailstore.Validate)
	ropts := cfg.Replica
	if ropts.Logger == nil {
		ropts.Logger = log
	}
	if ropts.Stdout == nil {
		ropts.Stdout = out
	}
	if ropts.Dial == nil {
		ropts.Dial = cfg.Dial
	}
	if ropts.Tunnel == nil && cfg.DataDir != "" {
		ropts.Tunnel = signpost.NewReplicaTunnel(cfg.DataDir, cfg.Dial)
	}
	// Peers from the boot options: a new node's store is cloned from its
	// peer before the mailstore writes anything; the ports answer with a
	// temporary refusal meanwhile (join.go).
	if cfg.Peers != nil {
		release := func() {}
		if fresh, err := replica.Fresh(st); err != nil {
			return fmt.Errorf("mail: %w", err)
		} else if fresh {
			release = holdWhileCloning(&ls, tlsConfig, cfg.InsecureAuth, out)
		}
		err := replica.Join(ctx, st, cfg.Peers, ropts)
		release()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("mail: %w", err)
		}
	}
	ms, err := mailstore.Open(st, mailstore.Options{Logger: log, RawCacheBytes: cfg.BodyCacheBytes, SummaryCacheBytes: cfg.SummaryCacheBytes})
	if err != nil {
		return err
	}
	defer ms.Close()
	// Live sync with the store's peers (none: it waits for some).
	eng, err := replica.Start(st, ropts)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	defer eng.Close()

	maxMsg := cfg.MaxMessageBytes
	if maxMsg == 0 {
		maxMsg = 50 << 20
	}
	sts := &mtasts.Fetcher{Dial: cfg.Dial, RootCAs: cfg.TLSRoots, Port: cfg.STSPort}
	if r, ok := cfg.Resolver.(mtasts.Resolver); ok {
		sts.Resolver = r
	}
	q := queue.New(queue.Options{Mail: ms, Domains: cfg.Domains, Hostname: hostname, Resolver: cfg.Resolver,
		Port: cfg.RemotePort, Dial: cfg.Dial, Backoff: cfg.Backoff, RetryWindow: cfg.RetryWindow, Logger: log,
		STS: sts.Policy, STSRootCAs: cfg.TLSRoots})
	auth := cfg.Auth
	if auth == nil {
		auth = guard.NewAuth(guard.AuthOptions{})
	}
	if cfg.SetUpdateAuth != nil {
		// The update port's logins count against the same limiter as
		// IMAP's and SMTP's (the runtime does not hand the client's
		// address: they share one host key, "update port"), so that
		// guessing an administrator's password there is slowed too.
		admin := svc.AdminCheck(st)
		cfg.SetUpdateAuth(func(user, password string) error {
			return auth.Check(ctx, "update port", user, password, func() error { return admin(user, password) })
		})
	}
	// DKIM keys of every local domain, made on first use (the first
	// message signed, or nymote mail dns); those made are read now, for
	// checking our own signatures without DNS.
	keyring := msgauth.NewKeyring(st, nil)
	for _, d := range cfg.Domains {
		if err := keyring.Load(d); err != nil {
			return fmt.Errorf("mail: %w", err)
		}
	}
	var checker *msgauth.Checker
	if !cfg.NoInboundChecks {
		checker = &msgauth.Checker{Domains: cfg.Domains, Keyring: keyring, Hostname: hostname}
		if r, ok := cfg.Resolver.(msgauth.Resolver); ok {
			checker.Resolver = r
		}
	}
	imapSrv := imapd.New(imapd.Options{Mail: ms, Domains: cfg.Domains, TLSConfig: tlsConfig,
		InsecureAuth: cfg.InsecureAuth, AppendLimit: uint32(maxMsg), Auth: auth, Logger: log})
	inbound := smtpd.New(smtpd.Options{Mail: ms, Domains: cfg.Domains, Hostname: hostname, TLSConfig: tlsConfig,
		MaxMessageBytes: maxMsg, Check: checker, Logger: log})
	submission := smtpd.New(smtpd.Options{Mail: ms, Domains: cfg.Domains, Hostname: hostname, Submission: true,
		Queue: q, TLSConfig: tlsConfig, InsecureAuth: cfg.InsecureAuth, MaxMessageBytes: maxMsg,
		Auth: auth, DKIM: keyring, Logger: log})
	var gitSrv *gitsvc.Server
	if ls.Git != nil {
		gitTLS := tlsConfig
		if cfg.InsecureAuth {
			gitTLS = nil
		}
		gitSrv = gitsvc.New(gitsvc.Config{Store: st, TLS: gitTLS, Auth: auth, Conns: cfg.Conns, Logger: log, Replica: eng.Handler()})
	}
	web := NewWeb()
	wellknown.Config{Domains: cfg.Domains, Hostname: hostname}.Mount(web)
	// The web console and API (issue 19): mail's history, restores through
	// the mailstore's index, logins limited with IMAP's and SMTP's.
	queueLen := metrics.NewGaugeFunc("nymote_mail_queue_length", "Messages waiting in the outbound queue.",
		func() float64 {
			es, err := q.Entries()
			if err != nil {
				return -1
			}
			return float64(len(es))
		})
	// The replication endpoint on HTTPS too (the appliance has no git
	// port): peers authenticate with their own tokens.
	web.Mount("/replica/", eng.Handler())
	cons := console.New(console.Options{Store: st, App: "mail", Auth: auth, Mail: ms, TLS: tlsConfig, Logger: log,
		Collectors: []metrics.Collector{queueLen}, Peers: eng.Status, SignpostDir: cfg.DataDir})
	for _, p := range []string{"/console", "/console/", "/api/", "/metrics"} {
		web.Mount(p, cons)
	}
	if cfg.Web != nil {
		cfg.Web(web)
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
	if acmeMgr != nil {
		run("acme", func() error {
			if err := acmeMgr.Run(ctx); !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		})
	}
	// Mailboxes that an earlier version wrote move to the 16-way layout
	// (mailstore.Relayout), on a node without peers only.
	run("relayout", func() error {
		peerless := func() bool {
			ps, err := replica.Peers(st)
			return err == nil && len(ps) == 0 && (cfg.Peers == nil || len(cfg.Peers.Peers) == 0)
		}
		users, err := st.Users()
		if err != nil {
			return nil
		}
		if !peerless() {
			for _, u := range users {
				if need, _ := ms.NeedsRelayout(u.Name); need {
					log.Info("mail: mailboxes of an earlier version keep their layout: this node has peers, and moving their messages could undo an expunge made on a peer meanwhile", "user", u.Name)
					break
				}
			}
			return nil
		}
		for _, u := range users {
			n, err := ms.Relayout(ctx, u.Name, peerless)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("mail: moving messages to the 16-way layout failed; the mailbox stays as it is", "user", u.Name, "err", err)
				}
				return nil
			}
			if n > 0 {
				log.Info("mail: messages moved to the 16-way layout", "user", u.Name, "messages", n)
			}
		}
		return nil
	})
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
		case "http", "https":
			// Below, both at once (guarded by startWeb).
		}
		if !cfg.ListenLinesPrinted {
			fmt.Fprintf(out, "nymote: mail %s listening on %s\n", n.name, ln.Addr())
		}
	}
	var webSrv *webServers
	if ls.HTTP != nil || ls.HTTPS != nil {
		var acmeHTTP http.Handler
		if acmeMgr != nil {
			acmeHTTP = acmeMgr.HTTPHandler()
		}
		webSrv = startWeb(web, ls.HTTP, ls.HTTPS, tlsConfig, acmeHTTP, cfg.Conns, log, errc)
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	if webSrv != nil {
		webSrv.Shutdown()
	}
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

// maxAddressLines bounds the users printAddresses names on the console.
const maxAddressLines = 10

// printAddresses prints the users' full mail addresses on the console, so
// that someone trying the appliance knows what to log in and send as
// (user@DOMAIN, not a guessed domain).
func printAddresses(out io.Writer, st *store.Store, domains []string) {
	users, err := st.Users()
	if err != nil {
		fmt.Fprintf(out, "nymote: mail cannot list the users: %v\n", err)
		return
	}
	if len(users) == 0 {
		fmt.Fprintf(out, "nymote: mail has no users yet (add one with: nymote user add NAME --data DIR); addresses are NAME@%s\n", domains[0])
		return
	}
	for i, u := range users {
		if i == maxAddressLines {
			fmt.Fprintf(out, "nymote: mail has %d more users (nymote user list)\n", len(users)-i)
			break
		}
		addrs := make([]string, len(domains))
		for j, d := range domains {
			addrs[j] = u.Name + "@" + d
		}
		fmt.Fprintf(out, "nymote: mail user %s: address %s (log in as %s or %s)\n", u.Name, strings.Join(addrs, ", "), u.Name, addrs[0])
	}
}

// acmeClient is the HTTP client that talks to the ACME CA: hc (or a plain
// one) dialing through dial (the appliance's network) when it is set.
func acmeClient(hc *http.Client, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute, Transport: &http.Transport{}}
	}
	tr, ok := hc.Transport.(*http.Transport)
	if dial == nil || !ok {
		return hc
	}
	tr = tr.Clone()
	tr.DialContext = dial
	c := *hc
	c.Transport = tr
	return &c
}
