package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/apps/mail/queue"
)

// dnsServer answers MX for a.test and b.test (mx.a.test, mx.b.test) and A
// for those hosts (127.0.0.1), and returns a resolver that asks it.
func dnsServer(t *testing.T) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		for _, q := range r.Question {
			name := strings.ToLower(q.Name)
			switch {
			case q.Qtype == dns.TypeMX && (name == "a.test." || name == "b.test."):
				m.Answer = append(m.Answer, &dns.MX{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 60}, Preference: 10, Mx: "mx." + name})
			case q.Qtype == dns.TypeA && strings.HasPrefix(name, "mx."):
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP("127.0.0.1")})
			case q.Qtype == dns.TypeAAAA && strings.HasPrefix(name, "mx."):
			default:
				m.Rcode = dns.RcodeNameError
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

func submit(t *testing.T, addr, user, from string, to []string, msg string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, testPassword)); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
}

// TestTwoServers: alice@a.test submits to bob@b.test; a.test's queue finds
// b.test's MX in the test DNS and delivers; bob reads it over IMAP. Then
// with bob's server down the message waits in the queue and goes out when
// it is back; and mail to an unknown user at b.test bounces to alice.
func TestTwoServers(t *testing.T) {
	res := dnsServer(t)
	stA := newStore(t, "alice")
	stB := newStore(t, "bob")
	b := startServer(t, stB, mailsvc.Config{Domains: []string{"b.test"}, InsecureAuth: true}, nil)
	_, bPort, _ := net.SplitHostPort(b.addrs["smtp"])
	a := startServer(t, stA, mailsvc.Config{Domains: []string{"a.test"}, InsecureAuth: true, Resolver: res, RemotePort: bPort,
		Backoff: []time.Duration{200 * time.Millisecond}}, nil)

	submit(t, a.addrs["submission"], "alice", "alice@a.test", []string{"bob@b.test"}, "From: alice@a.test\r\nTo: bob@b.test\r\nSubject: first\r\n\r\nhi bob\r\n")
	waitFor(t, "delivery to bob", 20*time.Second, func() bool { return len(b.messages(t, "bob", "INBOX")) == 1 })
	if got := b.messages(t, "bob", "INBOX")[0]; !strings.Contains(got, "hi bob") || !strings.Contains(got, "Received: from a.test") {
		t.Errorf("bob got %q", got)
	}
	entries := func() []queue.Entry {
		es, err := queue.List(stA, nil)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	waitFor(t, "an empty queue", 10*time.Second, func() bool { return len(entries()) == 0 })

	// Bob goes down; the message waits.
	bAddrs := b.addrs
	b.stop()
	submit(t, a.addrs["submission"], "alice", "alice@a.test", []string{"bob@b.test"}, "From: alice@a.test\r\nTo: bob@b.test\r\nSubject: second\r\n\r\nwhile you were away\r\n")
	waitFor(t, "a failed attempt", 10*time.Second, func() bool {
		es := entries()
		return len(es) == 1 && es[0].Attempts >= 1
	})
	// Bob comes back on the same ports.
	b2 := startServer(t, stB, mailsvc.Config{Domains: []string{"b.test"}, InsecureAuth: true}, bAddrs)
	waitFor(t, "delivery after bob is back", 20*time.Second, func() bool { return len(b2.messages(t, "bob", "INBOX")) == 2 })
	waitFor(t, "an empty queue", 10*time.Second, func() bool { return len(entries()) == 0 })

	// An unknown user at b.test: b refuses with 550, a bounces to alice.
	submit(t, a.addrs["submission"], "alice", "alice@a.test", []string{"nobody@b.test"}, "From: alice@a.test\r\nTo: nobody@b.test\r\nSubject: lost\r\n\r\nto no one\r\n")
	waitFor(t, "a bounce", 20*time.Second, func() bool {
		for _, m := range a.messages(t, "alice", "INBOX") {
			if strings.Contains(m, "Undelivered Mail Returned to Sender") && strings.Contains(m, "nobody@b.test") && strings.Contains(m, "Subject: lost") {
				return true
			}
		}
		return false
	})
}
