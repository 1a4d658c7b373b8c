package msgauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Resolver is the DNS the checks use; *net.Resolver is one (tests hand one
// whose Dial points at a test DNS server).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIP(ctx context.Context, network, host string) ([]net.IP, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// SPF results (RFC 7208 2.6).
type SPFResult string

const (
	SPFNone      SPFResult = "none"
	SPFNeutral   SPFResult = "neutral"
	SPFPass      SPFResult = "pass"
	SPFFail      SPFResult = "fail"
	SPFSoftFail  SPFResult = "softfail"
	SPFTempError SPFResult = "temperror"
	SPFPermError SPFResult = "permerror"
)

// SPF limits (RFC 7208 4.6.4): DNS-querying terms per check, void lookups,
// and names looked up per mx or ptr term.
const (
	spfMaxLookups     = 10
	spfMaxVoidLookups = 2
	spfMaxNames       = 10
	spfMaxRecordBytes = 4096
)

type spfCheck struct {
	r       Resolver
	ip      net.IP
	sender  string // local@domain (postmaster@helo when the path is empty)
	helo    string
	lookups int
	voids   int
}

// spfError is a permerror or temperror with its reason.
type spfError struct {
	result SPFResult
	reason string
}

func (e *spfError) Error() string { return string(e.result) + ": " + e.reason }

func permErr(format string, a ...any) error {
	return &spfError{SPFPermError, fmt.Sprintf(format, a...)}
}

// CheckSPF evaluates the SPF policy of domain for a message from ip whose
// envelope sender is sender (RFC 7208 check_host). The reason says why a
// result is what it is (for the log and the Authentication-Results).
func CheckSPF(ctx context.Context, r Resolver, ip net.IP, domain, sender, helo string) (SPFResult, string) {
	c := &spfCheck{r: r, ip: ip, sender: sender, helo: helo}
	res, err := c.checkHost(ctx, strings.ToLower(strings.TrimSuffix(domain, ".")), 0)
	if err != nil {
		var se *spfError
		if errors.As(err, &se) {
			return se.result, se.reason
		}
		return SPFTempError, err.Error()
	}
	return res, ""
}

// isNotFound says whether err is an answer with no records (NXDOMAIN or
// no data): a void lookup, not a failure.
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func (c *spfCheck) dnsErr(what string, err error) error {
	if isNotFound(err) {
		c.voids++
		if c.voids > spfMaxVoidLookups {
			return permErr("more than %d void DNS lookups (at %s)", spfMaxVoidLookups, what)
		}
		return nil
	}
	return &spfError{SPFTempError, fmt.Sprintf("DNS lookup of %s: %v", what, err)}
}

func (c *spfCheck) count(term string) error {
	c.lookups++
	if c.lookups > spfMaxLookups {
		return permErr("more than %d DNS-querying terms (at %s)", spfMaxLookups, term)
	}
	return nil
}

// record fetches domain's SPF record: "" with SPFNone when it has none.
func (c *spfCheck) record(ctx context.Context, domain string) (string, error) {
	if _, err := validName(domain); err != nil {
		return "", permErr("%v", err)
	}
	txts, err := c.r.LookupTXT(ctx, domain)
	if err != nil && !isNotFound(err) {
		return "", &spfError{SPFTempError, fmt.Sprintf("TXT lookup of %s: %v", domain, err)}
	}
	var recs []string
	for _, t := range txts {
		if lt := strings.ToLower(t); lt == "v=spf1" || strings.HasPrefix(lt, "v=spf1 ") {
			recs = append(recs, t)
		}
	}
	switch {
	case len(recs) == 0:
		return "", nil
	case len(recs) > 1:
		return "", permErr("%s has %d SPF records", domain, len(recs))
	case len(recs[0]) > spfMaxRecordBytes:
		return "", permErr("the SPF record of %s is %d bytes long", domain, len(recs[0]))
	}
	return recs[0], nil
}

// validName checks a domain name for lookups: labels of 1 to 63 bytes,
// 253 in all.
func validName(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return "", fmt.Errorf("bad domain name %q", d)
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("bad domain name %q", d)
		}
	}
	return d, nil
}

