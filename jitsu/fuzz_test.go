package jitsu

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzParseConfig: any input is a configuration or an error, never a
// panic; a configuration that parses has its defaults filled in and its
// invariants hold. Seeds: testdata/fuzz/FuzzParseConfig.
//
// make test runs it for 25000 inputs past its seeds (fuzz-short: 25000x).
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if len(c.Zones) == 0 || len(c.forwardClients) == 0 {
			t.Fatalf("parsed without zones or forward clients: %+v", c)
		}
		for _, a := range c.Appliances {
			if a.ProxyProtocol == nil || a.TTL <= 0 || a.BootTimeout <= 0 || a.Idle == "" || len(a.Ports) == 0 {
				t.Fatalf("appliance %q without its defaults: %+v", a.Name, a)
			}
			if c.zoneOf(a.Name) == nil {
				t.Fatalf("appliance %q is in no zone", a.Name)
			}
			for _, p := range a.Ports {
				if p.Port < 1 || p.Port > 65535 {
					t.Fatalf("appliance %q: port %d", a.Name, p.Port)
				}
			}
		}
	})
}

// fuzzWriter is a dns.ResponseWriter that hands the replies to a channel.
type fuzzWriter struct {
	remote  net.Addr
	replies chan *dns.Msg
}

func (w *fuzzWriter) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *fuzzWriter) RemoteAddr() net.Addr { return w.remote }
func (w *fuzzWriter) WriteMsg(m *dns.Msg) error {
	w.replies <- m
	return nil
}
func (w *fuzzWriter) Write(b []byte) (int, error) { panic("Write: jitsu writes messages") }
func (w *fuzzWriter) Close() error                { return nil }
func (w *fuzzWriter) TsigStatus() error           { return nil }
func (w *fuzzWriter) TsigTimersOnly(bool)         {}
func (w *fuzzWriter) Hijack()                     {}

// instantLauncher boots at once an instance that serves nothing.
type instantLauncher struct{}

func (instantLauncher) Start(context.Context) (Instance, error) {
	return &gateInstance{done: make(chan struct{})}, nil
}

// FuzzServeDNS: any query that parses (miekg/dns drops what does not)
// gets exactly one answer, with its ID, that packs, and over UDP fits
// what the client can take. Seeds: testdata/fuzz/FuzzServeDNS (the first
// byte picks UDP or TCP and the client's address; the rest is the query).
//
// make test runs it for 40000 inputs past its seeds (fuzz-short: 40000x).
func FuzzServeDNS(f *testing.F) {
	cfg, err := ParseConfig([]byte(`dns: 127.0.0.1:0
forward: 127.0.0.1:9
forward_clients: [192.0.2.0/24]
zones: [{name: home.test}, {name: sub.home.test, ttl: 5s}]
appliances:
  - name: a.home.test
    address: 127.0.0.1
    ports: [{name: p, port: 1}]
    spare: off
    launcher: {kind: process, command: [unused]}
  - name: six.sub.home.test
    address: "::1"
    ports: [{name: p, port: 1}]
    spare: off
    launcher: {kind: process, command: [unused]}
`))
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler),
		Launcher: func(ApplianceConfig, *slog.Logger) (Launcher, error) { return instantLauncher{}, nil }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	m := new(dns.Msg)
	m.SetQuestion("a.home.test.", dns.TypeA)
	b, _ := m.Pack()
	f.Add(append([]byte{0}, b...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 1 {
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(b[1:]); err != nil {
			return
		}
		// Not forwarded: the clients are not in forward_clients
		// (192.0.2.0/24), whose queries would go to a resolver.
		w := &fuzzWriter{replies: make(chan *dns.Msg, 2)}
		ip := net.IPv4(127, 0, 0, 1)
		if b[0]&2 != 0 {
			ip = net.IPv6loopback
		}
		if b[0]&1 == 0 {
			w.remote = &net.UDPAddr{IP: ip, Port: 5353}
		} else {
			w.remote = &net.TCPAddr{IP: ip, Port: 5353}
		}
		s.serveDNS(w, r)
		var m *dns.Msg
		select {
		case m = <-w.replies:
		case <-time.After(30 * time.Second):
			t.Fatal("no answer")
		}
		if m.Id != r.Id {
			t.Fatalf("answer ID %d, want the query's %d", m.Id, r.Id)
		}
		packed, err := m.Pack()
		if err != nil {
			t.Fatalf("the answer does not pack: %v\n%v", err, m)
		}
		if _, udp := w.remote.(*net.UDPAddr); udp {
			size := dns.MinMsgSize
			if o := r.IsEdns0(); o != nil {
				size = max(int(o.UDPSize()), size)
			}
			if len(packed) > size {
				t.Fatalf("a %d-byte answer over UDP, the client takes %d", len(packed), size)
			}
		}
		if m.Rcode == dns.RcodeRefused && len(r.Question) == 1 && dns.IsSubDomain("home.test.", dns.CanonicalName(r.Question[0].Name)) &&
			r.Question[0].Qclass == dns.ClassINET && r.Opcode == dns.OpcodeQuery {
			t.Fatalf("a query in the zones was refused: %v", r)
		}
		select {
		case m2 := <-w.replies:
			t.Fatalf("a second answer: %v", m2)
		default:
		}
	})
}
