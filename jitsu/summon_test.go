package jitsu

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nymote/nymote/internal/testutil"
)

// query asks the server for name and type over net (udp or tcp).
func query(t testing.TB, server, netw, name string, qtype uint16) *dns.Msg {
	t.Helper()
	return queryWithin(t, server, netw, name, qtype, 15*time.Second)
}

// queryWithin is query with a timeout: a VM boot under TCG on a loaded
// machine takes longer than 15 s.
func queryWithin(t testing.TB, server, netw, name string, qtype uint16, timeout time.Duration) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: netw, Timeout: timeout}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], netw, err)
	}
	return r
}

func wantA(t testing.TB, r *dns.Msg, ip string, ttl uint32) {
	t.Helper()
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative {
		t.Fatalf("got %s with %d answers (aa %v), want one A record:\n%v", dns.RcodeToString[r.Rcode], len(r.Answer), r.Authoritative, r)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok || a.A.String() != ip || a.Hdr.Ttl != ttl {
		t.Fatalf("got answer %v, want A %s with TTL %d", r.Answer[0], ip, ttl)
	}
}

// TestSummonAndIdleStop: a query boots the appliance and is answered only
// once it accepts; a connection right after the answer is served; warm
// queries answer at once; after 2×TTL idle it is powered off cleanly, and
// the next query boots it again with its data intact.
func TestSummonAndIdleStop(t *testing.T) {
	port := testutil.FreePort(t)
	s, _ := startServer(t, Options{IdleCheck: 50 * time.Millisecond},
		svcApp(t, "mail.home.test", port, "1s", "", "--delay", "400ms"))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if st := s.Status()[0]; st.State != Stopped {
		t.Fatalf("before any query: got %s, want stopped", st.State)
	}

	t0 := time.Now()
	r := query(t, s.DNSAddr(), "udp", "mail.home.test", dns.TypeA)
	cold := time.Since(t0)
	wantA(t, r, "127.0.0.1", 1)
	if cold < 400*time.Millisecond {
		t.Errorf("cold answer after %v, before the service listened (400ms)", cold)
	}
	c, rd, g := greet(t, addr)
	if g != "hello from testsvc (boot 1)" {
		t.Fatalf("greeting %q", g)
	}
	fmt.Fprint(c, "PUT first-note\r\n")
	if l, _ := rd.ReadString('\n'); strings.TrimSpace(l) != "OK" {
		t.Fatalf("PUT: %q", l)
	}

	t0 = time.Now()
	wantA(t, query(t, s.DNSAddr(), "udp", "mail.home.test", dns.TypeA), "127.0.0.1", 1)
	t.Logf("cold answer %v, warm answer %v", cold, time.Since(t0))
	st := waitState(t, s, "mail.home.test", Running, time.Second)
	if st.Connections != 1 || st.Boots != 1 || st.LastQuery.IsZero() {
		t.Errorf("status %+v: want 1 connection, 1 boot, a last query", st)
	}

	// An open connection keeps it up past 2×TTL.
	time.Sleep(2500 * time.Millisecond)
	waitState(t, s, "mail.home.test", Running, 0)
	c.Close()

	st = waitState(t, s, "mail.home.test", Stopped, 5*time.Second)
	data := s.cfg.Appliances[0].Data
	if n := readCount(t, filepath.Join(data, "clean-stops")); n != 1 {
		t.Fatalf("clean stops: got %d, want 1 (status %+v)", n, st)
	}

	wantA(t, query(t, s.DNSAddr(), "tcp", "mail.home.test", dns.TypeA), "127.0.0.1", 1)
	c, rd, g = greet(t, addr)
	defer c.Close()
	if g != "hello from testsvc (boot 2)" {
		t.Fatalf("greeting after the second boot: %q", g)
	}
	fmt.Fprint(c, "GET\r\n")
	if l, _ := rd.ReadString('\n'); strings.TrimSpace(l) != "first-note" {
		t.Fatalf("GET after a stop and a boot: got %q, want first-note", l)
	}
}

// TestBurst: 20 concurrent queries for a stopped appliance boot it once
// and all get the answer.
func TestBurst(t *testing.T) {
	port := testutil.FreePort(t)
	s, cfg := startServer(t, Options{}, svcApp(t, "burst.home.test", port, "30s", "", "--delay", "300ms"))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			netw := "udp"
			if i%2 == 1 {
				netw = "tcp"
			}
			m := new(dns.Msg)
			m.SetQuestion("burst.home.test.", dns.TypeA)
			r, _, err := (&dns.Client{Net: netw, Timeout: 15 * time.Second}).Exchange(m, s.DNSAddr())
			if err == nil && (r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1) {
				err = fmt.Errorf("got %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := readCount(t, filepath.Join(cfg.Appliances[0].Data, "boots")); n != 1 {
		t.Errorf("boots: got %d, want 1", n)
	}
	if st := s.Status()[0]; st.Boots != 1 || st.State != Running {
		t.Errorf("status %+v: want running after 1 boot", st)
	}
}

// TestConnectionDuringBoot: a connection to a stopped appliance's address
// is accepted at once (no refusal, no SYN retransmit), boots it, and is
// served once it is up.
func TestConnectionDuringBoot(t *testing.T) {
	port := testutil.FreePort(t)
	s, _ := startServer(t, Options{}, svcApp(t, "early.home.test", port, "30s", "", "--delay", "500ms"))
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatalf("connect during boot: %v", err)
	}
	defer c.Close()
	if d := time.Since(t0); d > 200*time.Millisecond {
		t.Errorf("connect took %v: want at once", d)
	}
	waitState(t, s, "early.home.test", Booting, time.Second)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "hello from testsvc (boot 1)") {
		t.Fatalf("greeting: %q, %v", buf[:n], err)
	}
	if d := time.Since(t0); d < 500*time.Millisecond {
		t.Errorf("greeting after %v, before the service listened", d)
	}
}

