// Package mtasts finds other domains' MTA-STS policies (RFC 8461) for the
// outbound queue: the _mta-sts TXT record says a domain has one, the
// policy is fetched over HTTPS from mta-sts.DOMAIN with a verified
// certificate, and kept (in memory) for its max_age, or until the record's
// id changes. Under an enforce policy the queue delivers only to the MX
// hosts it names, over TLS with a certificate valid for the host, and
// defers the message rather than send it in the clear.
package mtasts

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Modes of a policy.
const (
	Enforce = "enforce"
	Testing = "testing"
	None    = "none"
)

// Policy is a parsed MTA-STS policy.
type Policy struct {
	ID     string
	Mode   string
	MX     []string
	MaxAge time.Duration
}

// Matches reports whether host is one of the policy's MX patterns
// (RFC 8461 4.1: "*.example.com" matches one label).
func (p *Policy) Matches(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, m := range p.MX {
		m = strings.ToLower(m)
		if rest, ok := strings.CutPrefix(m, "*."); ok {
			if i := strings.IndexByte(host, '.'); i > 0 && host[i+1:] == rest {
				return true
			}
		} else if host == m {
			return true
		}
	}
	return false
}

// Parse parses a policy's text (RFC 8461 3.2).
func Parse(text string) (*Policy, error) {
	p := &Policy{}
	sc := bufio.NewScanner(strings.NewReader(text))
	seen := map[string]bool{}
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("mta-sts: bad policy line %q", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k != "mx" && seen[k] {
			continue // the first of a repeated field counts
		}
		seen[k] = true
		switch k {
		case "version":
			if v != "STSv1" {
				return nil, fmt.Errorf("mta-sts: version %q", v)
			}
		case "mode":
			switch v {
			case Enforce, Testing, None:
				p.Mode = v
			default:
				return nil, fmt.Errorf("mta-sts: mode %q", v)
			}
		case "mx":
			p.MX = append(p.MX, v)
		case "max_age":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n > 31557600 {
				return nil, fmt.Errorf("mta-sts: max_age %q", v)
			}
			p.MaxAge = time.Duration(n) * time.Second
		}
	}
	if !seen["version"] || p.Mode == "" || !seen["max_age"] {
		return nil, errors.New("mta-sts: the policy lacks version, mode or max_age")
	}
	if p.Mode != None && len(p.MX) == 0 {
		return nil, errors.New("mta-sts: the policy names no mx")
	}
	return p, nil
}

// Resolver looks up TXT records; *net.Resolver is one.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Fetcher finds policies.
type Fetcher struct {
	// Resolver is the DNS; nil: net.DefaultResolver.
	Resolver Resolver
	// Dial connects (the appliance's network); nil: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// RootCAs verify the policy servers' certificates (and, under
	// enforce, the MX hosts'); nil: the system's.
	RootCAs *x509.CertPool
	// Port is the HTTPS port of policy servers; "": 443 (tests).
	Port string

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	p       *Policy
	expires time.Time
}

// maxPolicyBytes bounds a policy (RFC 8461 3.3 suggests 64 KiB).
const maxPolicyBytes = 64 << 10

// Policy returns domain's policy: nil without one (no TXT record). A
// cached policy serves while its id is unchanged and its max_age lasts,
// and when the record or the policy cannot be fetched. Without one, a
// failure to fetch is returned with a nil policy, for the log: the
// sender then delivers as if the domain had no policy (RFC 8461 5.1).
func (f *Fetcher) Policy(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	r := f.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	f.mu.Lock()
	c, have := f.cache[domain]
	f.mu.Unlock()
	if have && time.Now().After(c.expires) {
		have = false
	}
	txts, err := r.LookupTXT(ctx, "_mta-sts."+domain)
	var de *net.DNSError
	if err != nil && !(errors.As(err, &de) && de.IsNotFound) {
		if have {
			return c.p, nil
		}
		return nil, fmt.Errorf("mta-sts: TXT lookup of _mta-sts.%s: %w", domain, err)
	}
	var ids []string
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=STSv1") {
			continue
		}
		for _, f := range strings.Split(t, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(f), "id="); ok {
				ids = append(ids, v)
			}
		}
	}
	if len(ids) != 1 {
		// No record, or several: no policy, unless one is cached.
		if have {
			return c.p, nil
		}
		return nil, nil
	}
	if have && c.p.ID == ids[0] {
		return c.p, nil
	}
	p, err := f.fetch(ctx, domain)
	if err != nil {
		if have {
			return c.p, nil
		}
		return nil, err
	}
	p.ID = ids[0]
	f.mu.Lock()
	if f.cache == nil {
		f.cache = map[string]cached{}
	}
	f.cache[domain] = cached{p: p, expires: time.Now().Add(p.MaxAge)}
	f.mu.Unlock()
	return p, nil
}

func (f *Fetcher) fetch(ctx context.Context, domain string) (*Policy, error) {
	host := "mta-sts." + domain
	port := f.Port
	if port == "" {
		port = "443"
	}
	r := f.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	dial := f.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second}).DialContext
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: f.RootCAs, ServerName: host, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			ips, err := r.LookupHost(ctx, host)
			if err != nil {
				return nil, err
			}
			var lastErr error
			for _, ip := range ips {
				c, err := dial(ctx, "tcp", net.JoinHostPort(ip, port))
				if err == nil {
					return c, nil
				}
				lastErr = err
			}
			return nil, lastErr
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute,
		// RFC 8461 3.3: no redirects.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mta-sts: fetching the policy of %s: %w", domain, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mta-sts: fetching the policy of %s: %s", domain, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("mta-sts: the policy of %s is %q, not text/plain", domain, ct)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("mta-sts: reading the policy of %s: %w", domain, err)
	}
	if len(b) > maxPolicyBytes {
		return nil, fmt.Errorf("mta-sts: the policy of %s is over %d bytes", domain, maxPolicyBytes)
	}
	return Parse(string(b))
}
