package appliance

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nymote/nymote/appliance/app"
)

// Run is what Main does on a host: it runs svc as a host process with
// command line args (without the program name) until ctx is done. An app
// with a host-mode program of its own (svc.Host) gets its flags, and the
// runtime's network flags are taken out of args first:
//
//	--net host|tap:NAME  host sockets (default) or a netstack on a TAP device
//	--ip ADDR/LEN        the netstack's static IPv4 address (default: DHCP)
//	--gw ADDR            the netstack's IPv4 default router
//	--signpost DIR       the Signpost tunnel of the node with data directory
//	                     DIR, on the netstack (see startSignpost)
//
// so that every app can serve on a TAP device (go run ./apps/mail --net
// tap:tap0 --ip 192.0.2.10/24 --imap :143 ...). Without svc.Host, Run is
// RunHost.
func Run(ctx context.Context, svc Service, args []string, stdout, stderr io.Writer) error {
	if svc.Host == nil {
		return RunHost(ctx, svc, args, stdout, stderr)
	}
	rest, nf, err := takeNetFlags(args)
	if err != nil {
		return err
	}
	var nc netstackConfig
	if nf.ip != "" {
		if nc.ip, err = netip.ParsePrefix(nf.ip); err != nil || !nc.ip.Addr().Is4() {
			return fmt.Errorf("--ip %q: want an IPv4 address with its prefix length, such as 192.0.2.10/24", nf.ip)
		}
	}
	if nf.gw != "" {
		if nc.gw, err = netip.ParseAddr(nf.gw); err != nil {
			return fmt.Errorf("--gw %q: %v", nf.gw, err)
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	nw, addr, err := openHostNetwork(ctx, nf.net, nc, log)
	if err != nil {
		return err
	}
	defer nw.Close()
	if nf.net != "" && nf.net != "host" {
		log.Info("serving on a netstack", "net", nf.net, "addr", addr)
	}
	if nf.signpost != "" {
		sp, err := startSignpost(nw, nf.signpost, map[string]string{signpostOption: "on"}, log)
		if err != nil {
			return err
		}
		defer sp.Close()
	}
	err = svc.Host(ctx, &HostEnv{Args: rest, Stdout: stdout, Stderr: stderr, Network: nw, Addr: addr})
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, netFlagsUsage)
	}
	return err
}

// netFlagsUsage follows an app's own usage message.
const netFlagsUsage = `The runtime's network flags, before or among the app's own:
  -net host|tap:NAME
    	host sockets (default), or a netstack on TAP device NAME
  -ip ADDR/LEN
    	with -net tap:NAME: the netstack's static IPv4 address (default: DHCP)
  -gw ADDR
    	with -net tap:NAME: the netstack's IPv4 default router
  -signpost DIR
    	with -net tap:NAME: run the Signpost tunnel of the node whose data
    	directory is DIR (the app's own --data); listen on :PORT to serve on it
`

// netFlags are the runtime's network flags of a host process.
type netFlags struct{ net, ip, gw, signpost string }

// takeNetFlags takes --net, --ip, --gw and --signpost (or -net, --net=VALUE, ...) out
// of args, up to a "--" that ends the flags, and returns the rest.
func takeNetFlags(args []string) (rest []string, nf netFlags, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(rest, args[i:]...), nf, nil
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		var dst *string
		switch {
		case !strings.HasPrefix(a, "-"):
		case name == "net":
			dst = &nf.net
		case name == "ip":
			dst = &nf.ip
		case name == "gw":
			dst = &nf.gw
		case name == "signpost":
			dst = &nf.signpost
		}
		if dst == nil {
			rest = append(rest, a)
			continue
		}
		if !hasValue {
			if i+1 == len(args) {
				return nil, nf, fmt.Errorf("flag needs an argument: -%s", name)
			}
			i++
			value = args[i]
		}
		*dst = value
	}
	return rest, nf, nil
}

