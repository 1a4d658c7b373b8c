package jitsu

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nymote/nymote/internal/testutil"
)

// waitSpares polls until the appliance has n spare connections ready.
func waitSpares(t testing.TB, s *Server, name string, n int, within time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, x := range s.Status() {
			if x.Name == dns.CanonicalName(name) && x.State == Running && x.Spares == n {
				return x
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not %d spares within %v: %+v", name, n, within, s.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connNumber asks the test service which connection c is: the service
// numbers connections in the order their handshakes completed.
func connNumber(t testing.TB, c net.Conn, rd *bufio.Reader) int {
	t.Helper()
	fmt.Fprint(c, "CONN\r\n")
	l, err := rd.ReadString('\n')
	if strings.HasPrefix(l, "hello") { // the greeting not read yet
		l, err = rd.ReadString('\n')
	}
	var n int
	var ns int64
	if _, serr := fmt.Sscanf(l, "%d %d", &n, &ns); err != nil || serr != nil {
		t.Fatalf("CONN: %q, %v", l, err)
	}
	return n
}

// directNumber connects to the appliance's own port (its backend, without
// jitsu) and returns that connection's number. A client connection
// through jitsu with a smaller number was opened before it: a spare.
func directNumber(t testing.TB, s *Server, name, port string) int {
	t.Helper()
	var addr string
	for _, x := range s.Status() {
		if x.Name == dns.CanonicalName(name) {
			addr = x.Backends[port]
		}
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("direct connection to %q: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return connNumber(t, c, bufio.NewReader(c))
}

// unused reads the test service's log of connections that ended without a
// command: number → "idle" (closed by the service) or "peer".
func unused(t testing.TB, data string) map[int]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "unused"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	m := map[int]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if n, how, ok := strings.Cut(l, " "); ok {
			i, _ := strconv.Atoi(n)
			m[i] = how
		}
	}
	return m
}

// noSparePools fails when a spare pool's goroutine is still running.
func noSparePools(t testing.TB) {
	t.Helper()
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	if i := bytes.Index(buf, []byte("jitsu.(*sparePool)")); i >= 0 {
		t.Fatalf("a spare pool's goroutine is left:\n%s", buf[max(0, i-2000):min(len(buf), i+500)])
	}
}

// TestSpare: a running appliance has one spare connection per port, not
// counted as a connection; a client is served on it at once (the
// service accepted it before the client connected) and a new spare is
// dialed; the spare does not keep the appliance from its idle stop, and
// the stop leaves no spare and no pool goroutine behind.
func TestSpare(t *testing.T) {
	port := testutil.FreePort(t)
	s, cfg := startServer(t, Options{IdleCheck: 50 * time.Millisecond},
		svcApp(t, "warm.home.test", port, "1s", "", "--delay", "300ms"))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	// A connection during the boot is held and served; no spare yet.
	early, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if st := waitState(t, s, "warm.home.test", Booting, time.Second); st.Spares != 0 {
		t.Errorf("booting with %d spares", st.Spares)
	}
	early.SetDeadline(time.Now().Add(10 * time.Second))
	if l, err := bufio.NewReader(early).ReadString('\n'); err != nil || !strings.HasPrefix(l, "hello from testsvc (boot 1)") {
		t.Fatalf("connection held during the boot: %q, %v", l, err)
	}
	early.Close()

	wantA(t, query(t, s.DNSAddr(), "udp", "warm.home.test", dns.TypeA), "127.0.0.1", 1)
	st := waitSpares(t, s, "warm.home.test", 1, 5*time.Second)
	if st.Connections > 0 {
		// The early connection's proxy may still be ending.
		waitConns(t, s, "warm.home.test", 0)
	}

	direct := directNumber(t, s, "warm.home.test", "hello")
	c, rd, g := greet(t, addr)
	if g != "hello from testsvc (boot 1)" {
		t.Fatalf("greeting %q", g)
	}
	if n := connNumber(t, c, rd); n > direct {
		t.Errorf("the client got connection %d, opened after a direct one (%d): not the spare", n, direct)
	}
	fmt.Fprint(c, "PUT warm\r\n")
	if l, _ := rd.ReadString('\n'); strings.TrimSpace(l) != "OK" {
		t.Fatalf("PUT on a spare: %q", l)
	}
	waitConns(t, s, "warm.home.test", 1)
	waitSpares(t, s, "warm.home.test", 1, 5*time.Second) // the next one
	c.Close()

	// Idle for 2×TTL with a spare open: stopped anyway, cleanly.
	st = waitState(t, s, "warm.home.test", Stopped, 10*time.Second)
	if st.LastError != "" || st.Spares != 0 {
		t.Errorf("after the idle stop: %+v", st)
	}
	if n := readCount(t, filepath.Join(cfg.Appliances[0].Data, "clean-stops")); n != 1 {
		t.Errorf("clean stops: got %d, want 1", n)
	}
	noSparePools(t)
}

// waitConns polls until the appliance counts n open connections.
func waitConns(t testing.TB, s *Server, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, x := range s.Status() {
			if x.Name == dns.CanonicalName(name) && x.Connections == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not %d connections: %+v", name, n, s.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSpareClosedByAppliance: a service that closes connections that send
// nothing (a first-command timeout shorter than the spare age) closes the
// spare; jitsu notices, dials a new one, and a client is served on a live
// spare, not on one the service closed.
func TestSpareClosedByAppliance(t *testing.T) {
	port := testutil.FreePort(t)
	s, cfg := startServer(t, Options{}, svcApp(t, "strict.home.test", port, "30s", "", "--idle-close", "1500ms"))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	data := cfg.Appliances[0].Data
	wantA(t, query(t, s.DNSAddr(), "udp", "strict.home.test", dns.TypeA), "127.0.0.1", 30)
	waitSpares(t, s, "strict.home.test", 1, 5*time.Second)

	// Wait for the service to close a spare for idleness, then for the
	// replacement (dialed at once: the spare lived 1.5 s): jitsu dials
	// it only once it has seen the close, so once the service has
	// accepted a connection after the closed one, the spare ready is a
	// live one.
	deadline := time.Now().Add(10 * time.Second)
	closed := 0
	for closed == 0 {
		for n, how := range unused(t, data) {
			if how == "idle" {
				closed = n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service closed no spare: %v", unused(t, data))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for readCount(t, filepath.Join(data, "accepted")) <= closed {
		if time.Now().After(deadline) {
			t.Fatalf("no new spare after the service closed connection %d", closed)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitSpares(t, s, "strict.home.test", 1, 5*time.Second)
	direct := directNumber(t, s, "strict.home.test", "hello")
	c, rd, g := greet(t, addr)
	defer c.Close()
	if g != "hello from testsvc (boot 1)" {
		t.Fatalf("greeting %q", g)
	}
	n := connNumber(t, c, rd)
	if how, ok := unused(t, data)[n]; ok {
		t.Fatalf("the client got connection %d, which the service closed (%s)", n, how)
	}
	if n > direct {
		t.Errorf("the client got connection %d, opened after a direct one (%d): not the spare", n, direct)
	}
}

// TestSpareAge: a spare nobody takes is closed by jitsu and replaced once
// it reaches its age (spare: 200ms), before the service would close it.
func TestSpareAge(t *testing.T) {
	port := testutil.FreePort(t)
	s, cfg := startServer(t, Options{}, svcApp(t, "aged.home.test", port, "30s", "    spare: 200ms\n"))
	data := cfg.Appliances[0].Data
	wantA(t, query(t, s.DNSAddr(), "udp", "aged.home.test", dns.TypeA), "127.0.0.1", 30)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The launcher's readiness probe is one "peer"; two more are
		// spares that jitsu closed.
		peer := 0
		for _, how := range unused(t, data) {
			if how == "peer" {
				peer++
			}
		}
		if peer >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spares not replaced: unused connections %v", unused(t, data))
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitSpares(t, s, "aged.home.test", 1, 5*time.Second)
	c, _, g := greet(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	c.Close()
	if g != "hello from testsvc (boot 1)" {
		t.Errorf("greeting %q", g)
	}
}

// TestSpareClientFirst: with a service where the client speaks first
// (HTTP-like) the spare has nothing buffered; the client's request goes
// to it and the answer comes back.
func TestSpareClientFirst(t *testing.T) {
	port := testutil.FreePort(t)
	s, _ := startServer(t, Options{}, svcApp(t, "web.home.test", port, "30s", "", "--client-first"))
	wantA(t, query(t, s.DNSAddr(), "udp", "web.home.test", dns.TypeA), "127.0.0.1", 30)
	waitSpares(t, s, "web.home.test", 1, 5*time.Second)
	direct := directNumber(t, s, "web.home.test", "hello")
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(c)
	fmt.Fprint(c, "HELLO\r\n")
	if l, err := rd.ReadString('\n'); err != nil || strings.TrimSpace(l) != "hello from testsvc (boot 1)" {
		t.Fatalf("answer to HELLO: %q, %v", l, err)
	}
	if n := connNumber(t, c, rd); n > direct {
		t.Errorf("the client got connection %d, opened after a direct one (%d): not the spare", n, direct)
	}
}

// TestSpareOff: spare: off keeps none, and clients are served as before.
func TestSpareOff(t *testing.T) {
	port := testutil.FreePort(t)
	s, _ := startServer(t, Options{}, svcApp(t, "cold.home.test", port, "30s", "    spare: off\n"))
	wantA(t, query(t, s.DNSAddr(), "udp", "cold.home.test", dns.TypeA), "127.0.0.1", 30)
	direct := directNumber(t, s, "cold.home.test", "hello")
	c, rd, g := greet(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	defer c.Close()
	if g != "hello from testsvc (boot 1)" {
		t.Errorf("greeting %q", g)
	}
	if n := connNumber(t, c, rd); n < direct {
		t.Errorf("the client got connection %d, opened before a direct one (%d): a spare, with spare: off", n, direct)
	}
	if st := s.Status()[0]; st.Spares != 0 {
		t.Errorf("%d spares with spare: off", st.Spares)
	}
}

// TestSpareClose: closing the server with spares open (and a client on a
// spare) leaves no pool goroutine and stops the appliance cleanly.
func TestSpareClose(t *testing.T) {
	port := testutil.FreePort(t)
	s, cfg := startServer(t, Options{}, svcApp(t, "bye.home.test", port, "30s", ""))
	wantA(t, query(t, s.DNSAddr(), "udp", "bye.home.test", dns.TypeA), "127.0.0.1", 30)
	waitSpares(t, s, "bye.home.test", 1, 5*time.Second)
	c, _, _ := greet(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	defer c.Close()
	waitSpares(t, s, "bye.home.test", 1, 5*time.Second)
	s.Close()
	noSparePools(t)
	if n := readCount(t, filepath.Join(cfg.Appliances[0].Data, "clean-stops")); n != 1 {
		t.Errorf("clean stops: got %d, want 1", n)
	}
}
