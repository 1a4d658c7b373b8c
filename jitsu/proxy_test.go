package jitsu

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nymote/nymote/internal/testutil"
)

// peerApp is the YAML of an appliance running peerAppliance (the
// appliance runtime as a host process) on 127.0.0.1:port.
func peerApp(t testing.TB, name string, port int, extra string) string {
	return fmt.Sprintf(`
  - name: %s
    address: 127.0.0.1
    ports: [{name: peer, port: %d}]
    boot_timeout: 30s
    data: %s
%s    launcher:
      kind: process
      env: [JITSU_TESTSVC=appliance]
      command: [%s, --data, "${data}", --port, "peer=${port:peer}", --log-level, debug]
`, name, port, t.TempDir(), extra, strconv.Quote(testExe))
}

// peerVia connects from the loopback address from to addr and returns
// the connection and the address the appliance greets it with.
func peerVia(t *testing.T, from, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %q, %v", l, err)
	}
	peer, ok := strings.CutPrefix(strings.TrimSpace(l), "peer ")
	if !ok {
		t.Fatalf("greeting %q, want peer ADDR", l)
	}
	return c, r, peer
}

// backend is the appliance's own address (without jitsu).
func backend(t *testing.T, s *Server, name, port string) string {
	t.Helper()
	for _, x := range s.Status() {
		if x.Name == dns.CanonicalName(name) && x.Backends[port] != "" {
			return x.Backends[port]
		}
	}
	t.Fatalf("%s is not running: %+v", name, s.Status())
	return ""
}

// TestProxyProtocol replays finding M2 of issue 21 on jitsu's side:
// behind jitsu, an appliance (the appliance runtime as a host process)
// sees each client's own address with proxy_protocol, on a fresh
// connection and on a spare alike, and jitsu's without it; a client
// cannot claim another address, through jitsu or around it; a
// connection from jitsu's address without a valid header is refused.
func TestProxyProtocol(t *testing.T) {
	on, off := testutil.FreePort(t), testutil.FreePort(t)
	log, lb := testLogBuf(t)
	s, _ := startServer(t, Options{Log: log},
		peerApp(t, "on.home.test", on, "    proxy_protocol: true\n"),
		peerApp(t, "off.home.test", off, "    spare: off\n"))
	onAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(on))
	offAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(off))

	// A client at 127.0.0.2: the first connection boots the appliance
	// (no spare yet), the next ones take spares.
	for i := range 3 {
		if i > 0 {
			waitSpares(t, s, "on.home.test", 1, 30*time.Second)
		}
		c, _, peer := peerVia(t, "127.0.0.2", onAddr)
		if peer != c.LocalAddr().String() {
			t.Errorf("connection %d with proxy_protocol: the appliance sees %s, want the client's %s", i, peer, c.LocalAddr())
		}
		c.Close()
	}
	if _, _, peer := peerVia(t, "127.0.0.2", offAddr); !strings.HasPrefix(peer, "127.0.0.1:") {
		t.Errorf("without proxy_protocol: the appliance sees %s, want jitsu's 127.0.0.1", peer)
	}

	// A client's own PROXY header through jitsu is data: jitsu's
	// header comes first.
	c, r, peer := peerVia(t, "127.0.0.2", onAddr)
	fmt.Fprint(c, "PROXY TCP4 192.0.2.66 127.0.0.1 4000 25\r\n")
	if l, _ := r.ReadString('\n'); peer != c.LocalAddr().String() || !strings.HasPrefix(l, "echo PROXY TCP4 192.0.2.66") {
		t.Errorf("a client's header through jitsu: seen as %s, answered %q; want %s and the header echoed as data", peer, l, c.LocalAddr())
	}

	// Around jitsu, from an address the appliance does not trust: the
	// header is data too.
	be := backend(t, s, "on.home.test", "peer")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", be)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(c, "PROXY TCP4 192.0.2.66 127.0.0.1 4000 25\r\n")
	r = bufio.NewReader(c)
	l1, _ := r.ReadString('\n')
	l2, _ := r.ReadString('\n')
	if strings.TrimSpace(l1) != "peer "+c.LocalAddr().String() || !strings.HasPrefix(l2, "echo PROXY TCP4 192.0.2.66") {
		t.Errorf("an untrusted client's header: got %q %q; want its own address and the header echoed", l1, l2)
	}

	// From jitsu's address (trusted) with a malformed header: closed,
	// with a line in the appliance's log (which jitsu logs).
	c, err = net.DialTimeout("tcp", be, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(c, "PROXY TCP4 192.0.2.66 nonsense\r\n")
	if b, err := bufio.NewReader(c).ReadString('\n'); b != "" {
		t.Errorf("a malformed header from a trusted address: got %q, %v; want the connection closed", b, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(lb.String(), "no valid PROXY header") {
		if time.Now().After(deadline) {
			t.Fatal("the appliance logged no line about the malformed header")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
