package mailsvc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/replica"
)

// Main runs the mail program on a host as the app's front door does
// (appliance.Main, through appliance.Run): args are its command line
// without the program name; it serves until ctx ends.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return appliance.Run(ctx, Service(), args, stdout, stderr)
}

// runHost is the mail program's host mode (Service().Host): it parses its
// flags, opens its listeners on h.Network (host sockets, or a netstack on
// a TAP device with the runtime's --net tap:NAME) and runs Serve until ctx
// ends. With --proxy (or $NYMOTE_PROXY) the listeners read a PROXY
// protocol header from connections of those networks, as the appliance
// runtime's host mode does (see appliance.ProxyListener).
func runHost(ctx context.Context, h *appliance.HostEnv) (err error) {
	args, stdout, stderr := h.Args, h.Stdout, h.Stderr
	fs := flag.NewFlagSet("mail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		data      = fs.String("data", "", "data directory holding the store (created on first use)")
		domain    = fs.String("domain", "", "mail domain(s), comma-separated: user alice is alice@DOMAIN")
		hostname  = fs.String("hostname", "", "server name (default: the first domain)")
		imapAddr  = fs.String("imap", "", "IMAP address (STARTTLS), e.g. 127.0.0.1:1143")
		imapsAddr = fs.String("imaps", "", "IMAP address with implicit TLS, e.g. :993")
		smtpAddr  = fs.String("smtp", "", "inbound SMTP address, e.g. :25")
		subAddr   = fs.String("submission", "", "SMTP submission address (STARTTLS), e.g. :587")
		subsAddr  = fs.String("submissions", "", "SMTP submission address with implicit TLS, e.g. :465")
		httpAddr  = fs.String("http", "", "plain HTTP address, e.g. :80: ACME http-01 challenges and client autoconfiguration; the rest redirects to --https")
		httpsAddr = fs.String("https", "", "HTTPS address, e.g. :443: the MTA-STS policy, client autoconfiguration")
		gitAddr   = fs.String("git", "", "address of the store's git smart HTTP endpoint, e.g. 127.0.0.1:9418")
		certFile  = fs.String("tls-cert", "", "TLS certificate (PEM); default: a self-signed one kept in the store")
		keyFile   = fs.String("tls-key", "", "TLS key (PEM)")
		acmeDir   = fs.String("acme", "", "ACME directory URL to obtain certificates from (\"letsencrypt\": Let's Encrypt's); default: none, the self-signed certificate")
		acmeEmail = fs.String("acme-email", "", "contact address of the ACME account")
		acmeNames = fs.String("acme-names", "", "names on the ACME certificate, comma-separated (default: the hostname and mta-sts.DOMAIN of each domain)")
		acmeCA    = fs.String("acme-ca", "", "PEM file of the roots to trust for the ACME server's own HTTPS (test CAs such as Pebble); default: the system's")
		insecure  = fs.Bool("insecure-auth", false, "allow logins without TLS and serve --git over plain HTTP (loopback tests only)")
		maxSize   = fs.Int64("max-message-size", 50<<20, "largest message accepted, in bytes")
		cacheMiB  = fs.Int64("body-cache", 0, "MiB of message bodies kept in memory (0: an eighth of the machine's memory or of the Go memory limit, 2 to 256 MiB; negative: none)")
		sumMiB    = fs.Int64("summary-cache", 0, "MiB of message summaries (envelopes, structures, headers) kept in memory (0: a sixteenth of the machine's memory or an eighth of the Go memory limit, 2 to 256 MiB; negative: none)")
		proxyNets = fs.String("proxy", os.Getenv("NYMOTE_PROXY"), "networks (CIDR[,CIDR]) of a proxy, such as jitsu, whose connections start with a PROXY protocol header carrying the client's address (default $NYMOTE_PROXY)")
		verbose   = fs.Bool("v", false, "debug logging")
	)
	peerFlags := replica.BootFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	proxy, err := appliance.ParseProxyNetworks(*proxyNets)
	if err != nil {
		return fmt.Errorf("--proxy: %w", err)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg := Config{
		DataDir:           *data,
		Domains:           SplitDomains(*domain),
		Hostname:          *hostname,
		TLS:               svc.TLSOptions{CertFile: *certFile, KeyFile: *keyFile},
		InsecureAuth:      *insecure,
		MaxMessageBytes:   *maxSize,
		BodyCacheBytes:    *cacheMiB << 20, // zero and negative as Config says
		SummaryCacheBytes: *sumMiB << 20,
		Logger:            log,
		Stdout:            stdout,
		Dial:              h.Network.DialContext,
		Resolver:          h.Network.Resolver(),
	}
	if cfg.DataDir == "" {
		return errors.New("no data directory given (--data)")
	}
	if cfg.Peers, err = peerFlags(); err != nil {
		return err
	}
	if *acmeDir != "" {
		cfg.ACME = &ACME{DirectoryURL: *acmeDir, Email: *acmeEmail, Names: SplitDomains(*acmeNames)}
		if *acmeCA != "" {
			if cfg.ACME.HTTPClient, err = acmeCAClient(*acmeCA); err != nil {
				return fmt.Errorf("--acme-ca: %w", err)
			}
		}
	} else if *acmeEmail != "" || *acmeNames != "" || *acmeCA != "" {
		return errors.New("--acme-email, --acme-names and --acme-ca need --acme")
	}
	var ls Listeners
	defer func() {
		if err != nil {
			for _, n := range ls.all() {
				if n.ln != nil {
					n.ln.Close()
				}
			}
		}
	}()
	for _, l := range []struct {
		name, addr string
		ln         *net.Listener
	}{{"imap", *imapAddr, &ls.IMAP}, {"imaps", *imapsAddr, &ls.IMAPS}, {"smtp", *smtpAddr, &ls.SMTP},
		{"submission", *subAddr, &ls.Submission}, {"submissions", *subsAddr, &ls.Submissions}, {"git", *gitAddr, &ls.Git},
		{"http", *httpAddr, &ls.HTTP}, {"https", *httpsAddr, &ls.HTTPS}} {
		if l.addr == "" {
			continue
		}
		ln, err := h.Network.Listen("tcp", l.addr)
		if err != nil {
			return err
		}
		// As the appliance runtime's listeners: the PROXY header is read
		// (beneath the guard, so that caps and rate limits key on the
		// client) only from the trusted networks.
		*l.ln = appliance.ProxyListener(ln, proxy, log.With("port", l.name))
	}
	if len(proxy) > 0 && ls != (Listeners{}) {
		log.Info("reading a PROXY header on connections from a proxy", "networks", *proxyNets)
	}
	if ls == (Listeners{}) {
		return errors.New("no listener given (--imap, --imaps, --smtp, --submission, --submissions, --http, --https)")
	}
	return Serve(ctx, cfg, ls)
}

// acmeCAClient is an HTTP client for the ACME CA that trusts the roots in
// the PEM file at path (a test CA such as Pebble) for the CA's own HTTPS.
func acmeCAClient(path string) (*http.Client, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no certificate in %s", path)
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}
