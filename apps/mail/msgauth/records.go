package msgauth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// RecordOptions describe a domain's mail setup for Records.
type RecordOptions struct {
	// Domain is the mail domain (required).
	Domain string
	// Hostname is the mail server's name (MX, SRV targets; required).
	Hostname string
	// IPs, if given, are the server's addresses: A and AAAA records for
	// Hostname (when it is in Domain), and ip4:/ip6: terms in SPF.
	IPs []net.IP
	// DKIM are the keys to publish (Keyring.Published).
	DKIM []Key
	// DMARCPolicy is p= of the DMARC record: "reject" (default),
	// "quarantine" or "none".
	DMARCPolicy string
	// STSMode is the MTA-STS policy mode: "enforce" (default), "testing"
	// or "none".
	STSMode string
	// CAAIssuers are the CAs allowed to issue certificates for the domain
	// (CAA issue); empty: no CAA record.
	CAAIssuers []string
	// TTL of every record; zero: 3600.
	TTL uint32
}

// STSMaxAge is the max_age of the MTA-STS policies served (one week).
const STSMaxAge = 604800

// STSPolicy is the MTA-STS policy (RFC 8461 3.2) for mail exchangers mx in
// mode ("enforce", "testing" or "none").
func STSPolicy(mode string, mx ...string) string {
	if mode == "" {
		mode = "enforce"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\r\nmode: %s\r\n", mode)
	for _, m := range mx {
		fmt.Fprintf(&b, "mx: %s\r\n", strings.TrimSuffix(m, "."))
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", STSMaxAge)
	return b.String()
}

// STSID is the id of the _mta-sts TXT record for policy: it changes when
// the policy does (RFC 8461 3.1: up to 32 alphanumeric characters).
func STSID(policy string) string {
	sum := sha256.Sum256([]byte(policy))
	return hex.EncodeToString(sum[:10])
}

// txtChunks splits s into the character strings of a TXT record (at most
// 255 bytes each, RFC 1035 3.3.14; the parts are concatenated by readers of
// DKIM and SPF records).
func txtChunks(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// Records returns every DNS record o.Domain needs for mail: MX, SPF, the
// DKIM keys, DMARC, MTA-STS (its TXT record, and the mta-sts, autoconfig
// and autodiscover names pointing at the server), TLS-RPT, the SRV records
// of RFC 6186 and RFC 8314, and CAA.
func Records(o RecordOptions) ([]dns.RR, error) {
	d := strings.ToLower(strings.TrimSuffix(o.Domain, "."))
	host := strings.ToLower(strings.TrimSuffix(o.Hostname, "."))
	if _, ok := dns.IsDomainName(d); !ok || d == "" {
		return nil, fmt.Errorf("records: bad domain %q", o.Domain)
	}
	if _, ok := dns.IsDomainName(host); !ok || host == "" {
		return nil, fmt.Errorf("records: bad hostname %q", o.Hostname)
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = 3600
	}
	fq := func(n string) string { return dns.Fqdn(n) }
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: fq(name), Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	txt := func(name, s string) dns.RR { return &dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: txtChunks(s)} }
	var rrs []dns.RR
	rrs = append(rrs, &dns.MX{Hdr: hdr(d, dns.TypeMX), Preference: 10, Mx: fq(host)})
	if host == d || strings.HasSuffix(host, "."+d) {
		for _, ip := range o.IPs {
			if ip4 := ip.To4(); ip4 != nil {
				rrs = append(rrs, &dns.A{Hdr: hdr(host, dns.TypeA), A: ip4})
			} else {
				rrs = append(rrs, &dns.AAAA{Hdr: hdr(host, dns.TypeAAAA), AAAA: ip})
			}
		}
	}
	spf := "v=spf1"
	for _, ip := range o.IPs {
		if ip.To4() != nil {
			spf += " ip4:" + ip.String()
		} else {
			spf += " ip6:" + ip.String()
		}
	}
	spf += " mx -all"
	rrs = append(rrs, txt(d, spf))
	for _, k := range o.DKIM {
		rrs = append(rrs, txt(k.Selector+"._domainkey."+d, k.TXT()))
	}
	p := o.DMARCPolicy
	if p == "" {
		p = "reject"
	}
	switch p {
	case "reject", "quarantine", "none":
	default:
		return nil, fmt.Errorf("records: DMARC policy %q: want reject, quarantine or none", p)
	}
	rrs = append(rrs, txt("_dmarc."+d, "v=DMARC1; p="+p+"; adkim=r; aspf=r"))
	mode := o.STSMode
	if mode == "" {
		mode = "enforce"
	}
	switch mode {
	case "enforce", "testing", "none":
	default:
		return nil, fmt.Errorf("records: MTA-STS mode %q: want enforce, testing or none", mode)
	}
	rrs = append(rrs, txt("_mta-sts."+d, "v=STSv1; id="+STSID(STSPolicy(mode, host))))
	rrs = append(rrs, txt("_smtp._tls."+d, "v=TLSRPTv1; rua=mailto:postmaster@"+d))
	for _, n := range []string{"mta-sts", "autoconfig", "autodiscover"} {
		rrs = append(rrs, &dns.CNAME{Hdr: hdr(n+"."+d, dns.TypeCNAME), Target: fq(host)})
	}
	srv := func(service string, prio uint16, port uint16) {
		rrs = append(rrs, &dns.SRV{Hdr: hdr(service+"._tcp."+d, dns.TypeSRV), Priority: prio, Weight: 1, Port: port, Target: fq(host)})
	}
	// RFC 8314 5.1: implicit TLS first.
	srv("_submissions", 0, 465)
	srv("_submission", 10, 587)
	srv("_imaps", 0, 993)
	srv("_imap", 10, 143)
	// No POP3: a target of "." says the service is not offered (RFC 2782).
	for _, s := range []string{"_pop3", "_pop3s"} {
		rrs = append(rrs, &dns.SRV{Hdr: hdr(s+"._tcp."+d, dns.TypeSRV), Target: "."})
	}
	for _, ca := range o.CAAIssuers {
		rrs = append(rrs, &dns.CAA{Hdr: hdr(d, dns.TypeCAA), Tag: "issue", Value: ca})
	}
	if len(o.CAAIssuers) > 0 {
		rrs = append(rrs, &dns.CAA{Hdr: hdr(d, dns.TypeCAA), Tag: "issuewild", Value: ";"})
	}
	return rrs, nil
}

// Zone formats rrs in zone-file syntax, one record a line.
func Zone(rrs []dns.RR) string {
	var b strings.Builder
	for _, rr := range rrs {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
	return b.String()
}
