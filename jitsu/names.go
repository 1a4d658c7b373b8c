package jitsu

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/nymote/nymote/apps/mail/msgauth"
	"github.com/nymote/nymote/signpost"
)

// signpostTTL is the TTL of the network's names, as the nodes' own name
// servers give them.
const signpostTTL = 60

// signpostNames answers for a person's network of nodes from a node's
// data directory (Config.Signpost).
type signpostNames struct {
	cfg *SignpostConfig
	r   *signpost.StateReader
}

func newSignpostNames(cfg *SignpostConfig) (*signpostNames, error) {
	r, err := signpost.NewStateReader(cfg.Data)
	if err != nil {
		return nil, fmt.Errorf("jitsu: signpost.data: %w", err)
	}
	return &signpostNames{cfg: cfg, r: r}, nil
}

// allowed says whether a client at from may ask for the network's names:
// one in the configured clients or inside the network.
func (n *signpostNames) allowed(st *signpost.State, from net.Addr) bool {
	ip := addrOf(from)
	if !ip.IsValid() {
		return false
	}
	for _, p := range append([]netip.Prefix{st.Network.Prefix4(), st.Network.Prefix6()}, n.cfg.clients...) {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// answer answers q if it is in the network's zone (ok), as the nodes' own
// name servers do (signpost.State.Lookup).
func (n *signpostNames) answer(r *dns.Msg, from net.Addr) (m *dns.Msg, ok bool) {
	st, err := n.r.State()
	if err != nil {
		return nil, false
	}
	q := r.Question[0]
	addrs, exists, inZone := st.Lookup(n.r.Self(), q.Name)
	if !inZone || q.Qclass != dns.ClassINET {
		return nil, false
	}
	m = new(dns.Msg)
	if !n.allowed(st, from) {
		m.SetRcode(r, dns.RcodeRefused)
		return m, true
	}
	m.SetReply(r)
	m.Authoritative = true
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(max(o.UDPSize(), dns.MinMsgSize), false)
	}
	zone := dns.Fqdn(st.Zone())
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: signpostTTL},
		Ns: "ns." + zone, Mbox: "hostmaster." + zone, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: signpostTTL}
	if !exists {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa}
		return m, true
	}
	for _, a := range addrs {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: signpostTTL}
		switch {
		case a.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
		case a.Is6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	if dns.CanonicalName(q.Name) == zone && q.Qtype == dns.TypeSOA {
		m.Answer = []dns.RR{soa}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{soa}
	}
	return m, true
}

// mailRefresh is how often a zone's mail records are built again even
// when the DKIM keys did not change: a key leaves the records when its
// rotation's overlap ends.
const mailRefresh = time.Minute

// mailRecords are a zone's mail records (Zone.Mail), built by
// msgauth.Records from the mail appliance's DKIM keys.
type mailRecords struct {
	cfg   *MailZone
	skip  map[string]bool // names jitsu answers itself (appliances)
	now   func() time.Time
	log   *slog.Logger
	mu    sync.Mutex
	stamp string
	built time.Time
	recs  map[string][]dns.RR // by canonical owner name
	names map[string]bool     // owner names and the names above them in the zone
}

func (mr *mailRecords) keysStamp() string {
	d := strings.TrimSuffix(mr.cfg.Domain, ".")
	fi, err := os.Stat(filepath.Join(mr.cfg.Data, "node", "dkim", d, "keys.json"))
	if err != nil {
		return ""
	}
	return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
}

// records returns the records by owner name, built again when the keys
// changed or mailRefresh passed.
func (mr *mailRecords) records() (map[string][]dns.RR, map[string]bool) {
	stamp := mr.keysStamp()
	now := mr.now()
	mr.mu.Lock()
	defer mr.mu.Unlock()
	if mr.recs != nil && stamp == mr.stamp && now.Sub(mr.built) < mailRefresh {
		return mr.recs, mr.names
	}
	recs, names, nkeys, err := mr.build(now)
	if err != nil {
		if mr.recs != nil {
			mr.log.Error("mail records: keeping the last ones", "domain", mr.cfg.Domain, "err", err)
			return mr.recs, mr.names
		}
		mr.log.Error("mail records", "domain", mr.cfg.Domain, "err", err)
		return nil, nil
	}
	if nkeys == 0 && mr.stamp != stamp || mr.recs == nil && nkeys == 0 {
		mr.log.Warn("mail records: the mail appliance has no DKIM keys yet (it makes them when it first signs, or run nymote mail dns --data DIR)",
			"domain", mr.cfg.Domain, "data", mr.cfg.Data)
	} else if mr.recs != nil && stamp != mr.stamp {
		mr.log.Info("mail records rebuilt: the DKIM keys changed", "domain", mr.cfg.Domain, "dkim_selectors", nkeys)
	}
	mr.recs, mr.names, mr.stamp, mr.built = recs, names, stamp, now
	return recs, names
}

func (mr *mailRecords) build(now time.Time) (map[string][]dns.RR, map[string]bool, int, error) {
	c := mr.cfg
	domain := strings.TrimSuffix(c.Domain, ".")
	keys, err := msgauth.NewKeyring(msgauth.ReadOnlyFiles(c.Data), func() time.Time { return now }).PublishedIfAny(domain)
	if err != nil {
		return nil, nil, 0, err
	}
	rrs, err := msgauth.Records(msgauth.RecordOptions{Domain: domain, Hostname: c.Hostname, IPs: c.ips, DKIM: keys,
		DMARCPolicy: c.DMARCPolicy, STSMode: c.MTASTSMode, CAAIssuers: c.CAA, TTL: uint32(time.Duration(c.TTL) / time.Second)})
	if err != nil {
		return nil, nil, 0, err
	}
	recs := map[string][]dns.RR{}
	names := map[string]bool{}
	for _, rr := range rrs {
		name := dns.CanonicalName(rr.Header().Name)
		if t := rr.Header().Rrtype; (t == dns.TypeA || t == dns.TypeAAAA) && mr.skip[name] {
			continue // an appliance: jitsu answers its address (and summons it)
		}
		recs[name] = append(recs[name], rr)
		for n := name; n != "" && dns.IsSubDomain(c.Domain, n); {
			names[n] = true
			_, rest, _ := strings.Cut(n, ".")
			n = rest
		}
	}
	return recs, names, len(keys), nil
}

// answer fills m (a reply to q, for a name in the zone that is no
// appliance) from the mail records; false when the name is not theirs.
func (mr *mailRecords) answer(q dns.Question, m *dns.Msg) bool {
	recs, names := mr.records()
	name := dns.CanonicalName(q.Name)
	if !names[name] {
		return false
	}
	for hops := 0; hops < 8; hops++ {
		var cname *dns.CNAME
		found := false
		for _, rr := range recs[name] {
			t := rr.Header().Rrtype
			if t == q.Qtype || q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			} else if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if found || cname == nil {
			break
		}
		// RFC 1034 4.3.2: the alias, then the target's records when
		// this server has them.
		m.Answer = append(m.Answer, dns.Copy(cname))
		name = dns.CanonicalName(cname.Target)
	}
	return true
}
