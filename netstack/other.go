//go:build !linux

package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"
)

// This file lets programs that use the package build on other systems
// (a developer's laptop): links cannot be opened there, so no Stack is
// ever made. The data types and errors are shared with Linux (types.go);
// the Link and Stack methods here mirror the Linux ones
// (TestSameAPIEverywhere checks).

var errUnsupported = fmt.Errorf("netstack: not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Link is an open network link; it cannot be opened on this system.
type Link struct{}

// Kind returns the kind of the link.
func (*Link) Kind() LinkKind { return "" }

// Name returns the name of the interface.
func (*Link) Name() string { return "" }

// MAC returns the hardware address the netstack uses on the link.
func (*Link) MAC() net.HardwareAddr { return nil }

// MTU returns the link's MTU.
func (*Link) MTU() int { return 0 }

// Close closes the link.
func (*Link) Close() error { return nil }

// OpenLink fails: links are Linux only.
func OpenLink(spec string) (*Link, error) {
	if _, err := ParseSpec(spec); err != nil {
		return nil, err
	}
	return nil, errUnsupported
}

// OpenPacket fails: links are Linux only.
func OpenPacket(string) (*Link, error) { return nil, errUnsupported }

// OpenTAP fails: links are Linux only.
func OpenTAP(string) (*Link, error) { return nil, errUnsupported }

// Stack is a TCP/IP stack; none can be made on this system.
type Stack struct{}

// New fails: the stack is Linux only.
func New(Options) (*Stack, error) { return nil, errUnsupported }

// Close does nothing.
func (*Stack) Close() error { return nil }

// Listen fails.
func (*Stack) Listen(string, string) (net.Listener, error) { return nil, errUnsupported }

// ListenPacket fails.
func (*Stack) ListenPacket(string, string) (net.PacketConn, error) { return nil, errUnsupported }

// Dial fails.
func (*Stack) Dial(string, string) (net.Conn, error) { return nil, errUnsupported }

// DialContext fails.
func (*Stack) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, errUnsupported
}

// Resolver returns a resolver that fails.
func (*Stack) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errUnsupported
	}}
}

// Addrs returns nothing.
func (*Stack) Addrs() []netip.Prefix { return nil }

// MAC returns nothing.
func (*Stack) MAC() net.HardwareAddr { return nil }

// WaitIPv4 fails.
func (*Stack) WaitIPv4(context.Context) (netip.Prefix, error) { return netip.Prefix{}, errUnsupported }

// Lease reports no lease.
func (*Stack) Lease() (Lease, bool) { return Lease{}, false }

// DNSServers returns nothing.
func (*Stack) DNSServers() []netip.Addr { return nil }

// Ping fails.
func (*Stack) Ping(context.Context, netip.Addr) (time.Duration, error) { return 0, errUnsupported }

// Stats returns zeros.
func (*Stack) Stats() Stats { return Stats{} }

// Tunnel is a stack's tunnel interface; none can be made on this system.
type Tunnel struct{}

// AddTunnel fails.
func (*Stack) AddTunnel(string, int, []netip.Addr, []netip.Prefix) (*Tunnel, error) {
	return nil, errUnsupported
}

// AddRoute fails.
func (*Tunnel) AddRoute(netip.Prefix) error { return errUnsupported }

// MTU returns 0.
func (*Tunnel) MTU() int { return 0 }

// ReadPacket fails.
func (*Tunnel) ReadPacket(context.Context, []byte) (int, error) { return 0, errUnsupported }

// WritePacket fails.
func (*Tunnel) WritePacket([]byte) error { return errUnsupported }

// Close does nothing.
func (*Tunnel) Close() error { return nil }
