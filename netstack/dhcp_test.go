//go:build linux

package netstack_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
)

// startDnsmasq runs dnsmasq on ifname in namespace ns as DHCP server
// (short T1 and T2 so that a renewal happens within seconds), DNS server
// for *.nymote.test and IPv6 router advertiser for SLAAC, keeping its
// leases in the file leases. The returned function stops it; so does the
// end of the test.
func startDnsmasq(t *testing.T, ns, ifname, leases string, extra ...string) (stop func()) {
	t.Helper()
	dnsmasq := netstacktest.NeedCommand(t, "dnsmasq", "dnsmasq-base")
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--user=root",
		"--pid-file=" + leases + ".pid", "--dhcp-leasefile=" + leases,
		"--interface=" + ifname, "--bind-interfaces", "--no-resolv", "--no-hosts",
		"--log-facility=-", "--log-dhcp", "--no-ping",
		"--address=/nymote.test/10.78.0.1",
		"--dhcp-range=10.78.0.50,10.78.0.99,255.255.255.0,2m",
		"--dhcp-option=option:router,10.78.0.1",
		"--dhcp-option=option:dns-server,10.78.0.1",
		"--dhcp-option=option:T1,2",
		"--dhcp-option=option:T2,4",
	}, extra...)
	cmd := netstacktest.CommandNS(ctx, ns, dnsmasq, args...)
	var out testutil.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start dnsmasq: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			cmd.Wait()
			if t.Failed() {
				t.Logf("dnsmasq output:\n%s", out.String())
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDHCP runs the stack against dnsmasq: a lease is obtained, renewed
// and released on Close; the resolver uses the DNS server from the lease;
// SLAAC configures an address from router advertisements.
func TestDHCP(t *testing.T) {
	link, _, nsK, _, ifK := newVeth(t)
	netstacktest.Run(t, "ip", "-n", nsK, "addr", "add", "10.78.0.1/24", "dev", ifK)
	netstacktest.Run(t, "ip", "-n", nsK, "addr", "add", "fd78::1/64", "dev", ifK, "nodad")
	leases := filepath.Join(t.TempDir(), "leases")
	startDnsmasq(t, nsK, ifK, leases, "--enable-ra", "--dhcp-range=::,constructor:"+ifK+",ra-only,64,2m")

	st, err := netstack.New(netstack.Options{Link: link, Logger: testLogger(t), Hostname: "appliance"})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			st.Close()
		}
	}()
	mac := st.MAC().String()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr, err := st.WaitIPv4(ctx)
	if err != nil {
		t.Fatalf("WaitIPv4: %v", err)
	}
	lo, hi := netip.MustParseAddr("10.78.0.50"), netip.MustParseAddr("10.78.0.99")
	if addr.Bits() != 24 || addr.Addr().Less(lo) || hi.Less(addr.Addr()) {
		t.Fatalf("leased %v, want an address in %v-%v/24", addr, lo, hi)
	}
	l, ok := st.Lease()
	if !ok {
		t.Fatal("Lease() reports no lease after WaitIPv4")
	}
	want := netip.MustParseAddr("10.78.0.1")
	if l.Router != want || l.Server != want || len(l.DNS) != 1 || l.DNS[0] != want || l.Addr != addr {
		t.Errorf("Lease() = %+v, want address %v, router, server and DNS %v", l, addr, want)
	}
	if got := time.Until(l.Expiry); got < time.Minute || got > 2*time.Minute {
		t.Errorf("lease expires in %v, want about 2m", got)
	}
	waitFor(t, "lease in dnsmasq's lease file", 5*time.Second, func() bool {
		b, _ := os.ReadFile(leases)
		return bytes.Contains(b, []byte(mac))
	})
	if b, _ := os.ReadFile(leases); !bytes.Contains(b, []byte("appliance")) {
		t.Errorf("lease file %q does not name host %q", b, "appliance")
	}

	t.Run("default route", func(t *testing.T) {
		// An address beyond the router, on the kernel's loopback.
		netstacktest.Run(t, "ip", "-n", nsK, "addr", "add", "192.0.2.1/32", "dev", "lo")
		if _, err := st.Ping(ctx, netip.MustParseAddr("192.0.2.1")); err != nil {
			t.Errorf("ping through the DHCP router: %v", err)
		}
	})

	t.Run("ping", func(t *testing.T) {
		netstacktest.NeedCommand(t, "ping", "iputils-ping")
		if out, err := netstacktest.CommandNS(ctx, nsK, "ping", "-c", "1", "-w", "5", addr.Addr().String()).CombinedOutput(); err != nil {
			t.Errorf("kernel pings leased address: %v\n%s", err, out)
		}
	})

	t.Run("resolver", func(t *testing.T) {
		if got := st.DNSServers(); len(got) == 0 || got[0] != want {
			t.Errorf("DNSServers() = %v, want [%v ...]", got, want)
		}
		ips, err := st.Resolver().LookupNetIP(ctx, "ip4", "srv.nymote.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(ips) != 1 || ips[0] != want {
			t.Errorf("LookupNetIP(srv.nymote.test) = %v, want [%v]", ips, want)
		}
		ln, err := netstacktest.Listen(nsK, "tcp4", ":8080")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				fmt.Fprint(c, "by name")
				c.Close()
			}
		}()
		c, err := st.DialContext(ctx, "tcp", "srv.nymote.test:8080")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b := make([]byte, 20)
		n, _ := c.Read(b)
		if string(b[:n]) != "by name" {
			t.Errorf("read %q, want %q", b[:n], "by name")
		}
	})

	t.Run("renew", func(t *testing.T) {
		waitFor(t, "a lease renewal (T1 is 2s)", 15*time.Second, func() bool {
			l, ok := st.Lease()
			return ok && l.Renewals > 0
		})
		if l, _ := st.Lease(); l.Addr != addr {
			t.Errorf("renewed lease has address %v, want %v", l.Addr, addr)
		}
	})

	t.Run("SLAAC", func(t *testing.T) {
		prefix := netip.MustParsePrefix("fd78::/64")
		var slaac netip.Addr
		waitFor(t, "a SLAAC address in fd78::/64", 15*time.Second, func() bool {
			for _, p := range st.Addrs() {
				if prefix.Contains(p.Addr()) {
					slaac = p.Addr()
					return true
				}
			}
			return false
		})
		if _, err := exec.LookPath("ping"); err != nil {
			t.Skip("needs ping: apt-get install -y iputils-ping")
		}
		out, err := netstacktest.CommandNS(ctx, nsK, "ping", "-c", "1", "-w", "5", slaac.String()).CombinedOutput()
		if err != nil {
			t.Errorf("kernel pings SLAAC address %v: %v\n%s", slaac, err, out)
		}
	})

	closed = true
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dnsmasq to drop the released lease", 5*time.Second, func() bool {
		b, _ := os.ReadFile(leases)
		return !strings.Contains(string(b), mac)
	})
}

