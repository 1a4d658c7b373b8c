//go:build linux

package netstack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/nymote/nymote/netstack/netstacktest"
)

// echo serves ln, copying each connection's input back until EOF and then
// closing it.
func echo(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func TestKernelReachesNetstackTCP(t *testing.T) {
	p := newPair(t)
	echoBoth(t, p, bytes.Repeat([]byte("nymote "), 100_000), 20*time.Second) // several windows
}

// echoBoth serves a TCP echo on the netstack's port 7 and, over IPv4 and
// IPv6, has a kernel client send msg, half-close, and get back exactly msg
// within timeout.
func echoBoth(t *testing.T, p *pair, msg []byte, timeout time.Duration) {
	t.Helper()
	ln, err := p.st.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echo(ln)

	for _, addr := range []netip.Addr{p.netstack4, p.netstack6} {
		t.Run(addr.String(), func(t *testing.T) {
			var c net.Conn
			err := retry(5*time.Second, func() error {
				var err error
				c, err = netstacktest.Dial(p.nsK, "tcp", netip.AddrPortFrom(addr, 7).String(), time.Second)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go func() {
				c.Write(msg)
				c.(*net.TCPConn).CloseWrite()
			}()
			c.SetDeadline(time.Now().Add(timeout))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echoed %d bytes, want %d equal bytes", len(got), len(msg))
			}
		})
	}
}

func TestKernelReachesNetstackHTTP(t *testing.T) {
	p := newPair(t)
	ln, err := p.st.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from %s", r.RemoteAddr, r.Host)
	})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		srv.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netstacktest.Dial(p.nsK, network, addr, 5*time.Second)
		},
		DisableKeepAlives: true,
	}}
	for _, host := range []string{p.netstack4.String(), "[" + p.netstack6.String() + "]"} {
		var body []byte
		err := retry(5*time.Second, func() error {
			resp, err := client.Get("http://" + host + "/")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err = io.ReadAll(resp.Body)
			return err
		})
		if err != nil {
			t.Fatalf("GET %s: %v", host, err)
		}
		if want := "from " + host; !bytes.HasSuffix(body, []byte(want)) {
			t.Errorf("GET %s: body %q, want suffix %q", host, body, want)
		}
	}
}

// TestNetstackDialsKernel dials the kernel on the link, and beyond it
// through the default routes (Options.Gateway4, Gateway6) to addresses
// the kernel has on its loopback.
func TestNetstackDialsKernel(t *testing.T) {
	p := newPair(t)
	remote4, remote6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	netstacktest.Run(t, "ip", "-n", p.nsK, "addr", "add", remote4.String()+"/32", "dev", "lo")
	netstacktest.Run(t, "ip", "-n", p.nsK, "addr", "add", remote6.String()+"/128", "dev", "lo")
	for _, tc := range []struct {
		name, network string
		addr          netip.Addr
	}{
		{"IPv4 on link", "tcp4", p.kernel4},
		{"IPv6 on link", "tcp6", p.kernel6},
		{"IPv6 link-local", "tcp6", netip.Addr{}},
		{"IPv4 via gateway", "tcp4", remote4},
		{"IPv6 via gateway", "tcp6", remote6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := netstacktest.Listen(p.nsK, tc.network, ":8080")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				fmt.Fprintf(c, "hello %s", c.RemoteAddr())
			}()
			addr := tc.addr
			if !addr.IsValid() {
				addr = kernelLinkLocal(t, p)
			}
			var c net.Conn
			err = retry(5*time.Second, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				c, err = p.st.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, 8080).String())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			// The kernel names a link-local peer with its zone.
			if i, j := bytes.IndexByte(got, '%'), bytes.IndexByte(got, ']'); i > 0 && j > i {
				got = append(got[:i:i], got[j:]...)
			}
			if want := "hello " + c.LocalAddr().String(); string(got) != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestPing(t *testing.T) {
	p := newPair(t)
	netstacktest.NeedCommand(t, "ping", "iputils-ping")
	for _, tc := range []struct {
		name             string
		netstack, kernel netip.Addr
	}{
		{"IPv4", p.netstack4, p.kernel4},
		{"IPv6", p.netstack6, p.kernel6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := retry(5*time.Second, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_, err := p.st.Ping(ctx, tc.kernel)
				return err
			})
			if err != nil {
				t.Errorf("netstack pings kernel: %v", err)
			}
			// ping retries by itself within -w.
			out, err := netstacktest.CommandNS(context.Background(), p.nsK, "ping", "-c", "1", "-w", "5", tc.netstack.String()).CombinedOutput()
			if err != nil {
				t.Errorf("kernel pings netstack: %v\n%s", err, out)
			}
		})
	}
}

func TestUDP(t *testing.T) {
	p := newPair(t)
	pc, err := p.st.ListenPacket("udp", ":5353")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("re: "), buf[:n]...), from)
		}
	}()
	for _, addr := range []netip.Addr{p.netstack4, p.netstack6} {
		err := retry(5*time.Second, func() error {
			c, err := netstacktest.Dial(p.nsK, "udp", netip.AddrPortFrom(addr, 5353).String(), time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
			buf := make([]byte, 100)
			n, err := c.Read(buf)
			if err != nil {
				return err
			}
			if got := string(buf[:n]); got != "re: ping" {
				return fmt.Errorf("got %q, want %q", got, "re: ping")
			}
			return nil
		})
		if err != nil {
			t.Errorf("UDP to %s: %v", addr, err)
		}
	}
}

// kernelLinkLocal returns the kernel's IPv6 link-local address on its
// veth end.
func kernelLinkLocal(t *testing.T, p *pair) netip.Addr {
	t.Helper()
	var addr netip.Addr
	err := netstacktest.Do(p.nsK, func() error {
		ifc, err := net.InterfaceByName(p.ifK)
		if err != nil {
			return err
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsLinkLocalUnicast() && ipn.IP.To4() == nil {
				addr, _ = netip.AddrFromSlice(ipn.IP)
			}
		}
		return nil
	})
	if err != nil || !addr.IsValid() {
		t.Fatalf("no IPv6 link-local address on %s: %v", p.ifK, err)
	}
	return addr
}
