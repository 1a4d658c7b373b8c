//go:build linux

package netstack_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
	"go.uber.org/goleak"
	"golang.org/x/net/nettest"
)

// TestConnConformance runs x/net/nettest's net.Conn conformance tests
// (deadlines, concurrent use, close semantics) on a connection between a
// netstack and the kernel.
func TestConnConformance(t *testing.T) {
	p := newPair(t)
	ln, err := p.st.Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		type result struct {
			c   net.Conn
			err error
		}
		accepted := make(chan result, 1)
		go func() {
			c, err := ln.Accept()
			accepted <- result{c, err}
		}()
		c2, err = netstacktest.Dial(p.nsK, "tcp", netip.AddrPortFrom(p.netstack4, 9000).String(), 5*time.Second)
		if err != nil {
			return nil, nil, nil, err
		}
		r := <-accepted
		if r.err != nil {
			c2.Close()
			return nil, nil, nil, r.err
		}
		return r.c, c2, func() { r.c.Close(); c2.Close() }, nil
	})
}

// TestClosedErrors checks the errors after Close that callers branch on.
func TestClosedErrors(t *testing.T) {
	p := newPair(t)
	ln, err := p.st.Listen("tcp", ":9001")
	if err != nil {
		t.Fatal(err)
	}
	acceptErr := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		acceptErr <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Accept block
	ln.Close()
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept during Close: %v, want net.ErrClosed", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if err := ln.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}

	pc, err := p.st.ListenPacket("udp4", ":9001")
	if err != nil {
		t.Fatal(err)
	}
	pc.Close()
	if _, _, err := pc.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after Close: %v, want net.ErrClosed", err)
	}

	// Refused connections report ECONNREFUSED, as host sockets do.
	_, err = p.st.Dial("tcp", netip.AddrPortFrom(p.kernel4, 1).String())
	if err == nil || !isRefused(err) {
		t.Errorf("Dial to a closed port: %v, want connection refused", err)
	}

	// A listener on a port in use fails.
	ln2, err := p.st.Listen("tcp", ":9002")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if l, err := p.st.Listen("tcp", ":9002"); err == nil {
		l.Close()
		t.Errorf("second Listen on :9002 succeeded")
	}
}

func TestBadArguments(t *testing.T) {
	p := newPair(t)
	tests := []struct {
		name string
		f    func() error
	}{
		{"listen unknown network", func() error { _, err := p.st.Listen("unix", "/x"); return err }},
		{"listen no port", func() error { _, err := p.st.Listen("tcp", "10.77.0.2"); return err }},
		{"listen name", func() error { _, err := p.st.Listen("tcp", "example.org:80"); return err }},
		{"listen family mismatch", func() error { _, err := p.st.Listen("tcp4", "[fd77::2]:80"); return err }},
		{"listen address not ours", func() error { _, err := p.st.Listen("tcp", "10.77.0.9:80"); return err }},
		{"listen packet unknown network", func() error { _, err := p.st.ListenPacket("ip4:1", ":0"); return err }},
		{"dial bad port", func() error { _, err := p.st.Dial("tcp", "10.77.0.1:http-ish"); return err }},
		{"dial unknown network", func() error { _, err := p.st.Dial("sctp", "10.77.0.1:1"); return err }},
		{"dial name without DNS", func() error { _, err := p.st.Dial("tcp", "example.org:80"); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.f(); err == nil {
				t.Errorf("got no error, want one")
			}
		})
	}
}

// TestCloseLeavesNoGoroutines closes a busy stack: a blocked Accept, an
// established connection with a blocked Read, a DHCP client that finds no
// server. Close must unblock them all and leave no goroutine behind.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	link, _, nsK, _, _ := newVeth(t)
	st, err := netstack.New(netstack.Options{Link: link, Logger: testLogger(t), IPv6: []netip.Prefix{netip.MustParsePrefix("fd77::2/64")}})
	if err != nil {
		t.Fatal(err)
	}
	netstacktest.Run(t, "ip", "-n", nsK, "addr", "add", "fd77::1/64", "dev", "lo")

	ln, err := st.Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	acceptErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		acceptErr <- err
	}()
	// A connection to itself, through the stack.
	ln2, err := st.Listen("tcp", "[fd77::2]:9001")
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.Dial("tcp", "[fd77::2]:9001")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln2.Accept()
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		readErr <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := st.WaitIPv4(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitIPv4 with no DHCP server: %v, want deadline exceeded; addrs %v", err, st.Addrs())
	}

	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept across stack Close: %v, want net.ErrClosed", err)
	}
	if err := <-readErr; err == nil {
		t.Errorf("Read across stack Close: no error")
	}
	c.Close()
	s.Close()
	if _, err := st.Listen("tcp", ":9002"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Listen after Close: %v, want net.ErrClosed", err)
	}
	if _, err := st.WaitIPv4(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WaitIPv4 after Close: %v, want net.ErrClosed", err)
	}
	if err := st.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
