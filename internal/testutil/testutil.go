// Package testutil holds the small helpers that tests across the module
// share: a Buffer that a process or logger writes while the test reads it,
// FreePort and FreeAddr for a loopback TCP port to hand to a server that
// opens its own listener, and CA for a test certificate authority.
//
// Tests that can listen themselves should: net.Listen("tcp",
// "127.0.0.1:0") and handing the listener over leaves no window in which
// another process may take the port. FreePort is for servers that take an
// address, not a listener (a child process, QEMU's port forwarding).
package testutil

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer that is safe for concurrent use: a command, a
// child process or a logger writes to it while the test reads it. The zero
// value is an empty buffer ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// FreePort returns a TCP port on 127.0.0.1 that was free when it was
// asked for: the port of a listener it opened and closed. Another process
// may take it before the caller listens on it. It fails the test if no
// port can be had.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testutil: looking for a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "127.0.0.1:PORT" for a port from FreePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}
