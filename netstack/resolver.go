//go:build linux

package netstack

import (
	"context"
	"net"
	"net/netip"
	"strconv"
)

// DNSServers returns the name servers the Resolver uses, in order: those
// in Options.DNS, then those from the DHCP lease, then those from router
// advertisements.
func (st *Stack) DNSServers() []netip.Addr {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.dnsServersLocked()
}

func (st *Stack) dnsServersLocked() []netip.Addr {
	var out []netip.Addr
	add := func(list []netip.Addr) {
		for _, a := range list {
			if indexAddr(out, a) < 0 {
				out = append(out, a)
			}
		}
	}
	add(st.opts.DNS)
	if st.lease != nil {
		add(st.lease.DNS)
	}
	add(st.ndpDNS)
	return out
}

// Resolver returns a resolver whose queries go through the stack to the
// servers DNSServers lists (read at each query, so servers learned later
// are used). The standard library's Go resolver builds and parses the
// queries; the address it asks to dial (from the host's resolv.conf, or
// its localhost default) is ignored: each dial goes to the next server in
// turn, so the resolver's retries move on to the next server.
func (st *Stack) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			st.mu.Lock()
			servers := st.dnsServersLocked()
			var server netip.Addr
			if len(servers) > 0 {
				server = servers[st.dnsNext%len(servers)]
				st.dnsNext++
			}
			st.mu.Unlock()
			if !server.IsValid() {
				return nil, &net.OpError{Op: "dial", Net: network, Err: ErrNoDNS}
			}
			return st.DialContext(ctx, network, net.JoinHostPort(server.String(), strconv.Itoa(53)))
		},
	}
}
