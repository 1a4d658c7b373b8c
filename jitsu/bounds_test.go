package jitsu

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nymote/nymote/internal/testutil"
)

// gateLauncher boots when the test opens its gate: queries meanwhile wait
// for the boot. Its instance serves nothing (spare: off).
type gateLauncher struct {
	gate   chan struct{}
	starts chan struct{} // a value per Start called
}

func (l *gateLauncher) Start(ctx context.Context) (Instance, error) {
	l.starts <- struct{}{}
	select {
	case <-l.gate:
		return &gateInstance{done: make(chan struct{})}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type gateInstance struct {
	done chan struct{}
	once sync.Once
}

func (i *gateInstance) Addr(string) string { return "127.0.0.1:1" }
func (i *gateInstance) Stop(context.Context) error {
	i.once.Do(func() { close(i.done) })
	return nil
}
func (i *gateInstance) Done() <-chan struct{} { return i.done }
func (i *gateInstance) Err() error            { return nil }

// gateApp is the YAML of an appliance for a gateLauncher.
func gateApp(name string, port int) string {
	return fmt.Sprintf(`
  - name: %s
    address: 127.0.0.1
    ports: [{name: hello, port: %d}]
    spare: off
    boot_timeout: 1m
    launcher: {kind: process, command: [unused]}
`, name, port)
}

// udpClient sends queries from one UDP socket and reads their answers.
// Tests send at most a few dozen per socket, so that neither the server's
// nor the client's socket buffer drops any.
type udpClient struct {
	t    *testing.T
	c    *net.UDPConn
	id   uint16
	name map[uint16]string
}

func newUDPClient(t *testing.T, server string) *udpClient {
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpClient{t: t, c: c, name: map[uint16]string{}}
}

func (u *udpClient) send(name string, n int) {
	for range n {
		u.id++
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		m.Id = u.id
		b, _ := m.Pack()
		if _, err := u.c.Write(b); err != nil {
			u.t.Fatal(err)
		}
		u.name[m.Id] = dns.Fqdn(name)
	}
}

// read reads n answers and counts them by name and rcode.
func (u *udpClient) read(n int) map[string]int {
	got := map[string]int{}
	buf := make([]byte, 1500)
	u.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for range n {
		k, err := u.c.Read(buf)
		if err != nil {
			u.t.Fatalf("after %v answers: %v", got, err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:k]); err != nil {
			u.t.Fatal(err)
		}
		got[u.name[m.Id]+" "+dns.RcodeToString[m.Rcode]]++
	}
	return got
}

// waitPending waits until n queries wait for boots.
func waitPending(t *testing.T, s *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.pending.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d queries waiting, want %d", s.pending.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPendingQueriesBounded replays finding M8 of issue 21: queries for
// an appliance that boots are bounded per name and in total (beyond:
// SERVFAIL at once, and a count in the log), and the waiting ones hold no
// goroutine each; the boot answers them all.
func TestPendingQueriesBounded(t *testing.T) {
	gates := map[string]*gateLauncher{}
	var mu sync.Mutex
	opts := Options{MaxPendingPerName: 300, MaxPending: 400, IdleCheck: 20 * time.Millisecond,
		Launcher: func(a ApplianceConfig, _ *slog.Logger) (Launcher, error) {
			mu.Lock()
			defer mu.Unlock()
			g := &gateLauncher{gate: make(chan struct{}), starts: make(chan struct{}, 10)}
			gates[a.Name] = g
			return g, nil
		}}
	log, lb := testLogBuf(t)
	opts.Log = log
	s, _ := startServer(t, opts, gateApp("a.home.test", testutil.FreePort(t)), gateApp("b.home.test", testutil.FreePort(t)))

	// wait sends n queries for name, 25 per socket, each batch once
	// the previous one waits.
	var waiting []*udpClient
	pending := int64(0)
	wait := func(name string, n int) {
		for i := 0; i < n; i += 25 {
			u := newUDPClient(t, s.DNSAddr())
			u.send(name, 25)
			pending += 25
			waitPending(t, s, pending)
			waiting = append(waiting, u)
		}
	}
	refused := func(name string) {
		t.Helper()
		u := newUDPClient(t, s.DNSAddr())
		u.send(name, 50)
		if got := u.read(50); got[dns.Fqdn(name)+" SERVFAIL"] != 50 {
			t.Fatalf("beyond the bounds: got %v, want 50 SERVFAIL", got)
		}
	}

	before := runtime.NumGoroutine()
	wait("a.home.test", 300)
	if g := runtime.NumGoroutine() - before; g > 30 {
		t.Errorf("300 queries waiting for a boot hold %d more goroutines, want a handful", g)
	}
	refused("a.home.test") // beyond the bound per name
	wait("b.home.test", 100)
	refused("b.home.test") // beyond the total bound
	waitPending(t, s, 400)
	for _, name := range []string{"a.home.test.", "b.home.test."} {
		g := gates[name]
		<-g.starts // one boot, however many queries
		close(g.gate)
	}
	got := map[string]int{}
	for _, u := range waiting {
		for k, v := range u.read(25) {
			got[k] += v
		}
	}
	if got["a.home.test. NOERROR"] != 300 || got["b.home.test. NOERROR"] != 100 || len(got) != 2 {
		t.Fatalf("after the boots: got %v, want 300 and 100 answers", got)
	}
	waitPending(t, s, 0)
	for _, g := range gates {
		if n := len(g.starts); n != 0 {
			t.Errorf("%d more boots, want one per appliance", n)
		}
	}
	// The refusals are counted in the log, in one line per check.
	deadline := time.Now().Add(30 * time.Second)
	for {
		total := 0
		for _, l := range strings.Split(lb.String(), "\n") {
			if _, v, ok := strings.Cut(l, "too many waiting for boots or being forwarded\" count="); ok {
				var n int
				fmt.Sscan(v, &n)
				total += n
			}
		}
		if total == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log counts %d refused queries, want 100", total)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestForwardClients: with forward set, only queries from forward_clients
// (loopback by default) are forwarded; others are REFUSED (no open
// resolver).
func TestForwardClients(t *testing.T) {
	upstream, _ := startServer(t, Options{})
	for _, tc := range []struct {
		name, clients, from string
		want                int
	}{
		{"default, loopback", "", "127.0.0.1", dns.RcodeSuccess},
		{"listed address", "forward_clients: [127.0.0.2]\n", "127.0.0.2", dns.RcodeSuccess},
		{"listed network", "forward_clients: [127.0.0.0/30]\n", "127.0.0.3", dns.RcodeSuccess},
		{"not listed", "forward_clients: [127.0.0.2, 192.0.2.0/24]\n", "127.0.0.1", dns.RcodeRefused},
		{"not listed network", "forward_clients: [127.0.0.0/31]\n", "127.0.0.3", dns.RcodeRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte("dns: 127.0.0.1:0\nforward: " + upstream.DNSAddr() + "\n" + tc.clients + "zones: [{name: other.test}]\n"))
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(cfg, Options{Log: testLog(t)})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, netw := range []string{"udp", "tcp"} {
				m := new(dns.Msg)
				m.SetQuestion("home.test.", dns.TypeSOA)
				var local net.Addr = &net.UDPAddr{IP: net.ParseIP(tc.from)}
				if netw == "tcp" {
					local = &net.TCPAddr{IP: net.ParseIP(tc.from)}
				}
				c := &dns.Client{Net: netw, Timeout: 15 * time.Second, Dialer: &net.Dialer{LocalAddr: local}}
				r, _, err := c.Exchange(m, s.DNSAddr())
				if err != nil {
					t.Fatalf("%s: %v", netw, err)
				}
				if r.Rcode != tc.want {
					t.Errorf("%s from %s: got %s, want %s", netw, tc.from, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.want])
				}
			}
		})
	}
}
