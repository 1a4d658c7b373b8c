//go:build linux

package netstack

import (
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// synGuard sits between the link endpoint and the stack and ends a
// TIME-WAIT connection when a new SYN arrives for the same addresses and
// ports, so that the SYN opens a new connection.
//
// gVisor accepts such a SYN only when its sequence number is beyond the
// old connection's (RFC 1122 4.2.2.13); Linux also when its timestamp is
// newer (RFC 6191). After a large transfer that our side closed first (a
// mail download, an HTTP response), the old connection's receive sequence
// is far ahead of the client's new initial sequence number, and a client
// that reuses its port within TIME-WAIT (60 s) would have its SYNs
// dropped until TIME-WAIT ends: a stalled connect, seen in
// bench/netstack as dials timing out. The protection TIME-WAIT gives
// against a delayed segment of the old connection is kept for everything
// but a SYN.
//
// It is also where Close stops inbound packets before it tears the stack
// down (see shutdown).
type synGuard struct {
	nested.Endpoint
	st *Stack

	mu     sync.RWMutex // held for reading while a packet is delivered
	closed bool
}

// shutdown makes the guard drop every inbound packet from now on, and
// waits for the packet being delivered, if any.
//
// gVisor's Stack.Destroy holds the stack's lock while it waits for the
// link's reader goroutine to stop, and that goroutine, delivering an IPv4
// packet, may be waiting for the same lock: a deadlock whenever a packet
// arrives during Close. With the guard shut first, the reader never
// enters the stack again.
func (g *synGuard) shutdown() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

var _ stack.NetworkDispatcher = (*synGuard)(nil)
var _ stack.LinkEndpoint = (*synGuard)(nil)

func newSynGuard(st *Stack, child stack.LinkEndpoint) *synGuard {
	g := &synGuard{st: st}
	g.Endpoint.Init(child, g)
	return g
}

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (g *synGuard) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return
	}
	if id, ok := synID(proto, pkt); ok {
		ep := g.st.s.FindTransportEndpoint(proto, tcp.ProtocolNumber, id, nicID)
		if tep, ok := ep.(*tcp.Endpoint); ok && tcp.EndpointState(tep.State()) == tcp.StateTimeWait {
			// Abort unregisters the endpoint before it returns. The
			// RST it sends carries the old connection's numbers, which
			// the client, in SYN-SENT, discards.
			tep.Abort()
		}
	}
	g.Endpoint.DeliverNetworkPacket(proto, pkt)
}

// DeliverLinkPacket implements stack.NetworkDispatcher.
func (g *synGuard) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return
	}
	g.Endpoint.DeliverLinkPacket(proto, pkt)
}

// synID returns the connection a TCP segment with SYN set and ACK and RST
// clear would open, as seen from our side.
func synID(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) (stack.TransportEndpointID, bool) {
	var (
		src, dst tcpip.Address
		hlen     int
	)
	switch proto {
	case header.IPv4ProtocolNumber:
		b, ok := pkt.Data().PullUp(header.IPv4MinimumSize)
		if !ok {
			return stack.TransportEndpointID{}, false
		}
		h := header.IPv4(b)
		if h.Protocol() != uint8(tcp.ProtocolNumber) || h.FragmentOffset() != 0 || h.More() {
			return stack.TransportEndpointID{}, false
		}
		hlen = int(h.HeaderLength())
		src, dst = h.SourceAddress(), h.DestinationAddress()
	case header.IPv6ProtocolNumber:
		b, ok := pkt.Data().PullUp(header.IPv6MinimumSize)
		if !ok {
			return stack.TransportEndpointID{}, false
		}
		h := header.IPv6(b)
		// A SYN behind extension headers is left to gVisor alone.
		if h.NextHeader() != uint8(tcp.ProtocolNumber) {
			return stack.TransportEndpointID{}, false
		}
		hlen = header.IPv6MinimumSize
		src, dst = h.SourceAddress(), h.DestinationAddress()
	default:
		return stack.TransportEndpointID{}, false
	}
	b, ok := pkt.Data().PullUp(hlen + header.TCPMinimumSize)
	if !ok || hlen < header.IPv4MinimumSize {
		return stack.TransportEndpointID{}, false
	}
	t := header.TCP(b[hlen:])
	if f := t.Flags(); !f.Contains(header.TCPFlagSyn) || f.Intersects(header.TCPFlagAck|header.TCPFlagRst) {
		return stack.TransportEndpointID{}, false
	}
	return stack.TransportEndpointID{
		LocalPort:     t.DestinationPort(),
		LocalAddress:  dst,
		RemotePort:    t.SourcePort(),
		RemoteAddress: src,
	}, true
}