// TestFailures: a missing program, a crash, and a service that never
// listens give SERVFAIL (and a log line) for their names only; the
// server stays up and answers the others.
func TestFailures(t *testing.T) {
	log, lb := testLogBuf(t)
	missing := strings.Replace(svcApp(t, "missing.home.test", testutil.FreePort(t), "30s", ""), strconv.Quote(exePath()), `"/nonexistent/appliance"`, 1)
	s, _ := startServer(t, Options{Log: log, Backoff: 300 * time.Millisecond},
		missing,
		svcApp(t, "crash.home.test", testutil.FreePort(t), "30s", "", "--crash"),
		strings.Replace(svcApp(t, "never.home.test", testutil.FreePort(t), "30s", "", "--never"), "boot_timeout: 5s", "boot_timeout: 700ms", 1),
		svcApp(t, "good.home.test", testutil.FreePort(t), "30s", ""),
		fmt.Sprintf(`
  - name: noimage.home.test
    address: 127.0.0.1
    ports: [{name: imap, port: %d}]
    launcher: {kind: qemu, image: /nonexistent/image, kvm: off}
`, testutil.FreePort(t)),
	)
	for _, tc := range []struct{ name, log string }{
		{"missing.home.test", "/nonexistent/appliance"},
		{"crash.home.test", "exited before listening"},
		{"never.home.test", "did not listen on hello in time"},
		{"noimage.home.test", "image /nonexistent/image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := query(t, s.DNSAddr(), "udp", tc.name, dns.TypeA)
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("got %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
			}
			if !strings.Contains(lb.String(), tc.log) {
				t.Errorf("log lacks %q", tc.log)
			}
			// Within the back-off: SERVFAIL at once, without a boot.
			t0 := time.Now()
			if r := query(t, s.DNSAddr(), "udp", tc.name, dns.TypeA); r.Rcode != dns.RcodeServerFailure || time.Since(t0) > 200*time.Millisecond {
				t.Errorf("second query: %s after %v, want SERVFAIL at once", dns.RcodeToString[r.Rcode], time.Since(t0))
			}
			if st := waitState(t, s, tc.name, Failed, 0); st.LastError == "" {
				t.Errorf("status %+v has no last error", st)
			}
		})
	}
	if !strings.Contains(lb.String(), "waiting before the next boot") {
		t.Error("log does not say a query was refused during the back-off")
	}
	// After the back-off it is tried again (and fails again, longer).
	time.Sleep(400 * time.Millisecond)
	query(t, s.DNSAddr(), "udp", "crash.home.test", dns.TypeA)
	if st := waitState(t, s, "crash.home.test", Failed, 0); st.Failures != 2 {
		t.Errorf("crash loop: got %d failures, want 2", st.Failures)
	}
	wantA(t, query(t, s.DNSAddr(), "udp", "good.home.test", dns.TypeA), "127.0.0.1", 30)
}

func exePath() string { return testExe }

