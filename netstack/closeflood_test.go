//go:build linux

package netstack_test

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
)

// TestCloseUnderLoad closes stacks while the kernel floods them with
// packets. gVisor's Stack.Destroy could deadlock with the link's reader
// goroutine when a packet came in during Close.
func TestCloseUnderLoad(t *testing.T) {
	first, nsN, nsK, ifN, ifK := newVeth(t)
	first.Close()
	netstacktest.Run(t, "ip", "-n", nsK, "addr", "add", kernel4.String()+"/24", "dev", ifK)
	// The kernel must keep sending after each stack is gone: a static
	// neighbour entry instead of ARP. The netstack uses ifN's MAC.
	var mac net.HardwareAddr
	if err := netstacktest.Do(nsN, func() error {
		ifc, err := net.InterfaceByName(ifN)
		mac = ifc.HardwareAddr
		return err
	}); err != nil {
		t.Fatal(err)
	}
	netstacktest.Run(t, "ip", "-n", nsK, "neigh", "replace", netstack4.String(), "lladdr", mac.String(), "dev", ifK)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for range 2 {
		c, err := netstacktest.Dial(nsK, "udp", netip.AddrPortFrom(netstack4, 9).String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			msg := make([]byte, 200)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Write(msg) // errors (ICMP unreachable) do not matter
			}
		}()
	}

	for i := range 20 {
		var link *netstack.Link
		if err := netstacktest.Do(nsN, func() error {
			var err error
			link, err = netstack.OpenPacket(ifN)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		st, err := netstack.New(netstack.Options{Link: link, IPv4: netip.PrefixFrom(netstack4, 24), NoDHCP: true})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // packets flowing into the stack
		done := make(chan struct{})
		go func() {
			st.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("round %d: Close did not return in 20s; goroutines:\n%s", i, buf[:runtime.Stack(buf, true)])
		}
	}
}
