package appliance

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/internal/testutil"
)

// peerService answers each connection with the addresses it sees, then
// echoes one line: "peer REMOTE local LOCAL\r\n", "echo LINE\r\n".
func peerService(ready chan<- *Env) Service {
	return Service{
		App: app.App{Name: "peer", Ports: []app.Port{{Name: "peer"}}},
		Serve: func(ctx context.Context, env *Env) error {
			ready <- env
			l := env.Listeners["peer"]
			go func() {
				<-ctx.Done()
				l.Close()
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				go func() {
					defer c.Close()
					io.WriteString(c, "peer "+c.RemoteAddr().String()+" local "+c.LocalAddr().String()+"\r\n")
					line, _ := bufio.NewReader(c).ReadString('\n')
					io.WriteString(c, "echo "+strings.TrimRight(line, "\r\n")+"\r\n")
				}()
			}
		},
	}
}

// startPeer runs peerService as a host process (RunHost, in-process) with
// args and returns its address and its log.
func startPeer(t *testing.T, args ...string) (string, *testutil.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	envs := make(chan *Env, 1)
	var stdout, stderr testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- RunHost(ctx, peerService(envs), append([]string{"--data", t.TempDir(), "--port", "peer=0", "--log-level", "debug"}, args...), &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunHost: %v", err)
		}
	})
	select {
	case env := <-envs:
		return env.Listeners["peer"].Addr().String(), &stderr
	case err := <-done:
		t.Fatalf("RunHost: %v (%s)", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the service did not start")
	}
	return "", nil
}

// dialFrom connects to addr from the loopback address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func v2Header(t *testing.T, src, dst string) []byte {
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func localHeader(t *testing.T) []byte {
	b, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProxyProtocol: with --proxy (nymote.proxy in an appliance) the
// runtime's listeners read the PROXY header of connections from the
// trusted networks, and only of those; a connection from them without a
// valid header is closed with a log line and never reaches the service.
func TestProxyProtocol(t *testing.T) {
	addr, log := startPeer(t, "--proxy", "127.0.0.1/32,10.9.0.0/16")
	lines := func(c net.Conn, send string) (string, string) {
		t.Helper()
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		peer, err1 := r.ReadString('\n')
		echo, err2 := r.ReadString('\n')
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("got %q %q: %v", peer, echo, err)
		}
		return strings.TrimSpace(peer), strings.TrimSpace(echo)
	}
	v1 := "PROXY TCP4 192.0.2.7 10.0.2.15 40000 143\r\n"
	for _, tc := range []struct {
		name, from, send   string
		wantPeer, wantEcho string // "" for the client's own address
	}{
		{"trusted, version 2", "127.0.0.1", string(v2Header(t, "192.0.2.7:40000", "10.0.2.15:143")) + "hi\r\n",
			"peer 192.0.2.7:40000 local 10.0.2.15:143", "echo hi"},
		{"trusted, version 1", "127.0.0.1", v1 + "hi\r\n", "peer 192.0.2.7:40000 local 10.0.2.15:143", "echo hi"},
		{"trusted, IPv6 client", "127.0.0.1", string(v2Header(t, "[2001:db8::7]:40000", "[2001:db8::1]:143")) + "hi\r\n",
			"peer [2001:db8::7]:40000 local [2001:db8::1]:143", "echo hi"},
		{"untrusted: the header is data", "127.0.0.2", v1, "", "echo " + strings.TrimSpace(v1)},
		{"trusted, LOCAL (a proxy's own check)", "127.0.0.1", string(localHeader(t)) + "hi\r\n", "", "echo hi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, tc.from, addr)
			want := tc.wantPeer
			if want == "" {
				want = "peer " + c.LocalAddr().String() + " local " + c.RemoteAddr().String()
			}
			peer, echo := lines(c, tc.send)
			if peer != want || echo != tc.wantEcho {
				t.Errorf("got %q, %q; want %q, %q", peer, echo, want, tc.wantEcho)
			}
		})
	}

	// From a trusted network, a connection without a valid header is
	// closed before the service sees it, with a log line.
	for _, tc := range []struct{ name, send, wantLog string }{
		{"no header", "a1 LOGIN alice secret\r\n", "signature not present"},
		{"malformed version 1", "PROXY TCP4 192.0.2.7 nonsense\r\n", "PROXY header"},
		{"version 1 with a bad port", "PROXY TCP4 192.0.2.7 10.0.2.15 99999 143\r\n", "PROXY header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(log.String(), "no valid PROXY header")
			c := dialFrom(t, "127.0.0.1", addr)
			io.WriteString(c, tc.send)
			b, err := io.ReadAll(c)
			if len(b) > 0 || err != nil {
				t.Errorf("got %q, %v; want the connection closed without a word", b, err)
			}
			if got := strings.Count(log.String(), "no valid PROXY header"); got != before+1 {
				t.Errorf("%d log lines about it, want 1: %s", got-before, log.String())
			}
			if !strings.Contains(log.String(), tc.wantLog) {
				t.Errorf("the log does not say %q: %s", tc.wantLog, log.String())
			}
		})
	}
}

