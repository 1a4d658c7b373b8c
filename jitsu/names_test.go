package jitsu

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nymote/nymote/apps/mail/msgauth"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/signpost"
	"github.com/nymote/nymote/store"
)

// signpostNetwork makes a person's network on data directories: a hub
// (alice's, the founder) and the nodes names that joined it. It returns
// the hub's directory and each node's WireGuard key.
func signpostNetwork(t *testing.T, names ...string) (string, map[string]signpost.Key) {
	t.Helper()
	hub := t.TempDir()
	srv := httptest.NewServer(signpost.JoinHandler(hub, nil))
	t.Cleanup(srv.Close)
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	keys := map[string]signpost.Key{}
	for _, name := range names {
		inv, err := signpost.Issue(hub, name, "198.51.100.2:51820", "alice", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if _, err := signpost.Join(context.Background(), dir, inv, "", dial); err != nil {
			t.Fatal(err)
		}
		id, err := signpost.LoadIdentity(dir)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = id.WG
	}
	id, err := signpost.LoadIdentity(hub)
	if err != nil {
		t.Fatal(err)
	}
	keys["hub"] = id.WG
	return hub, keys
}

func startYAML(t *testing.T, y string) *Server {
	t.Helper()
	cfg, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, y)
	}
	s, err := New(cfg, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dig runs Debian's dig against server and returns its answers (+short);
// ok is false when dig is not installed.
func dig(t *testing.T, server, name, qtype string, extra ...string) (answers []string, ok bool) {
	t.Helper()
	path, err := exec.LookPath("dig")
	if err != nil {
		return nil, false
	}
	host, port, _ := net.SplitHostPort(server)
	args := append([]string{"@" + host, "-p", port, "+short", "+time=5", "+tries=1", name, qtype}, extra...)
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			answers = append(answers, l)
		}
	}
	return answers, true
}

