//go:build linux

package netstack_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
)

// TestTSOPeer: the kernel end of the veth keeps its transmit checksum
// offload and TSO, so the netstack receives frames with partial checksums
// and TCP segments of up to 64 KiB. Data must arrive intact over IPv4 and
// IPv6, in both directions, and the large segments must have been taken
// whole. (Frames with bad checksums from the wire are still dropped:
// TestGarbageFrames.)
func TestTSOPeer(t *testing.T) {
	peerOffload = true
	defer func() { peerOffload = false }()
	p := newPair(t)
	ln, err := p.st.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echo(ln)
	msg := make([]byte, 8<<20)
	for i := range msg {
		msg[i] = byte(rand.IntN(256))
	}
	want := sha256.Sum256(msg)
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
			c.SetDeadline(time.Now().Add(60 * time.Second))
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(msg)) || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("echoed %d bytes (sha256 %x), want %d (sha256 %x)", n, h.Sum(nil), len(msg), want)
			}
		})
	}
	st := p.st.Stats()
	if st.RxGSO == 0 {
		t.Errorf("no unsegmented TCP segment was received from the TSO peer: %+v", st)
	}
	t.Logf("stats: %+v", st)
}

var _ = netstack.Stats{}