// TestProxyListenerWaits: a trusted connection that has not sent its
// header yet (jitsu's spare) keeps no other connection from being
// accepted; it is accepted once the header comes, and given up after the
// timeout. Beyond the bound of connections waiting for a header, the next
// one is closed.
func TestProxyListenerWaits(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var log testutil.Buffer
	pl := newProxyListener(inner, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})), time.Hour, 2)
	defer pl.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := inner.Addr().String()
	spare := dialFrom(t, "127.0.0.1", addr) // sends its header later
	other := dialFrom(t, "127.0.0.2", addr) // untrusted: at once
	if c := <-accepted; c.RemoteAddr().String() != other.LocalAddr().String() {
		t.Fatalf("accepted %v first, want the untrusted %v", c.RemoteAddr(), other.LocalAddr())
	}
	second := dialFrom(t, "127.0.0.1", addr) // waits too: the bound (2) is reached
	// Beyond the bound: closed at once.
	third := dialFrom(t, "127.0.0.1", addr)
	if b, err := io.ReadAll(third); len(b) > 0 || err != nil {
		t.Errorf("third waiting connection: got %q, %v; want it closed", b, err)
	}
	if !strings.Contains(log.String(), "too many connections waiting") {
		t.Errorf("no log line about the bound: %s", log.String())
	}
	spare.Write(v2Header(t, "192.0.2.9:1234", "10.0.2.15:7"))
	select {
	case c := <-accepted:
		if got := c.RemoteAddr().String(); got != "192.0.2.9:1234" {
			t.Errorf("spare accepted as %s, want the header's 192.0.2.9:1234", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the spare was not accepted after its header")
	}
	// Close ends the wait of the second and closes it.
	pl.Close()
	if b, err := io.ReadAll(second); len(b) > 0 || err != nil {
		t.Errorf("waiting connection after Close: got %q, %v; want it closed", b, err)
	}
	if _, ok := <-accepted; ok {
		t.Error("Accept returned a connection after Close")
	}
}

// TestProxyHeaderTimeout: a trusted connection that sends no header in
// time is closed with a log line.
func TestProxyHeaderTimeout(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var log testutil.Buffer
	pl := newProxyListener(inner, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		slog.New(slog.NewTextHandler(&log, nil)), 50*time.Millisecond, 10)
	defer pl.Close()
	c := dialFrom(t, "127.0.0.1", inner.Addr().String())
	io.WriteString(c, "PROXY TCP4 ") // and then nothing
	if b, err := io.ReadAll(c); len(b) > 0 || err != nil {
		t.Errorf("got %q, %v; want the connection closed", b, err)
	}
	if !strings.Contains(log.String(), "no valid PROXY header") {
		t.Errorf("no log line: %s", log.String())
	}
}

func TestParseProxyNetworks(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"", "[]", ""},
		{"10.0.2.2/32", "[10.0.2.2/32]", ""},
		{"10.0.2.2, 192.168.1.9/24,::1", "[10.0.2.2/32 192.168.1.0/24 ::1/128]", ""},
		{"10.0.2.2/33", "", `"10.0.2.2/33": want a network`},
		{"jitsu", "", `"jitsu": want a network`},
	} {
		got, err := ParseProxyNetworks(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || fmtPrefixes(got) != tc.want {
			t.Errorf("%q: got %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseCmdline("nymote.proxy=10.0.2.2/32,x"); err == nil || !strings.Contains(err.Error(), "nymote.proxy") {
		t.Errorf("bad nymote.proxy: got %v, want an error naming it", err)
	}
	c, err := parseCmdline("nymote.proxy=10.0.2.2/32")
	if err != nil || fmtPrefixes(c.proxy) != "[10.0.2.2/32]" || c.service["proxy"] != "" {
		t.Errorf("nymote.proxy: got %v, %v, service options %v", c.proxy, err, c.service)
	}
	if err := RunHost(context.Background(), Service{App: app.App{Name: "x"}}, []string{"--data", "d", "--proxy", "nowhere"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--proxy") {
		t.Errorf("bad --proxy: got %v, want an error naming it", err)
	}
}

func fmtPrefixes(p []netip.Prefix) string {
	return "[" + strings.ReplaceAll(joinPrefixes(p), ",", " ") + "]"
}