// RunHost runs svc as a host process with command line args (without the
// program name) until ctx is done:
//
//	--data DIR         data directory (required): the store is DIR/store.git
//	--listen HOST      address to listen on (default 127.0.0.1 on host
//	                   sockets, the netstack's address with --net tap:IF)
//	--port-offset N    added to ports under 1024 (default 1000)
//	--port NAME=PORT   listen for NAME on PORT (repeatable)
//	--net host|tap:IF  host sockets (default) or a netstack on a TAP device
//	--ip ADDR/LEN      the netstack's static IPv4 address (default: DHCP)
//	--gw ADDR          the netstack's IPv4 default router
//	--set KEY=VALUE    a service option, as nymote.KEY=VALUE in an appliance
//	--proxy NETWORKS   networks (CIDR[,CIDR]) of a proxy, such as jitsu, whose
//	                   connections start with a PROXY protocol header giving
//	                   the client's address (default: $NYMOTE_PROXY, which
//	                   jitsu's process launcher sets; --set proxy= too)
//	--log-level LEVEL  debug, info, warn or error (default info)
//
// It prints one line per listener to stdout and logs to stderr.
func RunHost(ctx context.Context, svc Service, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet(svc.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data directory holding the store (DIR/store.git; created on first use)")
	host := fs.String("listen", "", "address to listen on (default 127.0.0.1 on host sockets, the netstack's address with --net tap:NAME)")
	ipFlag := fs.String("ip", "", "with --net tap:NAME: the netstack's static IPv4 address, such as 192.0.2.10/24 (default: DHCP)")
	gwFlag := fs.String("gw", "", "with --net tap:NAME: the netstack's IPv4 default router")
	offset := fs.Int("port-offset", app.HostPortOffset, "added to ports under 1024")
	netSpec := fs.String("net", "host", "network: host (host sockets) or tap:NAME (a netstack on a TAP device)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	proxyFlag := fs.String("proxy", os.Getenv("NYMOTE_PROXY"), "networks (CIDR[,CIDR]) of a proxy whose connections start with a PROXY protocol header (default $NYMOTE_PROXY)")
	ports := map[string]int{}
	fs.Func("port", "NAME=PORT: listen for NAME on PORT (repeatable)", func(s string) error {
		name, v, ok := strings.Cut(s, "=")
		p, err := strconv.Atoi(v)
		if !ok || err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("want NAME=PORT, got %q", s)
		}
		ports[name] = p
		return nil
	})
	config := map[string]string{}
	fs.Func("set", "KEY=VALUE: a service option (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", s)
		}
		config[k] = v
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if v, ok := config["proxy"]; ok { // a runtime option, as nymote.proxy is
		*proxyFlag = v
		delete(config, "proxy")
	}
	proxy, err := ParseProxyNetworks(*proxyFlag)
	if err != nil {
		return fmt.Errorf("--proxy: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *data == "" {
		return errors.New("no data directory given (--data DIR)")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	for name := range ports {
		if !hasPort(svc, name) {
			return fmt.Errorf("--port %s: %s has no port called %q", name, svc.Name, name)
		}
	}
	var nc netstackConfig
	if *ipFlag != "" {
		if nc.ip, err = netip.ParsePrefix(*ipFlag); err != nil || !nc.ip.Addr().Is4() {
			return fmt.Errorf("--ip %q: want an IPv4 address with its prefix length, such as 192.0.2.10/24", *ipFlag)
		}
	}
	if *gwFlag != "" {
		if nc.gw, err = netip.ParseAddr(*gwFlag); err != nil {
			return fmt.Errorf("--gw %q: %v", *gwFlag, err)
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	// The data format, as in an appliance (no test boots on a host: the
	// data is migrated at once; an older program than its data refuses).
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return err
	}
	if _, err := checkDataFormat(ctx, *data, svc, false, func(format string, args ...any) {
		log.Info(fmt.Sprintf(format, args...))
	}); err != nil {
		return fmt.Errorf("%s: %w", svc.Name, err)
	}
	nw, addr, err := openHostNetwork(ctx, *netSpec, nc, log)
	if err != nil {
		return err
	}
	defer nw.Close()
	sp, err := startSignpost(nw, *data, config, log)
	if err != nil {
		return err
	}
	if sp != nil {
		defer sp.Close()
	}
	if *host == "" && sp == nil {
		*host = addr.String()
	} // with a tunnel: every address of the netstack, the tunnel's too
	ls, err := openListeners(nw, svc, func(p app.Port) string {
		port, ok := ports[p.Name]
		if !ok {
			port = app.HostPort(p.Port, *offset)
		}
		return net.JoinHostPort(*host, strconv.Itoa(port))
	}, proxy, log)
	if err != nil {
		return err
	}
	if len(proxy) > 0 {
		log.Info("reading a PROXY header on connections from a proxy", "networks", joinPrefixes(proxy))
	}
	console := announce(stdout, svc, ls)
	env := &Env{
		DataDir: *data, Listeners: ls, Config: config, Log: log, Console: console,
		Dial: nw.DialContext, Resolver: nw.Resolver(),
	}
	if err := serve(ctx, svc, env); err != nil {
		return fmt.Errorf("%s: %w", svc.Name, err)
	}
	return nil
}

func hasPort(svc Service, name string) bool {
	for _, p := range svc.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

// openHostNetwork opens the network a host process serves on and returns
// the address to listen on by default.
func openHostNetwork(ctx context.Context, spec string, nc netstackConfig, log *slog.Logger) (Network, netip.Addr, error) {
	if spec == "host" || spec == "" {
		if nc.ip.IsValid() || nc.gw.IsValid() {
			return nil, netip.Addr{}, errors.New("--ip and --gw configure a netstack: use them with --net tap:NAME")
		}
		return hostNetwork{}, netip.MustParseAddr("127.0.0.1"), nil
	}
	nc.link = spec
	nw, err := openNetstack(ctx, nc, log)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	return nw, waitAddr(ctx, nw, 30*time.Second), nil
}

// waitAddr waits up to d for the network's IPv4 address (DHCP) and returns
// it, or the unspecified address when the network cannot say or has none
// yet.
func waitAddr(ctx context.Context, nw Network, d time.Duration) netip.Addr {
	a, ok := nw.(interface {
		WaitIPv4(context.Context) (netip.Prefix, error)
	})
	if !ok {
		return netip.IPv4Unspecified()
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	p, err := a.WaitIPv4(ctx)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return p.Addr()
}
