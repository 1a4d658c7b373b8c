//go:build nymote_netstack

// This file needs package netstack, which is being built on its own
// branch: until it is merged, it is left out of builds (build tag
// nymote_netstack) and netstack_none.go stands in. Once netstack is on
// main, delete netstack_none.go and this build constraint.

package appliance

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/nymote/nymote/netstack"
)

// NetstackBuiltIn says whether this build has the gVisor netstack (the
// default network of an appliance).
const NetstackBuiltIn = true

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
