// Package netstack gives a program its own TCP/IP stack: gVisor's netstack
// (gvisor.dev/gvisor/pkg/tcpip) running on a raw network link, with DHCPv4,
// static IPv4 and IPv6, IPv6 link-local addressing and SLAAC, a DNS resolver,
// and the standard library's net.Listener, net.Conn and net.PacketConn
// interfaces on top.
//
// Inside an appliance the kernel's own IP stack stays unconfigured: the NIC
// is brought up without an address, an AF_PACKET socket is bound to it and
// the stack owns ARP, IP, ICMP, DHCP, TCP and UDP. On a workstation the
// same stack can run on a TAP device.
//
// Typical use:
//
//	link, err := netstack.OpenLink("packet:eth0") // or "tap:nymote0"
//	if err != nil { ... }
//	st, err := netstack.New(netstack.Options{Link: link, Logger: logger})
//	if err != nil { ... }
//	defer st.Close()
//	if _, err := st.WaitIPv4(ctx); err != nil { ... } // DHCP lease
//	ln, err := st.Listen("tcp", ":143")
//
// A Stack owns its Link and everything it started; Close stops the DHCP
// client (releasing the lease), aborts every connection, stops the link's
// goroutines and closes the link, leaving no goroutines behind.
//
// The package only logs through the *slog.Logger it is handed; it never
// prints.
package netstack
