package appliance

import (
	"context"
	"net"
)

// Network is where a service's listeners and outbound connections come
// from: host sockets, or a netstack on a NIC or TAP device.
type Network interface {
	// Listen opens a listener, as net.Listen does.
	Listen(network, address string) (net.Listener, error)
	// DialContext opens a connection, as net.Dialer.DialContext does.
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
	// Resolver resolves names over this network.
	Resolver() *net.Resolver
	// Close releases the network (closing its listeners and connections
	// where it owns them).
	Close() error
}

// hostNetwork is the host's (or the guest kernel's) own IP stack.
type hostNetwork struct{}

var _ Network = hostNetwork{}

func (hostNetwork) Listen(network, address string) (net.Listener, error) {
	return net.Listen(network, address)
}

func (hostNetwork) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

func (hostNetwork) Resolver() *net.Resolver { return net.DefaultResolver }
func (hostNetwork) Close() error            { return nil }
