//go:build linux

package signpostbench

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
	"github.com/nymote/nymote/signpost"
	"github.com/nymote/nymote/signpost/tunnel"
)

const total = 64 << 20 // bytes per upload

// sink accepts connections, reads each to EOF and answers one byte.
func sink(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(io.Discard, c)
			c.Write([]byte{1})
		}()
	}
}

// wgQuickUp brings up the wg-quick configuration conf in namespace ns as
// interface ifname (userspace wireguard-go: its control socket is named by
// the interface, in /var/run/wireguard, shared by every namespace), until
// the benchmark ends.
func wgQuickUp(b *testing.B, ns, ifname, conf string) {
	path := filepath.Join(b.TempDir(), ifname+".conf")
	os.WriteFile(path, []byte(conf), 0o600)
	env := append(os.Environ(), "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1")
	up := exec.Command("ip", "netns", "exec", ns, "wg-quick", "up", path)
	up.Env = env
	if out, err := up.CombinedOutput(); err != nil {
		b.Fatalf("wg-quick up: %v\n%s", err, out)
	}
	b.Cleanup(func() {
		down := exec.Command("ip", "netns", "exec", ns, "wg-quick", "down", path)
		down.Env = env
		down.Run()
	})
}

// pair makes a hub's data directory and a laptop's that joined it, and
// returns them.
func pair(b *testing.B, endpoint string) (hub, laptop string) {
	hub, laptop = b.TempDir(), b.TempDir()
	inv, err := signpost.Issue(hub, "laptop", endpoint, "", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(signpost.JoinHandler(hub, nil))
	defer srv.Close()
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	if _, err := signpost.Join(context.Background(), laptop, inv, "", dial); err != nil {
		b.Fatal(err)
	}
	return hub, laptop
}

// hubConf is a wg-quick configuration for the hub itself on the kernel
// (the baseline).
func hubConf(b *testing.B, hub string) string {
	id, _ := signpost.LoadIdentity(hub)
	st, _ := signpost.ReadState(hub)
	v4, _ := st.Addrs(id.WG)
	conf := fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = %s/16\nListenPort = 51820\n", base64.StdEncoding.EncodeToString(id.WGPrivate[:]), v4)
	for _, p := range st.Peers {
		pv4, _ := st.Addrs(p.WG)
		conf += fmt.Sprintf("\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\n", p.WG, pv4)
	}
	return conf
}

type setup struct {
	nsL    string
	server netip.Addr // the server's tunnel address
}

// appliance: the server is a netstack with the in-appliance tunnel.
func appliance(b *testing.B) setup {
	nsS, nsL := netstacktest.NewNS(b), netstacktest.NewNS(b)
	ifS, ifL := netstacktest.Veth(b, nsS, nsL)
	netstacktest.DisableTXChecksumOffload(nsL, ifL)
	netstacktest.Run(b, "ip", "-n", nsL, "addr", "add", "10.9.0.1/24", "dev", ifL)
	netstacktest.Run(b, "ip", "-n", nsL, "link", "set", ifL, "up")
	var link *netstack.Link
	if err := netstacktest.Do(nsS, func() error {
		var err error
		link, err = netstack.OpenPacket(ifS)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	st, err := netstack.New(netstack.Options{Link: link, IPv4: netip.MustParsePrefix("10.9.0.2/24"), NoDHCP: true, NoSLAAC: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	hub, laptop := pair(b, "10.9.0.2:51820")
	n, err := tunnel.Start(tunnel.Config{Dir: hub, Stack: st})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	ln, err := st.Listen("tcp", ":9000")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go sink(ln)
	conf, err := signpost.WGQuick(laptop)
	if err != nil {
		b.Fatal(err)
	}
	wgQuickUp(b, nsL, "nyL", conf)
	v4, _ := n.Addrs()
	return setup{nsL: nsL, server: v4}
}

// kernel: the server is the kernel's stack with wireguard-go (wg-quick),
// in the same kind of namespaces.
func kernel(b *testing.B) setup {
	nsS, nsL := netstacktest.NewNS(b), netstacktest.NewNS(b)
	ifS, ifL := netstacktest.Veth(b, nsS, nsL)
	netstacktest.Run(b, "ip", "-n", nsL, "addr", "add", "10.9.0.1/24", "dev", ifL)
	netstacktest.Run(b, "ip", "-n", nsL, "link", "set", ifL, "up")
	netstacktest.Run(b, "ip", "-n", nsS, "addr", "add", "10.9.0.2/24", "dev", ifS)
	netstacktest.Run(b, "ip", "-n", nsS, "link", "set", ifS, "up")
	hub, laptop := pair(b, "10.9.0.2:51820")
	wgQuickUp(b, nsS, "nyS", hubConf(b, hub))
	conf, err := signpost.WGQuick(laptop)
	if err != nil {
		b.Fatal(err)
	}
	wgQuickUp(b, nsL, "nyL", conf)
	id, _ := signpost.LoadIdentity(hub)
	st, _ := signpost.ReadState(hub)
	v4, _ := st.Addrs(id.WG)
	ln, err := netstacktest.Listen(nsS, "tcp", ":9000")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go sink(ln)
	return setup{nsL: nsL, server: v4}
}

func dial(b *testing.B, s setup) net.Conn {
	var c net.Conn
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		c, err = netstacktest.Dial(s.nsL, "tcp", netip.AddrPortFrom(s.server, 9000).String(), 5*time.Second)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func upload(b *testing.B, s setup, n int) {
	c := dial(b, s)
	defer c.Close()
	buf := make([]byte, 64<<10)
	for sent := 0; sent < n; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	var one [1]byte
	if _, err := io.ReadFull(c, one[:]); err != nil {
		b.Fatal(err)
	}
}

func connect(b *testing.B, s setup) {
	c := dial(b, s)
	c.(*net.TCPConn).CloseWrite()
	var one [1]byte
	if _, err := io.ReadFull(c, one[:]); err != nil {
		b.Fatal(err)
	}
	c.Close()
}

func need(b *testing.B) {
	netstacktest.NeedRoot(b)
	netstacktest.NeedCommand(b, "wg-quick", "wireguard-tools")
	netstacktest.NeedCommand(b, "wireguard-go", "wireguard-go")
}

func BenchmarkUpload(b *testing.B) {
	need(b)
	for _, c := range []struct {
		name string
		f    func(*testing.B) setup
	}{{"appliance", appliance}, {"wireguard-go", kernel}} {
		b.Run(c.name, func(b *testing.B) {
			s := c.f(b)
			upload(b, s, 1<<20) // handshake and warm-up
			b.SetBytes(total)
			b.ResetTimer()
			for range b.N {
				upload(b, s, total)
			}
		})
	}
}

func BenchmarkConnect(b *testing.B) {
	need(b)
	for _, c := range []struct {
		name string
		f    func(*testing.B) setup
	}{{"appliance", appliance}, {"wireguard-go", kernel}} {
		b.Run(c.name, func(b *testing.B) {
			s := c.f(b)
			connect(b, s)
			b.ResetTimer()
			for range b.N {
				connect(b, s)
			}
		})
	}
}
