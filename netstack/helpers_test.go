//go:build linux

package netstack_test

import (
	"errors"
	"log/slog"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/nymote/nymote/internal/testutil"

	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
)

// testLogger returns a logger that writes to t.Log until the test ends.
func testLogger(t testing.TB) *slog.Logger { return testutil.Logger(t, slog.LevelDebug) }

// pair is a netstack in one namespace and the kernel's stack in another,
// joined by a veth pair.
type pair struct {
	st         *netstack.Stack
	nsN, nsK   string // the netstack's namespace, the kernel's
	ifN, ifK   string // the veth ends
	kernel4    netip.Addr
	kernel6    netip.Addr
	netstack4  netip.Addr
	netstack6  netip.Addr
	kernelLink string
}

// peerOffload leaves the kernel end's transmit offloads (checksum, TSO)
// on; set only by tests that do not run in parallel.
var peerOffload bool

var (
	kernel4   = netip.MustParseAddr("10.77.0.1")
	netstack4 = netip.MustParseAddr("10.77.0.2")
	kernel6   = netip.MustParseAddr("fd77::1")
	netstack6 = netip.MustParseAddr("fd77::2")
)

// newVeth creates the two namespaces and the veth pair, configures the
// kernel's end, and opens the netstack's end as an AF_PACKET link.
//
// The kernel's end sends without checksum offload (full checksums in every
// frame), as a NIC's frames arrive from the wire, unless the test runs
// with peerOffload set (see TestTSOPeer).
func newVeth(t *testing.T) (link *netstack.Link, nsN, nsK, ifN, ifK string) {
	t.Helper()
	netstacktest.NeedRoot(t)
	nsN, nsK = netstacktest.NewNS(t), netstacktest.NewNS(t)
	ifN, ifK = netstacktest.Veth(t, nsN, nsK)
	if !peerOffload {
		if err := netstacktest.DisableTXChecksumOffload(nsK, ifK); err != nil {
			t.Fatal(err)
		}
	}
	netstacktest.Run(t, "ip", "-n", nsK, "link", "set", ifK, "up")
	err := netstacktest.Do(nsN, func() error {
		var err error
		link, err = netstack.OpenPacket(ifN)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return link, nsN, nsK, ifN, ifK
}

// newPair returns a netstack with static addresses facing the kernel.
// The stack is closed when the test ends.
func newPair(t *testing.T) *pair {
	t.Helper()
	link, nsN, nsK, ifN, ifK := newVeth(t)
	netstacktest.Run(t, "ip", "-n", nsK, "addr", "add", kernel4.String()+"/24", "dev", ifK)
	netstacktest.Run(t, "ip", "-n", nsK, "addr", "add", kernel6.String()+"/64", "dev", ifK, "nodad")
	st, err := netstack.New(netstack.Options{
		Link:     link,
		Logger:   testLogger(t),
		IPv4:     netip.PrefixFrom(netstack4, 24),
		IPv6:     []netip.Prefix{netip.PrefixFrom(netstack6, 64)},
		Gateway4: kernel4,
		Gateway6: kernel6,
		NoDHCP:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &pair{st: st, nsN: nsN, nsK: nsK, ifN: ifN, ifK: ifK,
		kernel4: kernel4, kernel6: kernel6, netstack4: netstack4, netstack6: netstack6}
}

// retry calls f until it succeeds or timeout passes, and returns its last
// error. IPv6 addresses need a second of duplicate address detection
// before they answer.
func retry(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
