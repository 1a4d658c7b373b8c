//go:build !nymote_netstack

package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// NetstackBuiltIn says whether this build has the gVisor netstack (the
// default network of an appliance). Without it, appliances need
// nymote.net=kernel.
const NetstackBuiltIn = false

// errNoNetstack is returned until package netstack is merged (see
// netstack_gvisor.go).
var errNoNetstack = errors.New("the netstack is not part of this build yet")

// openNetstack stands in for the netstack until it is merged.
func openNetstack(ctx context.Context, cfg netstackConfig, log *slog.Logger) (Network, error) {
	return nil, fmt.Errorf("appliance: --net %s: %w (use --net host, or nymote.net=kernel in an appliance)", cfg.link, errNoNetstack)
}
