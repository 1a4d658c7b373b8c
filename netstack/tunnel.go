//go:build linux

package netstack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tunnelNICID is the NIC of a Stack's tunnel (AddTunnel).
const tunnelNICID tcpip.NICID = 2

// Tunnel is a Stack's second interface: a point-to-point link that carries
// bare IP packets (no Ethernet header) to and from a program in the same
// process, such as a WireGuard device. Packets the stack sends to the
// tunnel's routes are read with ReadPacket; packets written with
// WritePacket arrive at the stack as if from a wire. Listeners on the
// unspecified address (":143") accept connections on the tunnel too.
type Tunnel struct {
	st  *Stack
	ep  *channel.Endpoint
	mtu int

	mu     sync.Mutex
	routes []netip.Prefix
	closed bool
}

// AddTunnel adds a tunnel interface to the stack with the addresses addrs
// (one IPv4 and one IPv6, typically) and routes to routes through it (the
// tunnel's networks). A stack has at most one tunnel; Close removes it.
// mtu is the largest IP packet the tunnel carries (1420 for WireGuard over
// a 1500-byte link).
func (st *Stack) AddTunnel(name string, mtu int, addrs []netip.Addr, routes []netip.Prefix) (*Tunnel, error) {
	if mtu < 1280 || mtu > 65535 {
		return nil, fmt.Errorf("netstack: tunnel %s: MTU %d out of range (1280 to 65535)", name, mtu)
	}
	if st.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if st.tunnel.Load() != nil {
		return nil, fmt.Errorf("netstack: tunnel %s: the stack has a tunnel already", name)
	}
	ep := channel.New(512, uint32(mtu), "")
	if terr := st.s.CreateNICWithOptions(tunnelNICID, ep, stack.NICOptions{Name: name}); terr != nil {
		return nil, fmt.Errorf("netstack: tunnel %s: create NIC: %s", name, terr)
	}
	t := &Tunnel{st: st, ep: ep, mtu: mtu}
	if !st.tunnel.CompareAndSwap(nil, t) {
		st.s.RemoveNIC(tunnelNICID)
		return nil, fmt.Errorf("netstack: tunnel %s: the stack has a tunnel already", name)
	}
	for _, a := range addrs {
		proto := ipv4.ProtocolNumber
		bits := 32
		if a.Is6() {
			proto, bits = ipv6.ProtocolNumber, 128
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{Address: toAddr(a), PrefixLen: bits}}
		if terr := st.s.AddProtocolAddress(tunnelNICID, pa, stack.AddressProperties{}); terr != nil {
			t.Close()
			return nil, fmt.Errorf("netstack: tunnel %s: add address %s: %s", name, a, terr)
		}
	}
	for _, r := range routes {
		if err := t.AddRoute(r); err != nil {
			t.Close()
			return nil, err
		}
	}
	st.log.Info("tunnel up", "tunnel", name, "mtu", mtu, "addrs", fmt.Sprint(addrs), "routes", fmt.Sprint(routes))
	st.notifyChanged()
	return t, nil
}

// AddRoute routes the network p through the tunnel.
func (t *Tunnel) AddRoute(p netip.Prefix) error {
	if !p.IsValid() {
		return errors.New("netstack: tunnel route: invalid prefix")
	}
	p = p.Masked()
	r := tcpip.Route{Destination: tcpip.AddressWithPrefix{Address: toAddr(p.Addr()), PrefixLen: p.Bits()}.Subnet(), NIC: tunnelNICID}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	t.st.replaceRoute(r)
	t.routes = append(t.routes, p)
	return nil
}

// MTU returns the tunnel's MTU.
func (t *Tunnel) MTU() int { return t.mtu }

// ReadPacket waits for the next IP packet the stack sends into the tunnel
// and copies it into b, returning its length. It returns ErrClosed once the
// tunnel or the stack is closed, and ctx's error when ctx ends. A packet
// longer than b is dropped with an error.
func (t *Tunnel) ReadPacket(ctx context.Context, b []byte) (int, error) {
	pkt := t.ep.ReadContext(ctx)
	if pkt == nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, ErrClosed
	}
	defer pkt.DecRef()
	n := 0
	for _, s := range pkt.AsSlices() {
		if n+len(s) > len(b) {
			return 0, fmt.Errorf("netstack: tunnel packet of %d bytes longer than the buffer (%d)", pkt.Size(), len(b))
		}
		n += copy(b[n:], s)
	}
	return n, nil
}

// WritePacket hands the IP packet b to the stack as received on the
// tunnel. Packets that are neither IPv4 nor IPv6 are dropped with an
// error.
func (t *Tunnel) WritePacket(b []byte) error {
	if len(b) == 0 {
		return errors.New("netstack: tunnel: empty packet")
	}
	var proto tcpip.NetworkProtocolNumber
	switch header.IPVersion(b) {
	case header.IPv4Version:
		proto = header.IPv4ProtocolNumber
	case header.IPv6Version:
		proto = header.IPv6ProtocolNumber
	default:
		return fmt.Errorf("netstack: tunnel: packet of IP version %d dropped", header.IPVersion(b))
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	t.ep.InjectInbound(proto, pkt)
	pkt.DecRef()
	return nil
}

// Close removes the tunnel's interface, its addresses and routes from the
// stack; ReadPacket returns ErrClosed.
func (t *Tunnel) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.st.s.RemoveRoutes(func(r tcpip.Route) bool { return r.NIC == tunnelNICID })
	t.ep.Close()
	if terr := t.st.s.RemoveNIC(tunnelNICID); terr != nil {
		return fmt.Errorf("netstack: remove tunnel: %s", terr)
	}
	t.st.tunnel.CompareAndSwap(t, nil)
	t.st.notifyChanged()
	return nil
}
