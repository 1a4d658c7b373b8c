//go:build linux

package netstack

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	dhcpClientPort = 68
	dhcpServerPort = 67
	// The first retransmission timeout, doubled up to dhcpMaxBackoff
	// (RFC 2131 section 4.1 suggests 4 s; a quicker first retry shortens
	// boot when the first DISCOVER is lost while a switch port comes up).
	dhcpFirstBackoff = 2 * time.Second
	dhcpMaxBackoff   = 32 * time.Second
	// Default timers when the server gives no lease time.
	dhcpDefaultLease = time.Hour
)

// dhcpClient is an RFC 2131 DHCPv4 client speaking through the stack
// itself over a UDP endpoint bound to port 68.
//
// Until it has a lease, the NIC carries the address 0.0.0.0/0: it lets
// gVisor send from 0.0.0.0 to 255.255.255.255 and, its subnet's broadcast
// address being 255.255.255.255, accept the broadcast replies. The client
// sets the broadcast flag, so servers broadcast their replies instead of
// unicasting them to an address the stack does not have yet.
type dhcpClient struct {
	st   *Stack
	log  *slog.Logger
	mac  net.HardwareAddr
	conn *gonet.UDPConn
	rx   chan *dhcpv4.DHCPv4
	wg   sync.WaitGroup

	anyAdded bool
	ack      *dhcpv4.DHCPv4 // the ACK of the current lease
	lease    *Lease
}

func newDHCPClient(st *Stack) (*dhcpClient, error) {
	var wq waiter.Queue
	ep, terr := st.s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return nil, fmt.Errorf("netstack: dhcp: %s", terr)
	}
	ep.SocketOptions().SetBroadcast(true)
	if terr := ep.Bind(tcpip.FullAddress{NIC: nicID, Port: dhcpClientPort}); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack: dhcp: bind port %d: %s", dhcpClientPort, terr)
	}
	return &dhcpClient{
		st:   st,
		log:  st.log.With("proto", "dhcp"),
		mac:  st.link.MAC(),
		conn: gonet.NewUDPConn(&wq, ep),
		rx:   make(chan *dhcpv4.DHCPv4, 16),
	}, nil
}

// run obtains and keeps a lease until ctx ends, then releases it.
func (c *dhcpClient) run(ctx context.Context) {
	c.wg.Add(1)
	go c.receive()
	defer func() {
		c.conn.Close()
		c.wg.Wait()
	}()
	for ctx.Err() == nil {
		ack, ok := c.acquire(ctx)
		if !ok {
			break
		}
		if !c.bind(ack) {
			sleep(ctx, dhcpFirstBackoff) // a broken server: do not spin
			continue
		}
		c.keep(ctx)
	}
	if c.lease != nil {
		c.release()
	}
	c.removeAny()
}

// receive reads DHCP replies for our MAC address and queues them.
func (c *dhcpClient) receive() {
	defer c.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			c.log.Debug("bad DHCP message", "err", err)
			continue
		}
		if m.OpCode != dhcpv4.OpcodeBootReply || !bytes.Equal(m.ClientHWAddr, c.mac) {
			continue
		}
		select {
		case c.rx <- m:
		default: // a flood; the retransmission timers cope
		}
	}
}

func (c *dhcpClient) addAny() {
	if c.anyAdded {
		return
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: header.IPv4Any, PrefixLen: 0},
	}
	if terr := c.st.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
		c.log.Error("add 0.0.0.0", "err", terr.String())
		return
	}
	c.anyAdded = true
}

func (c *dhcpClient) removeAny() {
	if !c.anyAdded {
		return
	}
	c.st.s.RemoveAddress(nicID, header.IPv4Any)
	c.anyAdded = false
}

func (c *dhcpClient) modifiers() []dhcpv4.Modifier {
	m := []dhcpv4.Modifier{
		dhcpv4.WithRequestedOptions(
			dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue,
		),
	}
	if h := c.st.opts.Hostname; h != "" {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptHostName(h)))
	}
	return m
}

// send sends m to dst (255.255.255.255 or the server).
func (c *dhcpClient) send(m *dhcpv4.DHCPv4, dst netip.Addr) error {
	_, err := c.conn.WriteTo(m.ToBytes(), &net.UDPAddr{IP: dst.AsSlice(), Port: dhcpServerPort})
	return err
}

var broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// exchange sends m to dst and waits until timeout for a reply with m's
// transaction ID and one of the wanted types. It returns nil on timeout
// or when ctx ends.
func (c *dhcpClient) exchange(ctx context.Context, m *dhcpv4.DHCPv4, dst netip.Addr, timeout time.Duration, want ...dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	if err := c.send(m, dst); err != nil {
		c.log.Warn("send", "type", m.MessageType().String(), "to", dst.String(), "err", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			return nil
		case r := <-c.rx:
			if r.TransactionID != m.TransactionID {
				continue
			}
			for _, w := range want {
				if r.MessageType() == w {
					return r
				}
			}
		}
	}
}

// acquire runs DISCOVER/OFFER/REQUEST/ACK until it gets an ACK. It
// returns false when ctx ends.
func (c *dhcpClient) acquire(ctx context.Context) (*dhcpv4.DHCPv4, bool) {
	c.addAny()
	backoff := dhcpFirstBackoff
	next := func() time.Duration {
		d := backoff + rand.N(time.Second) - time.Second/2 // RFC 2131 4.1: ±1 s of jitter
		backoff = min(2*backoff, dhcpMaxBackoff)
		return d
	}
	for ctx.Err() == nil {
		disc, err := dhcpv4.NewDiscovery(c.mac, append(c.modifiers(), dhcpv4.WithBroadcast(true))...)
		if err != nil {
			c.log.Error("build DISCOVER", "err", err)
			return nil, false
		}
		offer := c.exchange(ctx, disc, broadcast, next(), dhcpv4.MessageTypeOffer)
		if offer == nil {
			continue
		}
		req, err := dhcpv4.NewRequestFromOffer(offer, append(c.modifiers(), dhcpv4.WithBroadcast(true))...)
		if err != nil {
			c.log.Warn("build REQUEST", "err", err)
			continue
		}
		for range 3 {
			r := c.exchange(ctx, req, broadcast, next(), dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
			if r == nil {
				continue
			}
			if r.MessageType() == dhcpv4.MessageTypeNak {
				c.log.Info("server declined request", "server", r.ServerIdentifier(), "msg", r.Message())
				break
			}
			return r, true
		}
	}
	return nil, false
}

// leaseFrom builds a Lease from an ACK received at obtained.
func leaseFrom(ack *dhcpv4.DHCPv4, obtained time.Time) *Lease {
	ip, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	bits := 24
	if mask := ack.SubnetMask(); mask != nil {
		bits, _ = mask.Size()
	} else if ip.IsValid() {
		bits = classfulBits(ip)
	}
	l := &Lease{Addr: netip.PrefixFrom(ip, bits), Obtained: obtained}
	if routers := ack.Router(); len(routers) > 0 {
		l.Router, _ = netip.AddrFromSlice(routers[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	if sid := ack.ServerIdentifier(); sid != nil {
		l.Server, _ = netip.AddrFromSlice(sid.To4())
	}
	lease := ack.IPAddressLeaseTime(dhcpDefaultLease)
	t1 := ack.IPAddressRenewalTime(lease / 2)
	t2 := ack.IPAddressRebindingTime(lease * 7 / 8)
	if t2 > lease || t2 <= 0 {
		t2 = lease * 7 / 8
	}
	if t1 > t2 || t1 <= 0 {
		t1 = t2 * 4 / 7 // lease/2 when t2 is the default
	}
	l.Renew, l.Rebind, l.Expiry = obtained.Add(t1), obtained.Add(t2), obtained.Add(lease)
	return l
}

func classfulBits(ip netip.Addr) int {
	switch b := ip.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	}
	return 24
}

// bind configures the address and routes of a new lease. It reports
// whether it could.
func (c *dhcpClient) bind(ack *dhcpv4.DHCPv4) bool {
	l := leaseFrom(ack, time.Now())
	if a := l.Addr.Addr(); !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a == broadcast {
		c.log.Warn("ACK without a usable address; ignored", "addr", l.Addr.String(), "server", l.Server.String())
		return false
	}
	if err := c.st.addAddress(l.Addr); err != nil {
		c.log.Error("configure lease", "err", err)
		return false
	}
	if l.Router.IsValid() {
		c.st.s.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, Gateway: toAddr(l.Router), NIC: nicID})
	}
	c.removeAny()
	c.ack, c.lease = ack, l
	c.st.setLease(ptr(*l))
	c.log.Info("lease obtained", "addr", l.Addr.String(), "router", l.Router.String(), "dns", fmt.Sprint(l.DNS),
		"server", l.Server.String(), "renew_in", time.Until(l.Renew).Round(time.Second).String(),
		"expires_in", time.Until(l.Expiry).Round(time.Second).String())
	return true
}

// unbind removes the current lease's address and routes.
func (c *dhcpClient) unbind() {
	l := c.lease
	if l == nil {
		return
	}
	if l.Router.IsValid() {
		gw := toAddr(l.Router)
		c.st.s.RemoveRoutes(func(r tcpip.Route) bool { return r.Destination == header.IPv4EmptySubnet && r.Gateway == gw })
	}
	c.st.setLease(nil)
	c.st.removeAddress(l.Addr)
	c.ack, c.lease = nil, nil
}

// keep renews and rebinds the lease until ctx ends (it returns with the
// lease held, for run to release) or the lease is lost (it returns with
// no lease).
func (c *dhcpClient) keep(ctx context.Context) {
	for c.lease != nil {
		now := time.Now()
		l := c.lease
		var (
			dst  netip.Addr
			wait time.Duration
		)
		switch {
		case now.Before(l.Renew):
			if !sleep(ctx, l.Renew.Sub(now)) {
				return
			}
			continue
		case now.Before(l.Rebind) && l.Server.IsValid():
			// RENEWING: unicast to our server, retransmitting after
			// half the time left until T2 (RFC 2131 4.4.5), but at
			// least every minute (a server back from a reboot then
			// hears from us soon) and at most every second (the RFC's
			// 60 s minimum exceeds short leases).
			dst, wait = l.Server, retransmitWait(l.Rebind.Sub(now))
		case now.Before(l.Expiry):
			// REBINDING: broadcast to any server, likewise until the
			// lease expires.
			dst, wait = broadcast, retransmitWait(l.Expiry.Sub(now))
		default:
			c.log.Warn("lease expired", "addr", l.Addr.String())
			c.unbind()
			return
		}
		req, err := dhcpv4.New(append(c.modifiers(),
			dhcpv4.WithHwAddr(c.mac),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithClientIP(l.Addr.Addr().AsSlice()),
		)...)
		if err != nil {
			c.log.Error("build renewal", "err", err)
			return
		}
		sent := time.Now()
		r := c.exchange(ctx, req, dst, wait, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
		if ctx.Err() != nil {
			return
		}
		switch {
		case r == nil:
			continue
		case r.MessageType() == dhcpv4.MessageTypeNak:
			c.log.Warn("server declined renewal", "addr", l.Addr.String(), "msg", r.Message())
			c.unbind()
			return
		}
		nl := leaseFrom(r, sent)
		if nl.Addr != l.Addr || nl.Router != l.Router {
			// Not what a renewal should bring: start over cleanly.
			c.log.Warn("renewal changed the lease; reconfiguring", "old", l.Addr.String(), "new", nl.Addr.String())
			c.unbind()
			c.bind(r)
			continue // with no lease if bind failed: back to run
		}
		nl.Renewals = l.Renewals + 1
		c.ack, c.lease = r, nl
		c.st.setLease(ptr(*nl))
		c.log.Info("lease renewed", "addr", nl.Addr.String(), "via", dst.String(),
			"renew_in", time.Until(nl.Renew).Round(time.Second).String())
	}
}

// retransmitWait returns how long to wait for a reply in the RENEWING
// and REBINDING states, left being the time to the state's end.
func retransmitWait(left time.Duration) time.Duration {
	return min(max(left/2, time.Second), time.Minute)
}

// release tells the server we are done with the lease (RFC 2131 4.4.6)
// and removes it.
func (c *dhcpClient) release() {
	l := c.lease
	defer c.unbind()
	if !l.Server.IsValid() {
		return
	}
	rel, err := dhcpv4.NewReleaseFromACK(c.ack)
	if err != nil {
		c.log.Warn("build RELEASE", "err", err)
		return
	}
	// RELEASE is unicast and gets no reply. Resolve the server's link
	// address first, so that the message is on the wire before the
	// stack goes down rather than waiting in the neighbour queue.
	c.resolve(l.Server, l.Addr.Addr(), time.Second)
	if err := c.send(rel, l.Server); err != nil {
		c.log.Warn("send RELEASE", "err", err)
		return
	}
	c.log.Info("lease released", "addr", l.Addr.String(), "server", l.Server.String())
}

// resolve waits up to timeout for the link address of addr.
func (c *dhcpClient) resolve(addr, local netip.Addr, timeout time.Duration) {
	done := make(chan struct{})
	var once sync.Once
	terr := c.st.s.GetLinkAddress(nicID, toAddr(addr), toAddr(local), ipv4.ProtocolNumber, func(stack.LinkResolutionResult) {
		once.Do(func() { close(done) })
	})
	if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
		return // resolved already, or cannot be
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
