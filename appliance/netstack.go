package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
)

// netstackConfig configures the netstack network.
type netstackConfig struct {
	// link is "packet:IF" or "tap:NAME".
	link string
	// ip and gw are a static address; zero means DHCP.
	ip netip.Prefix
	gw netip.Addr
	// hostname is sent to the DHCP server.
	hostname string
}

// errNoNetstack is returned until the netstack package is wired in.
var errNoNetstack = errors.New("the netstack is not part of this build yet")

// openNetstack opens a gVisor netstack on cfg.link.
func openNetstack(ctx context.Context, cfg netstackConfig, log *slog.Logger) (Network, error) {
	return nil, fmt.Errorf("appliance: --net %s: %w (use --net host, or nymote.net=kernel in an appliance)", cfg.link, errNoNetstack)
}
