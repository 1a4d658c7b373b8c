package tunnel

import (
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// DNSPort is the port of the node's name server on its tunnel addresses.
const DNSPort = 53

// serveDNS answers for the network's names (NODE.PERSON.nymote, see
// signpost.State.Names) on the node's tunnel addresses only, so that
// clients in the network use names, not addresses: A and AAAA with the
// nodes' tunnel addresses; NXDOMAIN for other names in the zone; REFUSED
// outside it. Any first label before a node's name is its service
// (mail.b.alice.nymote is b's address too), as jitsu names services.
func (n *Node) serveDNS() error {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		n.stateMu.Lock()
		st := n.state
		n.stateMu.Unlock()
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		addrs, exists, inZone := st.Lookup(n.id.WG, q.Name)
		if !inZone {
			m.Rcode = dns.RcodeRefused
			w.WriteMsg(m)
			return
		}
		if !exists {
			m.Rcode = dns.RcodeNameError
			w.WriteMsg(m)
			return
		}
		for _, a := range addrs {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 60}
			switch {
			case a.Is4() && q.Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && q.Qtype == dns.TypeAAAA:
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		w.WriteMsg(m)
	})
	for _, a := range []netip.Addr{n.v4, n.v6} {
		pc, err := n.cfg.Stack.ListenPacket("udp", net.JoinHostPort(a.String(), "53"))
		if err != nil {
			return err
		}
		srv := &dns.Server{PacketConn: pc, Handler: h}
		n.dnsServers = append(n.dnsServers, srv)
		n.dnsConns = append(n.dnsConns, pc)
		n.dnsWG.Add(1)
		go func() {
			defer n.dnsWG.Done()
			srv.ActivateAndServe()
		}()
	}
	return nil
}