func (c *spfCheck) checkHost(ctx context.Context, domain string, depth int) (SPFResult, error) {
	if err := ctx.Err(); err != nil {
		return "", &spfError{SPFTempError, err.Error()}
	}
	if depth > spfMaxLookups {
		return "", permErr("include/redirect nested too deep")
	}
	rec, err := c.record(ctx, domain)
	if err != nil {
		return "", err
	}
	if rec == "" {
		return SPFNone, nil
	}
	var redirect string
	terms := strings.Fields(rec)[1:]
	// Modifiers first (RFC 7208 6: redirect applies only when no
	// mechanism matched; each modifier at most once).
	for _, t := range terms {
		if name, val, ok := strings.Cut(t, "="); ok && isModifierName(name) {
			switch strings.ToLower(name) {
			case "redirect":
				if redirect != "" {
					return "", permErr("two redirect modifiers in %s's record", domain)
				}
				redirect = val
			}
		}
	}
	for _, t := range terms {
		if name, _, ok := strings.Cut(t, "="); ok && isModifierName(name) {
			continue
		}
		qual := SPFPass
		switch t[0] {
		case '+':
			t = t[1:]
		case '-':
			qual, t = SPFFail, t[1:]
		case '~':
			qual, t = SPFSoftFail, t[1:]
		case '?':
			qual, t = SPFNeutral, t[1:]
		}
		match, err := c.mechanism(ctx, domain, t, depth)
		if err != nil {
			return "", err
		}
		if match {
			return qual, nil
		}
	}
	if redirect != "" {
		if err := c.count("redirect"); err != nil {
			return "", err
		}
		target, err := c.expand(redirect, domain)
		if err != nil {
			return "", err
		}
		res, err := c.checkHost(ctx, target, depth+1)
		if err != nil {
			return "", err
		}
		if res == SPFNone {
			return "", permErr("redirect to %s, which has no SPF record", target)
		}
		return res, nil
	}
	return SPFNeutral, nil
}

func isModifierName(name string) bool {
	if name == "" || !isAlpha(name[0]) {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !isAlpha(b) && !(b >= '0' && b <= '9') && b != '-' && b != '_' && b != '.' {
			return false
		}
	}
	return true
}

func isAlpha(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }

// splitCIDR splits "target/cidr4//cidr6" of a and mx terms.
func splitCIDR(s string) (target string, c4, c6 int, err error) {
	c4, c6 = 32, 128
	if i := strings.Index(s, "//"); i >= 0 {
		n, e := strconv.Atoi(s[i+2:])
		if e != nil || n < 0 || n > 128 {
			return "", 0, 0, permErr("bad ip6 prefix length in %q", s)
		}
		c6, s = n, s[:i]
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		n, e := strconv.Atoi(s[i+1:])
		if e != nil || n < 0 || n > 32 {
			return "", 0, 0, permErr("bad ip4 prefix length in %q", s)
		}
		c4, s = n, s[:i]
	}
	return s, c4, c6, nil
}

func (c *spfCheck) ipMatches(ip net.IP, c4, c6 int) bool {
	if a := c.ip.To4(); a != nil {
		b := ip.To4()
		return b != nil && a.Mask(net.CIDRMask(c4, 32)).Equal(b.Mask(net.CIDRMask(c4, 32)))
	}
	if ip.To4() != nil {
		return false
	}
	return c.ip.Mask(net.CIDRMask(c6, 128)).Equal(ip.Mask(net.CIDRMask(c6, 128)))
}

// hostMatches looks up host's addresses (one family: the client's) and
// compares them with the client's.
func (c *spfCheck) hostMatches(ctx context.Context, host string, c4, c6 int) (bool, error) {
	if _, err := validName(host); err != nil {
		return false, permErr("%v", err)
	}
	network := "ip6"
	if c.ip.To4() != nil {
		network = "ip4"
	}
	ips, err := c.r.LookupIP(ctx, network, host)
	if err != nil {
		return false, c.dnsErr(host, err)
	}
	for _, ip := range ips {
		if c.ipMatches(ip, c4, c6) {
			return true, nil
		}
	}
	return false, nil
}

