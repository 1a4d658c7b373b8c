// Package davapp is the service of the DAV apps, contacts and calendar
// (their descriptors are app.Contacts and app.Calendar): Service gives the
// appliance.Service whose Serve the runtime runs as PID 1, and whose Host
// is the DAV program's host mode (flags, opening the store, TLS,
// listeners, and the "listening" console lines). Their main functions are
// appliance.Main(davapp.Service(...)). What all apps share (the store of a
// data directory, TLS certificates) is in package svc.
package davapp

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/apps/internal/console"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/signpost"
	"github.com/nymote/nymote/store"
)

// Merger is a Kind that reconciles its objects when store replicas merge.
type Merger interface {
	// MergeFunc merges one object path changed on both sides.
	MergeFunc() store.MergeFunc
}

// davApp is one DAV app: its descriptor and its kind of objects.
type davApp struct {
	app.App
	newKind     func(maxSize int64) dav.Kind
	displayName string
}

// runHost is the DAV program's host mode: it parses h.Args, opens the
// store and serves on h.Network until ctx is done. Console lines go to
// h.Stdout, logs to h.Stderr. With neither --http nor --https it serves
// plain HTTP on the http port's host default (app.Port.HostDefault), on
// host sockets only.
func (a davApp) runHost(ctx context.Context, h *appliance.HostEnv) error {
	args, stdout, stderr := h.Args, h.Stdout, h.Stderr
	fs := flag.NewFlagSet(a.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data directory holding the store (created on first use)")
	httpAddr := fs.String("http", "", "address for plain HTTP, such as :80: it redirects to --https (unless --insecure-http)")
	insecure := fs.Bool("insecure-http", false, "serve DAV on --http, passwords in the clear (loopback tests only)")
	httpsAddr := fs.String("https", "", "address for HTTPS, such as :8443")
	cert := fs.String("tls-cert", "", "PEM certificate for --https (default: a self-signed one kept in the store)")
	key := fs.String("tls-key", "", "PEM key for --tls-cert")
	hosts := fs.String("hostname", "localhost,127.0.0.1", "comma-separated names for a generated certificate")
	maxSize := fs.Int64("max-object-size", dav.DefaultMaxObjectSize, "largest object accepted, in bytes")
	subscribe := fs.String("subscribe", "", "keep copies of collections shared with this appliance: LOCAL=URL#TOKEN[#SHA256],... (LOCAL: /USER/COLLECTION/; TOKEN: a capability token; SHA256: the remote's certificate fingerprint)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	peerFlags := replica.BootFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	peers, err := peerFlags()
	if err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	if *httpAddr == "" && *httpsAddr == "" {
		p, _ := a.Port("http")
		if !isLoopback(p.HostDefault) || !h.Addr.IsLoopback() {
			return fmt.Errorf("give --https ADDR (and --http ADDR to redirect to it)")
		}
		*httpAddr, *insecure = p.HostDefault, true
	}
	st, err := svc.OpenStore(*data, log)
	if err != nil {
		return err
	}
	defer st.Close()
	var lns []dav.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	cfg := dav.Config{Options: dav.Options{Store: st, Logger: log, MaxObjectSize: *maxSize, DefaultDisplayName: a.displayName},
		InsecureHTTP: *insecure}
	cfg.Kind = a.newKind(*maxSize)
	subs, err := parseSubscriptions(*subscribe, cfg.Kind)
	if err != nil {
		return fmt.Errorf("--subscribe: %w", err)
	}
	cfg.Wrap = withSubscriptions(ctx, *data, subs, log)
	if m, ok := cfg.Kind.(Merger); ok {
		st.SetMergeFunc(cfg.Kind.Name()+"/", m.MergeFunc())
	}
	st.SetValidateFunc(cfg.Kind.Name()+"/", dav.ValidateFunc(cfg.Kind, cfg.MaxObjectSize))
	ropts := replica.Options{Logger: log, Stdout: stdout, Dial: h.Network.DialContext, Tunnel: signpost.NewReplicaTunnel(*data, h.Network.DialContext)}
	if *httpsAddr != "" {
		tcfg, fp, err := svc.TLSConfig(ctx, st, svc.TLSOptions{CertFile: *cert, KeyFile: *key, Hostnames: splitList(*hosts)}, log)
		if err != nil {
			return err
		}
		cfg.TLS = tcfg
		fmt.Fprintf(stdout, "nymote: %s tls certificate sha256 %s\n", a.Name, fp)
	}
	for _, l := range []struct{ proto, addr string }{{"http", *httpAddr}, {"https", *httpsAddr}} {
		if l.addr == "" {
			continue
		}
		ln, err := h.Network.Listen("tcp", l.addr)
		if err != nil {
			return err
		}
		lns = append(lns, dav.Listener{Proto: l.proto, Listener: ln})
	}
	for _, l := range lns {
		fmt.Fprintf(stdout, "nymote: %s %s listening on %s\n", a.Name, l.Proto, l.Addr())
	}
	return serveReplicated(ctx, st, cfg, lns, peers, ropts, a.Name, stdout, log, *data)
}

// addConsole gives cfg the web console and API (apps/internal/console),
// whose logins share the rate limits of DAV's, and which shows the peers
// of eng.
func addConsole(cfg *dav.Config, name string, log *slog.Logger, eng *replica.Engine, dataDir string) {
	if cfg.Auth == nil {
		cfg.Auth = guard.NewAuth(guard.AuthOptions{})
	}
	cfg.Console = console.New(console.Options{Store: cfg.Store, App: name, Auth: cfg.Auth, TLS: cfg.TLS, Logger: log, Peers: eng.Status, SignpostDir: dataDir})
}

// isLoopback reports whether addr's host is a loopback address or
// "localhost".
func isLoopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
