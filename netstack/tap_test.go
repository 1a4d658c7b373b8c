//go:build linux

package netstack_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
)

// TestTAP serves HTTP on a netstack over a TAP device and fetches it with
// the kernel on the TAP device's host side. The device lives in a fresh
// namespace, so nothing leaks into the host's.
func TestTAP(t *testing.T) {
	netstacktest.NeedRoot(t)
	if _, err := netstack.ParseSpec("tap:x"); err != nil {
		t.Fatal(err)
	}
	ns := netstacktest.NewNS(t)
	const name = "nymotetap0"
	var link *netstack.Link
	err := netstacktest.Do(ns, func() error {
		var err error
		link, err = netstack.OpenLink("tap:" + name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if link.Kind() != netstack.KindTAP || link.Name() != name || link.MTU() != 1500 {
		t.Errorf("link kind %q name %q MTU %d, want tap %s 1500", link.Kind(), link.Name(), link.MTU(), name)
	}
	netstacktest.Run(t, "ip", "-n", ns, "addr", "add", "10.79.0.1/24", "dev", name)
	st, err := netstack.New(netstack.Options{
		Link:   link,
		Logger: testLogger(t),
		IPv4:   netip.MustParsePrefix("10.79.0.2/24"),
		NoDHCP: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	ln, err := st.Listen("tcp4", "10.79.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "served over tap")
	})}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netstacktest.Dial(ns, network, addr, 5*time.Second)
		},
		DisableKeepAlives: true,
	}}
	var body []byte
	err = retry(5*time.Second, func() error {
		resp, err := client.Get("http://10.79.0.2/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != "served over tap" {
		t.Errorf("body %q, want %q", body, "served over tap")
	}
	// The device goes away with the stack: nothing else holds it open.
	st.Close()
	if out, err := netstacktest.CommandNS(context.Background(), ns, "ip", "link", "show", name).CombinedOutput(); err == nil {
		t.Errorf("TAP device %s still exists after Close:\n%s", name, out)
	}
}

// TestOpenPacketErrors checks that OpenPacket refuses interfaces it must
// not take over.
func TestOpenPacketErrors(t *testing.T) {
	netstacktest.NeedRoot(t)
	ns := netstacktest.NewNS(t)
	netstacktest.Run(t, "ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	netstacktest.Run(t, "ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", "d0")
	netstacktest.Run(t, "ip", "-n", ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1")
	netstacktest.Run(t, "ip", "-n", ns, "addr", "add", "2001:db8::1/64", "dev", "e0", "nodad")
	tests := []struct {
		name, ifname string
		wantIs       error
	}{
		{"kernel has an address", "d0", netstack.ErrInterfaceInUse},
		{"kernel has an IPv6 address", "e0", netstack.ErrInterfaceInUse},
		{"no such interface", "nosuch0", nil},
		{"bad name", "a/b", nil},
		{"loopback (not Ethernet)", "lo", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := netstacktest.Do(ns, func() error {
				l, err := netstack.OpenPacket(tc.ifname)
				if err == nil {
					l.Close()
				}
				return err
			})
			if err == nil {
				t.Fatalf("OpenPacket(%q) succeeded", tc.ifname)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("OpenPacket(%q) = %v, want %v", tc.ifname, err, tc.wantIs)
			}
		})
	}
}