// TestDHCPRebind loses the DHCP server that gave the lease: renewals
// (unicast to it) go unanswered, and at T2 the client broadcasts to any
// server; a second server, knowing the lease, extends it.
func TestDHCPRebind(t *testing.T) {
	link, _, nsK, _, ifK := newVeth(t)
	netstacktest.Run(t, "ip", "-n", nsK, "addr", "add", "10.78.0.1/24", "dev", ifK)
	leases := filepath.Join(t.TempDir(), "leases")
	stopA := startDnsmasq(t, nsK, ifK, leases)

	st, err := netstack.New(netstack.Options{Link: link, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr, err := st.WaitIPv4(ctx)
	if err != nil {
		t.Fatalf("WaitIPv4: %v", err)
	}
	first, _ := st.Lease()

	// Replace the server: same lease database, another address.
	stopA()
	// (Deleting a primary address deletes its subnet's secondaries: delete
	// first.)
	netstacktest.Run(t, "ip", "-n", nsK, "addr", "del", "10.78.0.1/24", "dev", ifK)
	netstacktest.Run(t, "ip", "-n", nsK, "addr", "add", "10.78.0.2/24", "dev", ifK)
	startDnsmasq(t, nsK, ifK, leases, "--dhcp-authoritative")

	second := netip.MustParseAddr("10.78.0.2")
	waitFor(t, "the lease rebound to the second server (T2 is 4s)", 15*time.Second, func() bool {
		l, ok := st.Lease()
		return ok && l.Server == second
	})
	l, _ := st.Lease()
	if l.Addr != addr || !l.Expiry.After(first.Expiry) {
		t.Errorf("rebound lease %+v, want address %v and expiry after %v", l, addr, first.Expiry)
	}
}