// TestCrashAfterBoot: an appliance that dies while running is noticed;
// the next query boots it again.
func TestCrashAfterBoot(t *testing.T) {
	port := testutil.FreePort(t)
	s, _ := startServer(t, Options{Backoff: time.Millisecond}, svcApp(t, "fragile.home.test", port, "30s", ""))
	wantA(t, query(t, s.DNSAddr(), "udp", "fragile.home.test", dns.TypeA), "127.0.0.1", 30)
	a := s.apps["fragile.home.test."]
	a.mu.Lock()
	p := a.inst.(*process)
	a.mu.Unlock()
	p.kill()
	st := waitState(t, s, "fragile.home.test", Failed, 5*time.Second)
	if !strings.Contains(st.LastError, "crashed") {
		t.Errorf("last error %q", st.LastError)
	}
	time.Sleep(10 * time.Millisecond)
	wantA(t, query(t, s.DNSAddr(), "udp", "fragile.home.test", dns.TypeA), "127.0.0.1", 30)
	_, _, g := greet(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if g != "hello from testsvc (boot 2)" {
		t.Errorf("greeting %q", g)
	}
}

// TestSuspend: with idle: suspend the process is stopped (SIGSTOP) when
// idle and continued by the next query, without a new boot.
func TestSuspend(t *testing.T) {
	port := testutil.FreePort(t)
	s, _ := startServer(t, Options{IdleCheck: 50 * time.Millisecond},
		svcApp(t, "nap.home.test", port, "1s", "    idle: suspend\n"))
	wantA(t, query(t, s.DNSAddr(), "udp", "nap.home.test", dns.TypeA), "127.0.0.1", 1)
	if st := waitState(t, s, "nap.home.test", Suspended, 5*time.Second); st.Spares != 0 {
		t.Errorf("suspended with %d spares", st.Spares)
	}
	noSparePools(t)
	wantA(t, query(t, s.DNSAddr(), "udp", "nap.home.test", dns.TypeA), "127.0.0.1", 1)
	waitState(t, s, "nap.home.test", Running, 0)
	c, _, g := greet(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	c.Close()
	if g != "hello from testsvc (boot 1)" {
		t.Errorf("greeting after resume: %q, want boot 1", g)
	}
}

// TestZone: SOA and NS at the apex, NXDOMAIN and NODATA, REFUSED outside
// the zones, forwarding to another server when configured.
func TestZone(t *testing.T) {
	s, _ := startServer(t, Options{}, svcApp(t, "app.sub.home.test", testutil.FreePort(t), "30s", ""))
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		ans   int
		want  string
	}{
		{"home.test", dns.TypeSOA, dns.RcodeSuccess, 1, "ns.home.test. hostmaster.home.test."},
		{"home.test", dns.TypeNS, dns.RcodeSuccess, 1, "NS\tns.home.test."},
		{"home.test", dns.TypeA, dns.RcodeSuccess, 0, ""},
		{"nothing.home.test", dns.TypeA, dns.RcodeNameError, 0, ""},
		{"sub.home.test", dns.TypeA, dns.RcodeSuccess, 0, ""},
		{"app.sub.home.test", dns.TypeAAAA, dns.RcodeSuccess, 0, ""},
		{"app.sub.home.test", dns.TypeMX, dns.RcodeSuccess, 0, ""},
		{"example.org", dns.TypeA, dns.RcodeRefused, 0, ""},
	} {
		for _, netw := range []string{"udp", "tcp"} {
			r := query(t, s.DNSAddr(), netw, tc.name, tc.qtype)
			if r.Rcode != tc.rcode || len(r.Answer) != tc.ans || (tc.ans > 0 && !strings.Contains(r.Answer[0].String(), tc.want)) {
				t.Errorf("%s %s over %s: got %s with %v, want %s with %d answers (%q)", tc.name, dns.TypeToString[tc.qtype], netw,
					dns.RcodeToString[r.Rcode], r.Answer, dns.RcodeToString[tc.rcode], tc.ans, tc.want)
			}
			if tc.rcode != dns.RcodeRefused && tc.ans == 0 && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Errorf("%s %s: negative answer without the SOA: %v", tc.name, dns.TypeToString[tc.qtype], r.Ns)
			}
		}
	}
	if st := s.Status()[0]; st.State != Stopped {
		t.Errorf("a query for other types booted the appliance: %s", st.State)
	}

	// A second server forwards other names to this one.
	cfg, err := ParseConfig([]byte("dns: 127.0.0.1:0\nforward: " + s.DNSAddr() + "\nzones: [{name: other.test}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := New(cfg, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Start(); err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	if r := query(t, fw.DNSAddr(), "udp", "home.test", dns.TypeSOA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("forwarded SOA: %v", r)
	}
}

// TestDig asks with Debian's dig (bind9-dnsutils), over UDP and TCP.
func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed: apt-get install -y bind9-dnsutils")
	}
	port := testutil.FreePort(t)
	s, _ := startServer(t, Options{}, svcApp(t, "dig.home.test", port, "30s", "", "--delay", "200ms"))
	host, p, _ := net.SplitHostPort(s.DNSAddr())
	for _, args := range [][]string{
		{"dig.home.test", "A", "+short"},
		{"dig.home.test", "A", "+short", "+tcp"},
	} {
		out, err := exec.Command(dig, append([]string{"@" + host, "-p", p, "+time=15", "+tries=1"}, args...)...).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "127.0.0.1" {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		c, _, g := greet(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		c.Close()
		if g != "hello from testsvc (boot 1)" {
			t.Errorf("greeting %q", g)
		}
	}
	out, err := exec.Command(dig, "@"+host, "-p", p, "+norec", "home.test", "SOA").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "status: NOERROR") || !strings.Contains(string(out), "flags: qr aa") {
		t.Errorf("dig SOA: %v\n%s", err, out)
	}
}
