package appliance

import "net/netip"

// netstackConfig configures the netstack network.
type netstackConfig struct {
	// link is "packet:IF" or "tap:NAME".
	link string
	// ip and gw are a static address; zero means DHCP.
	ip netip.Prefix
	gw netip.Addr
	// dns are name servers tried before learned ones.
	dns []netip.Addr
	// hostname is sent to the DHCP server.
	hostname string
}
