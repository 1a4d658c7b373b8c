package svc

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestHold: a held listener answers with the refusal until Release; then
// Accept has the connections; Close ends Accept.
func TestHold(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := Hold(ln, RefuseLine("421 busy", nil))
	defer h.Close()
	read := func() string {
		c, err := net.Dial("tcp", h.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute)) // only a hung test
		l, _ := bufio.NewReader(c).ReadString('\n')
		return l
	}
	if l := read(); l != "421 busy\r\n" {
		t.Errorf("held: %q", l)
	}
	h.Release()
	accepted := make(chan error, 1)
	go func() {
		c, err := h.Accept()
		if err == nil {
			io.WriteString(c, "220 ready\r\n")
			c.Close()
		}
		accepted <- err
	}()
	if l := read(); l != "220 ready\r\n" {
		t.Errorf("released: %q", l)
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	go func() { _, err := h.Accept(); accepted <- err }()
	h.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}
