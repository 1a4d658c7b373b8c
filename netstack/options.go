package netstack

import (
	"log/slog"
	"net/netip"
)

// Options configure a Stack. Only Link is required: the zero value of every
// other field gives an appliance's usual set-up (DHCPv4, IPv6 link-local
// and SLAAC, DNS servers from DHCP and router advertisements).
type Options struct {
	// Link is the link the stack runs on (see OpenLink). Required. The
	// Stack takes ownership of it: Close closes it, and so does New when
	// it fails.
	Link *Link

	// Logger receives the stack's log records (DHCP leases, address
	// changes, link errors). Nil discards them.
	Logger *slog.Logger

	// IPv4 is a static IPv4 address with its prefix length, such as
	// 192.0.2.10/24. The zero Prefix means none: then the DHCPv4 client
	// configures IPv4, unless NoDHCP is set.
	IPv4 netip.Prefix
	// Gateway4 is the IPv4 default router for a static IPv4 address.
	// Zero means no IPv4 default route (other than one from DHCP).
	Gateway4 netip.Addr

	// IPv6 are static IPv6 addresses with their prefix lengths, such as
	// 2001:db8::10/64, added to the link-local address that is always
	// configured. Nil means none.
	IPv6 []netip.Prefix
	// Gateway6 is the IPv6 default router. Zero means none other than
	// routers learned from router advertisements.
	Gateway6 netip.Addr

	// NoDHCP turns the DHCPv4 client off even when IPv4 is zero.
	NoDHCP bool
	// NoSLAAC ignores router advertisements: no SLAAC addresses, and no
	// routes or DNS servers learned from them. False (the zero value)
	// handles them.
	NoSLAAC bool

	// DNS are name servers for Resolver, tried before those learned from
	// DHCP or router advertisements. Nil means only learned ones.
	DNS []netip.Addr

	// Hostname is sent to the DHCP server (option 12), so that its DNS can
	// name the appliance. Empty sends none.
	Hostname string

	// MTU overrides the link's MTU. Zero uses the link's.
	MTU int
}