// TestSignpostNames: jitsu, given the hub's data directory, answers for
// alice's network as the nodes' own name servers do: NODE.alice.nymote and
// SERVICE.NODE.alice.nymote are the node's tunnel addresses (dig and the
// miekg/dns client, UDP and TCP); a name of no node is NXDOMAIN; a client
// outside the allowed networks is refused; after `peer del mail` (Revoke
// on the hub's directory) the name is gone without a restart.
func TestSignpostNames(t *testing.T) {
	hub, keys := signpostNetwork(t, "mail", "laptop")
	st, err := signpost.ReadState(hub)
	if err != nil {
		t.Fatal(err)
	}
	mail4, mail6 := st.Addrs(keys["mail"])
	hub4, _ := st.Addrs(keys["hub"])
	s := startYAML(t, "dns: 127.0.0.1:0\nsignpost:\n  data: "+hub+"\n")

	for _, netw := range []string{"udp", "tcp"} {
		r := query(t, s.DNSAddr(), netw, "mail.alice.nymote", dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != mail4.String() {
			t.Fatalf("mail.alice.nymote A over %s: %v, want %s", netw, r, mail4)
		}
	}
	for _, tc := range []struct {
		name, qtype string
		want        netip.Addr
	}{
		{"mail.alice.nymote", "A", mail4},
		{"mail.alice.nymote", "AAAA", mail6},
		{"imap.mail.alice.nymote", "A", mail4},
		{"IMAPS.Mail.Alice.Nymote", "AAAA", mail6},
		{"hub.alice.nymote", "A", hub4},
	} {
		got := qAddrs(t, s.DNSAddr(), tc.name, dns.StringToType[tc.qtype])
		if !slices.Equal(got, []string{tc.want.String()}) {
			t.Errorf("%s %s: %v, want %s", tc.name, tc.qtype, got, tc.want)
		}
		if ans, ok := dig(t, s.DNSAddr(), tc.name, tc.qtype); ok && !slices.Equal(ans, []string{tc.want.String()}) {
			t.Errorf("dig %s %s: %v, want %s", tc.name, tc.qtype, ans, tc.want)
		}
	}
	if _, err := exec.LookPath("dig"); err != nil {
		t.Log("dig not installed (Debian bind9-dnsutils): only the miekg/dns client was used")
	}
	for _, tc := range []struct {
		name  string
		rcode int
	}{
		{"nope.alice.nymote", dns.RcodeNameError},
		{"a.b.mail.alice.nymote", dns.RcodeNameError},
		{"alice.nymote", dns.RcodeSuccess},
		{"mail.bob.nymote", dns.RcodeRefused}, // not ours, and no forwarder
	} {
		if r := query(t, s.DNSAddr(), "udp", tc.name, dns.TypeA); r.Rcode != tc.rcode || len(r.Answer) != 0 {
			t.Errorf("%s: %s with %d answers, want %s and none", tc.name, dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[tc.rcode])
		}
	}

	// Only loopback and the network itself may ask, unless configured.
	other := startYAML(t, "dns: 127.0.0.1:0\nsignpost:\n  data: "+hub+"\n  clients: [192.0.2.0/24]\n")
	if r := query(t, other.DNSAddr(), "udp", "mail.alice.nymote", dns.TypeA); r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
		t.Errorf("from a client outside signpost.clients: %s with %d answers, want REFUSED", dns.RcodeToString[r.Rcode], len(r.Answer))
	}

	// peer del mail: the name goes away.
	if _, err := signpost.Revoke(hub, "mail"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := query(t, s.DNSAddr(), "udp", "mail.alice.nymote", dns.TypeA)
		if r.Rcode == dns.RcodeNameError {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after peer del mail, mail.alice.nymote is still %v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := qAddrs(t, s.DNSAddr(), "laptop.alice.nymote", dns.TypeA); len(got) != 1 {
		t.Errorf("laptop after mail's removal: %v", got)
	}
}

// qAddrs returns the A/AAAA answers to name over UDP.
func qAddrs(t *testing.T, server, name string, qtype uint16) []string {
	t.Helper()
	r := query(t, server, "udp", name, qtype)
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		t.Fatalf("%s %s: %s (aa %v)", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], r.Authoritative)
	}
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

// TestSignpostConfig: the signpost: section's errors name the field.
func TestSignpostConfig(t *testing.T) {
	for _, tc := range []struct{ y, want string }{
		{"dns: 127.0.0.1:0\nsignpost:\n  clients: [10.0.0.0/8]\n", "line 2: signpost.data: required"},
		{"dns: 127.0.0.1:0\nsignpost:\n  data: /x\n  clients: [nonsense]\n", `line 4: signpost.clients[0]: "nonsense"`},
		{"dns: 127.0.0.1:0\n", "zones: at least one zone is required (or signpost)"},
		{"dns: 127.0.0.1:0\nzones:\n  - name: a.test\n    mail: {appliance: mail.a.test}\n", "line 4: zones[0].mail.appliance: mail.a.test is none of the appliances"},
		{"dns: 127.0.0.1:0\nzones:\n  - name: a.test\n    mail: {data: /x}\n", "zones[0].mail.hostname: required"},
		{"dns: 127.0.0.1:0\nzones:\n  - name: a.test\n    mail: {hostname: mx.a.test}\n", "zones[0].mail.data: required"},
		{"dns: 127.0.0.1:0\nzones:\n  - name: a.test\n    mail: {hostname: mx.a.test, data: /x, dmarc_policy: maybe}\n", `zones[0].mail.dmarc_policy: "maybe"`},
		{"dns: 127.0.0.1:0\nzones:\n  - name: a.test\n    mail: {hostname: mx.a.test, data: /x, ips: [nope]}\n", `zones[0].mail.ips[0]: "nope" is not an IP address`},
		{"dns: 127.0.0.1:0\nzones:\n  - name: a.test\n    mail: {domain: b.test, hostname: mx.a.test, data: /x}\n", "b.test. is not in zone a.test."},
	} {
		if _, err := ParseConfig([]byte(tc.y)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.y, err, tc.want)
		}
	}
	cfg, err := ParseConfig([]byte("dns: 127.0.0.1:0\nsignpost:\n  data: " + t.TempDir() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "no identity") {
		t.Errorf("a directory without a signpost node: %v", err)
	}
}

// TestMailRecords: a zone's mail: built from an appliance of the
// configuration (its name, address and data directory) serves its MX and
// SPF, and the DKIM keys the keyring publishes at jitsu's clock: both
// pairs during a rotation's overlap, the new pair alone once it ended,
// without a restart. A data directory without keys yet serves the rest.
func TestMailRecords(t *testing.T) {
	data := t.TempDir()
	st, err := store.InitData(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	t1 := t0.Add(24 * time.Hour)
	if _, err := msgauth.NewKeyring(st, func() time.Time { return t0 }).Keys("home.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := msgauth.NewKeyring(st, func() time.Time { return t1 }).Rotate("home.test"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var now atomic.Int64
	now.Store(t1.Add(time.Hour).UnixNano())
	y := fmt.Sprintf(`dns: 127.0.0.1:0
zones:
  - name: home.test
    mail: {appliance: mail.home.test, caa: []}
  - name: other.test
    mail: {hostname: mx.other.test, data: %s}
appliances:
  - name: mail.home.test
    address: 127.0.0.1
    ports: [{name: imap, port: %d}]
    data: %s
    launcher: {kind: process, command: [/nonexistent/mail]}
`, t.TempDir(), testutil.FreePort(t), data)
	cfg, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Log: testLog(t), Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := query(t, s.DNSAddr(), "tcp", "home.test", dns.TypeMX)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.MX).Mx != "mail.home.test." || !r.Authoritative {
		t.Fatalf("MX: %v", r)
	}
	if r := query(t, s.DNSAddr(), "tcp", "home.test", dns.TypeTXT); len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "v=spf1 ip4:127.0.0.1 mx -all") {
		t.Errorf("SPF: %v", r.Answer)
	}
	if r := query(t, s.DNSAddr(), "tcp", "home.test", dns.TypeCAA); len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("CAA with caa: []: %v", r)
	}
	selectors := func() []string {
		var sel []string
		for _, p := range []string{"ed", "rsa"} {
			for _, d := range []time.Time{t0, t1} {
				name := p + d.Format("20060102") + "._domainkey.home.test"
				if r := query(t, s.DNSAddr(), "tcp", name, dns.TypeTXT); len(r.Answer) == 1 {
					sel = append(sel, p+d.Format("20060102"))
				} else if r.Rcode != dns.RcodeNameError {
					t.Errorf("%s: %v", name, r)
				}
			}
		}
		return sel
	}
	if got := selectors(); !slices.Equal(got, []string{"ed20261101", "ed20261102", "rsa20261101", "rsa20261102"}) {
		t.Errorf("during the overlap: selectors %v, want both pairs", got)
	}
	now.Store(t1.Add(msgauth.RotationDelay + msgauth.RetainFor + time.Hour).UnixNano())
	if got := selectors(); !slices.Equal(got, []string{"ed20261102", "rsa20261102"}) {
		t.Errorf("after the overlap: selectors %v, want the new pair only", got)
	}
	// No keys yet: the records without DKIM.
	if r := query(t, s.DNSAddr(), "udp", "_dmarc.other.test", dns.TypeTXT); len(r.Answer) != 1 {
		t.Errorf("DMARC of a domain without keys: %v", r)
	}
}
