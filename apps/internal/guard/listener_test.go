package guard

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"testing"
	"time"
)

// bound only fails a hung test; nothing here waits for it to pass.
const bound = 30 * time.Second

func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func listen(t *testing.T, o ListenerOptions) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, o)
	t.Cleanup(func() { l.Close() })
	return l
}

// waitClosed waits for the server to close c: a read ends in EOF or a
// reset, not in the client's own (generous) deadline.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(bound))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v", bound)
	}
}

// TestHandshakeDeadline replays M1: a client that connects and sends no
// TLS handshake is closed after HandshakeTimeout, whether the listener
// does the handshake (TLS set) or the server does it on a connection
// whose deadline it set far away (as go-smtp does).
func TestHandshakeDeadline(t *testing.T) {
	cfg := testTLS(t)
	for _, tc := range []struct {
		name string
		o    ListenerOptions
		// serve handles an accepted connection (nil: Accept is enough).
		serve func(net.Conn)
	}{
		{"listener TLS", ListenerOptions{TLS: cfg, HandshakeTimeout: 100 * time.Millisecond}, nil},
		{"server TLS", ListenerOptions{HandshakeTimeout: 100 * time.Millisecond}, func(c net.Conn) {
			c.SetReadDeadline(time.Now().Add(time.Hour))
			tc := tls.Server(c, cfg)
			tc.Handshake()
			tc.Close()
		}},
		{"plain, first command", ListenerOptions{HandshakeTimeout: 100 * time.Millisecond}, func(c net.Conn) {
			c.SetDeadline(time.Time{})
			bufio.NewReader(c).ReadString('\n')
			c.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := listen(t, tc.o)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					if tc.serve != nil {
						go tc.serve(c)
					}
				}
			}()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitClosed(t, c)
		})
	}
}

// TestTLSListenerServes: a client that does its handshake is served, and
// the connection is a *tls.Conn over a *Conn (so LoggedIn finds it).
func TestTLSListenerServes(t *testing.T) {
	l := listen(t, ListenerOptions{TLS: testTLS(t)})
	got := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("hello\n"))
		got <- c
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if line != "hello\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	sc := <-got
	tc, ok := sc.(*tls.Conn)
	if !ok {
		t.Fatalf("accepted a %T, want *tls.Conn", sc)
	}
	gc, ok := tc.NetConn().(*Conn)
	if !ok {
		t.Fatalf("beneath TLS: %T, want *guard.Conn", tc.NetConn())
	}
	LoggedIn(sc)
	if !gc.loggedIn.Load() {
		t.Error("LoggedIn did not find the *guard.Conn beneath TLS")
	}
	sc.Close()
}

// TestConnCap replays M1's missing cap: with MaxConnsPerHost 2, the third
// connection from the host gets the busy answer and is closed; once one
// closes, a new one is served.
func TestConnCap(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    ListenerOptions
	}{
		{"per host", ListenerOptions{MaxConnsPerHost: 2, Busy: "* BYE too many connections\r\n"}},
		{"total", ListenerOptions{MaxConns: 2, Busy: "* BYE too many connections\r\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := listen(t, tc.o)
			accepted := make(chan net.Conn)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Write([]byte("* OK hello\r\n"))
					accepted <- c
				}
			}()
			dial := func() (net.Conn, *bufio.Reader) {
				c, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				c.SetReadDeadline(time.Now().Add(bound))
				return c, bufio.NewReader(c)
			}
			var server []net.Conn
			for i := 0; i < 2; i++ {
				_, r := dial()
				if line, err := r.ReadString('\n'); line != "* OK hello\r\n" {
					t.Fatalf("connection %d: %q, %v", i+1, line, err)
				}
				server = append(server, <-accepted)
			}
			c3, r3 := dial()
			if line, err := r3.ReadString('\n'); line != tc.o.Busy {
				t.Fatalf("connection 3: %q, %v; want the busy answer", line, err)
			}
			waitClosed(t, c3)
			if n := l.Conns(); n != 2 {
				t.Errorf("Conns() = %d, want 2", n)
			}
			server[0].Close()
			_, r4 := dial()
			if line, err := r4.ReadString('\n'); line != "* OK hello\r\n" {
				t.Fatalf("connection after one closed: %q, %v", line, err)
			}
			(<-accepted).Close()
			server[1].Close()
		})
	}
}

// TestLoginTimeout: a connection that does not log in in time is closed.
func TestLoginTimeout(t *testing.T) {
	l := listen(t, ListenerOptions{LoginTimeout: 100 * time.Millisecond})
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.SetDeadline(time.Time{})
		r := bufio.NewReader(c)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			c.Write([]byte("ok\r\n"))
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("noop\r\n"))
	waitClosed(t, c)
}
