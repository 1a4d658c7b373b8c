//go:build linux

package netstack

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Ping sends one ICMP or ICMPv6 echo request to addr and waits for the
// reply until ctx ends. It returns the round-trip time.
func (st *Stack) Ping(ctx context.Context, addr netip.Addr) (time.Duration, error) {
	addr = addr.Unmap()
	var (
		transport tcpip.TransportProtocolNumber
		proto     tcpip.NetworkProtocolNumber
		hdr       []byte
	)
	if addr.Is4() {
		transport, proto = icmp.ProtocolNumber4, ipv4.ProtocolNumber
		h := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize))
		h.SetType(header.ICMPv4Echo)
		hdr = h
	} else {
		transport, proto = icmp.ProtocolNumber6, ipv6.ProtocolNumber
		h := header.ICMPv6(make([]byte, header.ICMPv6EchoMinimumSize))
		h.SetType(header.ICMPv6EchoRequest)
		hdr = h
	}
	var wq waiter.Queue
	ep, terr := st.s.NewEndpoint(transport, proto, &wq)
	if terr != nil {
		return 0, fmt.Errorf("netstack: ping %s: %s", addr, terr)
	}
	defer ep.Close()
	entry, notify := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)

	payload := []byte(fmt.Sprintf("nymote ping %d", time.Now().UnixNano()))
	msg := append(hdr, payload...)
	start := time.Now()
	var r bytes.Reader
	r.Reset(msg)
	if _, terr := ep.Write(&r, tcpip.WriteOptions{To: &tcpip.FullAddress{Addr: toAddr(addr), NIC: nicIDFor(addr)}}); terr != nil {
		return 0, fmt.Errorf("netstack: ping %s: %w", addr, toError(terr))
	}
	buf := make([]byte, 1500)
	for {
		w := tcpip.SliceWriter(buf)
		res, terr := ep.Read(&w, tcpip.ReadOptions{})
		if terr == nil {
			reply := buf[:res.Count]
			// The endpoint delivers only echo replies matching its
			// identifier; check the payload in case of stale replies.
			if len(reply) >= len(hdr) && bytes.Equal(reply[len(hdr):], payload) {
				return time.Since(start), nil
			}
			continue
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return 0, fmt.Errorf("netstack: ping %s: %w", addr, toError(terr))
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return 0, fmt.Errorf("netstack: ping %s: %w", addr, ctx.Err())
		case <-st.ctx.Done():
			return 0, fmt.Errorf("netstack: ping %s: %w", addr, ErrClosed)
		}
	}
}

// nicIDFor returns the NIC to send to addr through: link-local and
// multicast destinations need the NIC named, as a zone would on a host.
func nicIDFor(addr netip.Addr) tcpip.NICID {
	if addr.IsLinkLocalUnicast() || addr.IsMulticast() {
		return nicID
	}
	return 0
}
