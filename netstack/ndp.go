//go:build linux

package netstack

import (
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ndpDispatcher receives the IPv6 neighbour discovery events of a Stack:
// gVisor learns routers, prefixes and DNS servers from router
// advertisements but leaves the route table and DNS configuration to its
// user.
type ndpDispatcher Stack

var _ ipv6.NDPDispatcher = (*ndpDispatcher)(nil)

func (d *ndpDispatcher) st() *Stack { return (*Stack)(d) }

// OnDuplicateAddressDetectionResult implements ipv6.NDPDispatcher.
func (d *ndpDispatcher) OnDuplicateAddressDetectionResult(_ tcpip.NICID, addr tcpip.Address, res stack.DADResult) {
	switch res.(type) {
	case *stack.DADSucceeded:
		d.log.Debug("IPv6 address ready", "addr", addr.String())
		d.st().notifyChanged()
	default:
		d.log.Warn("IPv6 duplicate address detection failed", "addr", addr.String(), "result", res)
	}
}

// The route callbacks may not call into the stack (they run under its
// locks), so they queue the change for the Stack's task goroutine.

// OnOffLinkRouteUpdated implements ipv6.NDPDispatcher: a router (default
// or more specific) was learned or refreshed.
func (d *ndpDispatcher) OnOffLinkRouteUpdated(nic tcpip.NICID, dest tcpip.Subnet, router tcpip.Address, _ header.NDPRoutePreference) {
	d.st().tasks.push(func() {
		if d.st().replaceRoute(tcpip.Route{Destination: dest, Gateway: router, NIC: nic}) {
			d.log.Info("IPv6 route learned", "dest", dest.String(), "router", router.String())
		}
	})
}

// OnOffLinkRouteInvalidated implements ipv6.NDPDispatcher.
func (d *ndpDispatcher) OnOffLinkRouteInvalidated(nic tcpip.NICID, dest tcpip.Subnet, router tcpip.Address) {
	d.st().tasks.push(func() {
		r := tcpip.Route{Destination: dest, Gateway: router, NIC: nic}
		d.s.RemoveRoutes(func(x tcpip.Route) bool { return x == r })
		d.log.Info("IPv6 route expired", "dest", dest.String(), "router", router.String())
	})
}

// OnOnLinkPrefixDiscovered implements ipv6.NDPDispatcher.
func (d *ndpDispatcher) OnOnLinkPrefixDiscovered(nic tcpip.NICID, prefix tcpip.Subnet) {
	d.st().tasks.push(func() {
		d.st().replaceRoute(tcpip.Route{Destination: prefix, NIC: nic})
	})
}

// OnOnLinkPrefixInvalidated implements ipv6.NDPDispatcher.
func (d *ndpDispatcher) OnOnLinkPrefixInvalidated(nic tcpip.NICID, prefix tcpip.Subnet) {
	d.st().tasks.push(func() {
		r := tcpip.Route{Destination: prefix, NIC: nic}
		d.s.RemoveRoutes(func(x tcpip.Route) bool { return x == r })
	})
}

// OnDHCPv6Configuration implements ipv6.NDPDispatcher. There is no DHCPv6
// client: SLAAC and static addresses cover appliances.
func (d *ndpDispatcher) OnDHCPv6Configuration(_ tcpip.NICID, c ipv6.DHCPv6ConfigurationFromNDPRA) {
	d.log.Debug("router advertises DHCPv6; not supported", "config", c)
}

// OnAutoGenAddress implements ipv6.NDPDispatcher.
func (d *ndpDispatcher) OnAutoGenAddress(_ tcpip.NICID, addr tcpip.AddressWithPrefix) stack.AddressDispatcher {
	d.log.Info("IPv6 address configured", "addr", addr.String())
	d.st().notifyChanged()
	return nil
}

// OnAutoGenAddressDeprecated implements ipv6.NDPDispatcher.
func (d *ndpDispatcher) OnAutoGenAddressDeprecated(_ tcpip.NICID, addr tcpip.AddressWithPrefix) {
	d.log.Info("IPv6 address deprecated", "addr", addr.String())
}

// OnAutoGenAddressInvalidated implements ipv6.NDPDispatcher.
func (d *ndpDispatcher) OnAutoGenAddressInvalidated(_ tcpip.NICID, addr tcpip.AddressWithPrefix) {
	d.log.Info("IPv6 address removed", "addr", addr.String())
	d.st().notifyChanged()
}

// OnRecursiveDNSServerOption implements ipv6.NDPDispatcher: DNS servers
// from a router advertisement (RFC 8106). A zero lifetime withdraws them.
func (d *ndpDispatcher) OnRecursiveDNSServerOption(_ tcpip.NICID, addrs []tcpip.Address, lifetime time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range addrs {
		ip := fromAddr(a)
		i := indexAddr(d.ndpDNS, ip)
		switch {
		case lifetime == 0 && i >= 0:
			d.ndpDNS = append(d.ndpDNS[:i], d.ndpDNS[i+1:]...)
		case lifetime > 0 && i < 0:
			d.ndpDNS = append(d.ndpDNS, ip)
		}
	}
}

// OnDNSSearchListOption implements ipv6.NDPDispatcher. Search lists are
// not used: appliances look up fully qualified names.
func (d *ndpDispatcher) OnDNSSearchListOption(tcpip.NICID, []string, time.Duration) {}

func indexAddr(list []netip.Addr, a netip.Addr) int {
	for i, x := range list {
		if x == a {
			return i
		}
	}
	return -1
}