func (c *spfCheck) mechanism(ctx context.Context, domain, t string, depth int) (bool, error) {
	name, arg, hasArg := strings.Cut(t, ":")
	if !hasArg {
		// a/24 and mx//64: a prefix without a target.
		if i := strings.IndexByte(name, '/'); i >= 0 {
			name, arg = name[:i], name[i:]
		}
	}
	switch strings.ToLower(name) {
	case "all":
		if arg != "" || hasArg {
			return false, permErr("bad term %q", t)
		}
		return true, nil
	case "include":
		if err := c.count(t); err != nil {
			return false, err
		}
		target, err := c.expand(arg, domain)
		if err != nil {
			return false, err
		}
		res, err := c.checkHost(ctx, target, depth+1)
		if err != nil {
			return false, err
		}
		switch res {
		case SPFPass:
			return true, nil
		case SPFNone:
			return false, permErr("include of %s, which has no SPF record", target)
		}
		return false, nil
	case "a", "mx":
		if err := c.count(t); err != nil {
			return false, err
		}
		spec, c4, c6, err := splitCIDR(arg)
		if err != nil {
			return false, err
		}
		target := domain
		if spec != "" {
			if target, err = c.expand(spec, domain); err != nil {
				return false, err
			}
		}
		if strings.EqualFold(name, "a") {
			return c.hostMatches(ctx, target, c4, c6)
		}
		mxs, err := c.r.LookupMX(ctx, target)
		if err != nil {
			return false, c.dnsErr(target, err)
		}
		if len(mxs) > spfMaxNames {
			return false, permErr("%s has %d MX records, over %d", target, len(mxs), spfMaxNames)
		}
		for _, mx := range mxs {
			ok, err := c.hostMatches(ctx, strings.TrimSuffix(mx.Host, "."), c4, c6)
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case "ptr":
		if err := c.count(t); err != nil {
			return false, err
		}
		target := domain
		if arg != "" {
			var err error
			if target, err = c.expand(arg, domain); err != nil {
				return false, err
			}
		}
		names, err := c.r.LookupAddr(ctx, c.ip.String())
		if err != nil {
			// A failed reverse lookup is no match (RFC 7208 5.5).
			return false, nil
		}
		for i, n := range names {
			if i == spfMaxNames {
				break
			}
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if n != target && !strings.HasSuffix(n, "."+target) {
				continue
			}
			if ok, err := c.hostMatches(ctx, n, 32, 128); err == nil && ok {
				return true, nil
			}
		}
		return false, nil
	case "ip4", "ip6":
		addr, bits, hasBits := strings.Cut(arg, "/")
		ip, err := netip.ParseAddr(addr)
		if err != nil || (strings.EqualFold(name, "ip4") != ip.Is4()) {
			return false, permErr("bad address in %q", t)
		}
		n := ip.BitLen()
		if hasBits {
			if n, err = strconv.Atoi(bits); err != nil || n < 0 || n > ip.BitLen() {
				return false, permErr("bad prefix length in %q", t)
			}
		}
		if ip.Is4() {
			return c.ipMatches(net.IP(ip.AsSlice()), n, 128), nil
		}
		return c.ipMatches(net.IP(ip.AsSlice()), 32, n), nil
	case "exists":
		if err := c.count(t); err != nil {
			return false, err
		}
		target, err := c.expand(arg, domain)
		if err != nil {
			return false, err
		}
		if _, err := validName(target); err != nil {
			return false, permErr("%v", err)
		}
		ips, err := c.r.LookupIP(ctx, "ip4", target)
		if err != nil {
			return false, c.dnsErr(target, err)
		}
		return len(ips) > 0, nil
	}
	return false, permErr("unknown mechanism %q", t)
}

// expand expands the macros of a domain-spec (RFC 7208 7) and checks the
// result is a domain name; a name over 253 bytes loses labels on the left.
func (c *spfCheck) expand(spec, domain string) (string, error) {
	if spec == "" {
		return "", permErr("empty domain-spec")
	}
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		if spec[i] != '%' {
			b.WriteByte(spec[i])
			continue
		}
		if i+1 >= len(spec) {
			return "", permErr("a lone %% ends %q", spec)
		}
		i++
		switch spec[i] {
		case '%':
			b.WriteByte('%')
			continue
		case '_':
			b.WriteByte(' ')
			continue
		case '-':
			b.WriteString("%20")
			continue
		case '{':
		default:
			return "", permErr("bad macro in %q", spec)
		}
		end := strings.IndexByte(spec[i:], '}')
		if end < 0 {
			return "", permErr("unclosed macro in %q", spec)
		}
		m := spec[i+1 : i+end]
		i += end
		if m == "" {
			return "", permErr("empty macro in %q", spec)
		}
		local, dom, _ := strings.Cut(c.sender, "@")
		var v string
		switch m[0] | 0x20 {
		case 's':
			v = c.sender
		case 'l':
			v = local
		case 'o':
			v = dom
		case 'd':
			v = domain
		case 'i':
			if ip4 := c.ip.To4(); ip4 != nil {
				v = ip4.String()
			} else {
				h := fmt.Sprintf("%x", []byte(c.ip.To16()))
				v = strings.Join(strings.Split(h, ""), ".")
			}
		case 'p':
			v = "unknown"
		case 'v':
			v = "in-addr"
			if c.ip.To4() == nil {
				v = "ip6"
			}
		case 'h':
			v = c.helo
		default:
			return "", permErr("unknown macro letter in %q", spec)
		}
		rest := m[1:]
		digits := 0
		for len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
			digits = digits*10 + int(rest[0]-'0')
			if digits > 128 {
				return "", permErr("bad macro transformer in %q", spec)
			}
			rest = rest[1:]
		}
		reverse := false
		if len(rest) > 0 && rest[0]|0x20 == 'r' {
			reverse, rest = true, rest[1:]
		}
		delims := "."
		if rest != "" {
			if strings.Trim(rest, ".-+,/_=") != "" {
				return "", permErr("bad macro delimiters in %q", spec)
			}
			delims = rest
		}
		parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
		if reverse {
			for l, r := 0, len(parts)-1; l < r; l, r = l+1, r-1 {
				parts[l], parts[r] = parts[r], parts[l]
			}
		}
		if digits > 0 && digits < len(parts) {
			parts = parts[len(parts)-digits:]
		}
		b.WriteString(strings.Join(parts, "."))
	}
	out := strings.TrimSuffix(b.String(), ".")
	for len(out) > 253 {
		_, rest, ok := strings.Cut(out, ".")
		if !ok {
			break
		}
		out = rest
	}
	return strings.ToLower(out), nil
}
