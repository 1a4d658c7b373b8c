//go:build linux

package tunnel_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/internal/testutil"

	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
	"github.com/nymote/nymote/signpost"
	"github.com/nymote/nymote/signpost/tunnel"
	"github.com/nymote/nymote/store"
)

// testLogger returns a logger that writes to t.Log until the test ends.
func testLogger(t testing.TB) *slog.Logger { return testutil.Logger(t, slog.LevelInfo) }

// waitFor calls f until it succeeds, failing the test with f's last error
// after limit (an upper bound for a hung test, not a timing assumption).
func waitFor(t *testing.T, limit time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// netstackIn opens a netstack on a veth between namespaces ns (the
// netstack's end) and router (the kernel's end, with address gw on the
// subnet of addr).
func netstackIn(t *testing.T, ns, router string, addr netip.Prefix, gw netip.Addr) *netstack.Stack {
	t.Helper()
	ifN, ifK := netstacktest.Veth(t, ns, router)
	if err := netstacktest.DisableTXChecksumOffload(router, ifK); err != nil {
		t.Fatal(err)
	}
	netstacktest.Run(t, "ip", "-n", router, "addr", "add", netip.PrefixFrom(gw, addr.Bits()).String(), "dev", ifK)
	netstacktest.Run(t, "ip", "-n", router, "link", "set", ifK, "up")
	var link *netstack.Link
	if err := netstacktest.Do(ns, func() error {
		var err error
		link, err = netstack.OpenPacket(ifN)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	st, err := netstack.New(netstack.Options{Link: link, Logger: testLogger(t), IPv4: addr, Gateway4: gw, NoDHCP: true, NoSLAAC: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// natRouter makes namespace nat a NAT router: its WAN end faces the
// internet namespace inet (wan on the internet side, wanGW there), and it
// masquerades what it forwards out of it (nftables).
func natRouter(t *testing.T, nat, inet string, wan netip.Prefix, wanGW netip.Addr) {
	t.Helper()
	ifW, ifI := netstacktest.Veth(t, nat, inet)
	netstacktest.Run(t, "ip", "-n", inet, "addr", "add", netip.PrefixFrom(wanGW, wan.Bits()).String(), "dev", ifI)
	netstacktest.Run(t, "ip", "-n", inet, "link", "set", ifI, "up")
	netstacktest.Run(t, "ip", "-n", nat, "addr", "add", wan.String(), "dev", ifW)
	netstacktest.Run(t, "ip", "-n", nat, "link", "set", ifW, "up")
	netstacktest.Run(t, "ip", "-n", nat, "route", "add", "default", "via", wanGW.String())
	netstacktest.RunNS(t, nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	rules := fmt.Sprintf("table ip nat {\n chain post {\n  type nat hook postrouting priority srcnat;\n  oifname %q masquerade\n }\n}\n", ifW)
	f := filepath.Join(t.TempDir(), "nat.nft")
	os.WriteFile(f, []byte(rules), 0o600)
	netstacktest.RunNS(t, nat, "nft", "-f", f)
}

// greeter serves a one-line greeting on ln, as an IMAP server greets.
func greeter(ln net.Listener, line string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s\r\n", line)
		c.Close()
	}
}

func readGreeting(dial func() (net.Conn, error)) (string, error) {
	c, err := dial()
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestRelayThroughHub builds three sites: node A with a public address,
// node B behind a NAT, and a laptop L behind another NAT with stock
// WireGuard (wg-quick over wireguard-go: this kernel may have no
// WireGuard module). B and L join A's network with invitations; L reaches
// a service on B's netstack by B's tunnel address, relayed by A; after A
// revokes B, B can no longer connect, and its handshakes are refused.
func TestRelayThroughHub(t *testing.T) {
	netstacktest.NeedRoot(t)
	netstacktest.NeedCommand(t, "nft", "nftables")
	netstacktest.NeedCommand(t, "wg-quick", "wireguard-tools")
	netstacktest.NeedCommand(t, "wireguard-go", "wireguard-go")

	inet := netstacktest.NewNS(t)
	netstacktest.RunNS(t, inet, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	nsA, natB, nsB, natL, nsL := netstacktest.NewNS(t), netstacktest.NewNS(t), netstacktest.NewNS(t), netstacktest.NewNS(t), netstacktest.NewNS(t)

	// A: public, 198.51.100.2.
	stA := netstackIn(t, nsA, inet, netip.MustParsePrefix("198.51.100.2/24"), netip.MustParseAddr("198.51.100.1"))
	// B: 10.1.0.2 behind NAT router natB (203.0.113.2 outside).
	natRouter(t, natB, inet, netip.MustParsePrefix("203.0.113.2/24"), netip.MustParseAddr("203.0.113.1"))
	stB := netstackIn(t, nsB, natB, netip.MustParsePrefix("10.1.0.2/24"), netip.MustParseAddr("10.1.0.1"))
	// L: the kernel's stack at 10.2.0.2 behind natL (192.0.2.2 outside).
	natRouter(t, natL, inet, netip.MustParsePrefix("192.0.2.2/24"), netip.MustParseAddr("192.0.2.1"))
	ifL, ifLR := netstacktest.Veth(t, nsL, natL)
	netstacktest.Run(t, "ip", "-n", natL, "addr", "add", "10.2.0.1/24", "dev", ifLR)
	netstacktest.Run(t, "ip", "-n", natL, "link", "set", ifLR, "up")
	netstacktest.Run(t, "ip", "-n", nsL, "addr", "add", "10.2.0.2/24", "dev", ifL)
	netstacktest.Run(t, "ip", "-n", nsL, "link", "set", ifL, "up")
	netstacktest.Run(t, "ip", "-n", nsL, "route", "add", "default", "via", "10.2.0.1")

	dirA, dirB, dirL := t.TempDir(), t.TempDir(), t.TempDir()
	const endpointA = "198.51.100.2:51820"
	invB, err := signpost.Issue(dirA, "b", endpointA, "alice", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	invL, err := signpost.Issue(dirA, "laptop", "", "", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	nodeA, err := tunnel.Start(tunnel.Config{Dir: dirA, Stack: stA, Logger: testLogger(t).With("node", "A"), Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer nodeA.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// B runs its node (in a network of its own), then joins A's through
	// its own netstack, from behind its NAT, as `nymote peer join` does on
	// its data directory: the running node moves into A's network.
	nodeB, err := tunnel.Start(tunnel.Config{Dir: dirB, Stack: stB, Logger: testLogger(t).With("node", "B"), Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	joinStart := time.Now()
	if _, err := signpost.Join(ctx, dirB, invB, "", stB.DialContext); err != nil {
		t.Fatal(err)
	}
	stateA, err := signpost.ReadState(dirA)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "B's running node moves into A's network", func() error {
		if v4, _ := nodeB.Addrs(); !stateA.Network.Prefix4().Contains(v4) {
			return fmt.Errorf("B's address %s is not in %s", v4, stateA.Network.Prefix4())
		}
		return nil
	})
	b4, b6 := nodeB.Addrs()
	lnB, err := stB.Listen("tcp", ":143")
	if err != nil {
		t.Fatal(err)
	}
	defer lnB.Close()
	go greeter(lnB, "* OK [nymote test] B over the tunnel")
	// A reaches B: B keeps its tunnel to A open from behind its NAT.
	waitFor(t, 30*time.Second, "A dials B over the tunnel", func() error {
		_, err := readGreeting(func() (net.Conn, error) { return stA.Dial("tcp", netip.AddrPortFrom(b6, 143).String()) })
		return err
	})
	t.Logf("join to first contact A->B: %s", time.Since(joinStart))

	// L joins as a laptop (host sockets in its namespace) and brings up
	// stock WireGuard with the printed wg-quick configuration.
	dialL := func(ctx context.Context, network, address string) (net.Conn, error) {
		return netstacktest.Dial(nsL, network, address, 10*time.Second)
	}
	if _, err := signpost.Join(ctx, dirL, invL, "", dialL); err != nil {
		t.Fatal(err)
	}
	conf, err := signpost.WGQuick(dirL)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wg-quick configuration of L:\n%s", conf)
	confPath := filepath.Join(t.TempDir(), "nymote.conf")
	os.WriteFile(confPath, []byte(conf), 0o600)
	up := netstacktest.CommandNS(ctx, nsL, "wg-quick", "up", confPath)
	up.Env = append(os.Environ(), "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1")
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("wg-quick up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		down := exec.Command("ip", "netns", "exec", nsL, "wg-quick", "down", confPath)
		down.Env = up.Env
		if out, err := down.CombinedOutput(); err != nil {
			t.Logf("wg-quick down: %v\n%s", err, out)
		}
	})
	// L finds B by name: A answers for its network's names on its tunnel
	// addresses (mail.b.alice.nymote: the service "mail" on node b of
	// alice's network).
	a4, _ := nodeA.Addrs()
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return netstacktest.Dial(nsL, network, netip.AddrPortFrom(a4, tunnel.DNSPort).String(), 3*time.Second)
	}}
	var named netip.Addr
	waitFor(t, 30*time.Second, "L resolves mail.b.alice.nymote through the tunnel", func() error {
		ips, err := res.LookupNetIP(ctx, "ip4", "mail.b.alice.nymote")
		if err == nil {
			named = ips[0].Unmap()
		}
		return err
	})
	if named != b4 {
		t.Fatalf("mail.b.alice.nymote is %s, want B's tunnel address %s", named, b4)
	}
	if ips, err := res.LookupNetIP(ctx, "ip6", "b.alice.nymote"); err != nil || len(ips) != 1 || ips[0] != b6 {
		t.Fatalf("b.alice.nymote AAAA: %v %v, want %s", ips, err, b6)
	}
	if _, err := res.LookupNetIP(ctx, "ip4", "nobody.alice.nymote"); err == nil {
		t.Fatal("an unknown node has an address")
	}
	dialB := func() (net.Conn, error) {
		return netstacktest.Dial(nsL, "tcp", net.JoinHostPort(named.String(), "143"), 3*time.Second)
	}
	waitFor(t, 30*time.Second, "L reaches B's service by name through A", func() error {
		line, err := readGreeting(dialB)
		if err == nil && !strings.Contains(line, "B over the tunnel") {
			return fmt.Errorf("greeting %q", line)
		}
		return err
	})
	// A real IMAP server on B (the mail service, IMAPS on B's netstack,
	// every address): L logs in by name through the tunnel.
	imapOnB(t, ctx, stB, dirB)
	waitFor(t, 30*time.Second, "L logs in to B's IMAP at mail.b.alice.nymote", func() error {
		return imapLogin(nsL, res, "mail.b.alice.nymote:993")
	})
	t.Log("L logged in to B's IMAP at mail.b.alice.nymote:993 through A")
	// L reaches A itself, and by IPv6 B too.
	if _, err := readGreeting(func() (net.Conn, error) {
		return netstacktest.Dial(nsL, "tcp", netip.AddrPortFrom(b6, 143).String(), 5*time.Second)
	}); err != nil {
		t.Fatalf("L to B over IPv6: %v", err)
	}
	lnA, err := stA.Listen("tcp", ":143")
	if err != nil {
		t.Fatal(err)
	}
	defer lnA.Close()
	go greeter(lnA, "* OK A")
	if _, err := readGreeting(func() (net.Conn, error) {
		return netstacktest.Dial(nsL, "tcp", netip.AddrPortFrom(a4, 143).String(), 5*time.Second)
	}); err != nil {
		t.Fatalf("L to A: %v", err)
	}

	// A revokes B (as `nymote peer del b` does, on A's data directory):
	// the running node drops B's tunnel.
	if _, err := signpost.Revoke(dirA, "b"); err != nil {
		t.Fatal(err)
	}
	idB := nodeB.Identity()
	waitFor(t, 30*time.Second, "A drops B's peer", func() error {
		if nodeA.HasPeer(idB.WG) {
			return fmt.Errorf("B still configured")
		}
		return nil
	})
	if _, err := readGreeting(dialB); err == nil {
		t.Fatal("L still reaches B after B was revoked")
	}
	if err := imapLogin(nsL, res, "mail.b.alice.nymote:993"); err == nil {
		t.Fatal("L still logs in to B's IMAP after B was revoked")
	}
	// B comes back (a restart): its handshake is refused, and it cannot
	// reach A.
	nodeB.Close()
	refused := nodeA.Refused()
	nodeB, err = tunnel.Start(tunnel.Config{Dir: dirB, Stack: stB, Logger: testLogger(t).With("node", "B")})
	if err != nil {
		t.Fatal(err)
	}
	defer nodeB.Close()
	waitFor(t, 30*time.Second, "A refuses B's handshake", func() error {
		if nodeA.Refused() == refused {
			return fmt.Errorf("no handshake refused yet")
		}
		return nil
	})
	if _, err := readGreeting(func() (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return stB.DialContext(ctx, "tcp", netip.AddrPortFrom(a4, 143).String())
	}); err == nil {
		t.Fatal("B still reaches A after it was revoked")
	}
	// And it cannot join again with a fresh invitation.
	inv2, err := signpost.Issue(dirA, "b2", "", "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dirB, "node/signpost/state.json"))
	if _, err := signpost.Join(ctx, dirB, inv2, "", stB.DialContext); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked B joins again: %v", err)
	}
}

// imapOnB serves the mail service's IMAPS on st (every address, so the
// tunnel's too) from a store in dir with user demo.
func imapOnB(t *testing.T, ctx context.Context, st *netstack.Stack, dir string) {
	t.Helper()
	s, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "demo", "demo-password-1", store.GitNone); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ln, err := st.Listen("tcp", ":993")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- mailsvc.Serve(sctx, mailsvc.Config{DataDir: dir, Domains: []string{"b.alice.nymote"}, Logger: testLogger(t)}, mailsvc.Listeners{IMAPS: ln})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mail: %v", err)
		}
	})
}

// imapLogin resolves addr's host with res, connects from namespace ns over
// TLS and logs in as demo, selects INBOX and logs out.
func imapLogin(ns string, res *net.Resolver, addr string) error {
	host, port, _ := net.SplitHostPort(addr)
	ips, err := res.LookupNetIP(context.Background(), "ip4", host)
	if err != nil {
		return err
	}
	raw, err := netstacktest.Dial(ns, "tcp", net.JoinHostPort(ips[0].String(), port), 3*time.Second)
	if err != nil {
		return err
	}
	c := tls.Client(raw, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	expect := func(tag string) error {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.HasPrefix(line, tag+" ") || tag == "*" {
				if !strings.HasPrefix(line, tag+" OK") && !(tag == "*" && strings.HasPrefix(line, "* OK")) {
					return fmt.Errorf("IMAP: %s", strings.TrimSpace(line))
				}
				return nil
			}
		}
	}
	if err := expect("*"); err != nil {
		return err
	}
	fmt.Fprintf(c, "a LOGIN demo demo-password-1\r\n")
	if err := expect("a"); err != nil {
		return err
	}
	fmt.Fprintf(c, "b SELECT INBOX\r\n")
	if err := expect("b"); err != nil {
		return err
	}
	fmt.Fprintf(c, "c LOGOUT\r\n")
	return nil
}
