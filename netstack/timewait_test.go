//go:build linux

package netstack_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/nymote/nymote/netstack/netstacktest"
)

// TestReconnectAfterBulkTransfer reconnects from the same client port
// right after a large upload that the netstack server closed first, so
// that the old connection is in TIME-WAIT on the netstack with a receive
// sequence number far beyond the client's new initial sequence number.
// Linux accepts such a SYN (RFC 6191, by timestamps); the connection must
// open here too instead of waiting out TIME-WAIT.
func TestReconnectAfterBulkTransfer(t *testing.T) {
	p := newPair(t)
	ln, err := p.st.Listen("tcp", ":5001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				n, _ := io.Copy(io.Discard, io.LimitReader(c, 64<<20))
				c.Write([]byte{byte(n >> 20)})
				c.Close() // first: TIME-WAIT is on the netstack
			}()
		}
	}()
	local := &net.TCPAddr{IP: p.kernel4.AsSlice(), Port: 40123}
	dial := func() (net.Conn, error) {
		var c net.Conn
		err := netstacktest.Do(p.nsK, func() error {
			d := net.Dialer{LocalAddr: local, Timeout: 4 * time.Second}
			var err error
			c, err = d.Dial("tcp", netip.AddrPortFrom(p.netstack4, 5001).String())
			return err
		})
		return c, err
	}
	for i := range 2 {
		c, err := dial()
		// The kernel's end of the last connection may still be in
		// LAST-ACK for a moment.
		for tries := 0; errors.Is(err, syscall.EADDRINUSE) && tries < 40; tries++ {
			time.Sleep(25 * time.Millisecond)
			c, err = dial()
		}
		if err != nil {
			t.Fatalf("connection %d from port %d: %v", i, local.Port, err)
		}
		buf := bytes.Repeat([]byte{'x'}, 1<<20)
		for range 64 {
			if _, err := c.Write(buf); err != nil {
				t.Fatal(err)
			}
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		// Read to EOF, so that the server's FIN is in before we close
		// and TIME-WAIT is on the netstack's side, not the kernel's.
		reply, err := io.ReadAll(c)
		if err != nil || len(reply) != 1 || reply[0] != 64 {
			t.Fatalf("reply %v, %v; want [64]", reply, err)
		}
		c.Close()
	}
}
