package appliance

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/nymote/nymote/netstack"
)

// netstackConfig configures the netstack network.
type netstackConfig struct {
	// link is "packet:IF" or "tap:NAME".
	link string
	// ip and gw are a static address; zero means DHCP.
	ip netip.Prefix
	gw netip.Addr
	// dns are name servers tried before learned ones.
	dns []netip.Addr
	// hostname is sent to the DHCP server.
	hostname string
}

// The netstack is a Network; WaitIPv4 tells the runtime which address to
// print.
var (
	_ Network = (*netstack.Stack)(nil)
	_         = interface {
		WaitIPv4(context.Context) (netip.Prefix, error)
	}((*netstack.Stack)(nil))
)

// openNetstack opens a gVisor netstack on cfg.link: DHCP unless cfg.ip is
// set, and the netstack's appliance defaults otherwise (see
// netstack.Options).
func openNetstack(ctx context.Context, cfg netstackConfig, log *slog.Logger) (Network, error) {
	link, err := netstack.OpenLink(cfg.link)
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	st, err := netstack.New(netstack.Options{
		Link: link, Logger: log, IPv4: cfg.ip, Gateway4: cfg.gw, DNS: cfg.dns, Hostname: cfg.hostname,
	})
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	return st, nil
}
