package guard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRedirectHTTPS(t *testing.T) {
	acme := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "token") })
	for _, tc := range []struct {
		name, host, target, port string
		want                     int
		location                 string
	}{
		{"default port", "example.org", "/alice/?x=1", "", 301, "https://example.org/alice/?x=1"},
		{"host with port", "example.org:8080", "/", "443", 301, "https://example.org/"},
		{"other port", "127.0.0.1:8080", "/a", "8443", 301, "https://127.0.0.1:8443/a"},
		{"ipv6", "[::1]:80", "/", "", 301, "https://[::1]/"},
		{"acme", "example.org", "/.well-known/acme-challenge/abc", "", 200, ""},
		{"no host", "", "/", "", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("PROPFIND", "http://x"+tc.target, nil)
			r.Host = tc.host
			w := httptest.NewRecorder()
			RedirectHTTPS(tc.port, acme).ServeHTTP(w, r)
			if w.Code != tc.want || w.Header().Get("Location") != tc.location {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Header().Get("Location"), tc.want, tc.location)
			}
		})
	}
}

// TestIdleBody: a client that stops sending its body is dropped after the
// idle bound, although the server has no ReadTimeout.
func TestIdleBody(t *testing.T) {
	readErr := make(chan error, 1)
	srv := httptest.NewServer(Idle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		readErr <- err
	}), 100*time.Millisecond))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("body read ended without an error")
		}
	case <-time.After(bound):
		t.Fatal("a stalled body was not dropped")
	}
	c.SetReadDeadline(time.Now().Add(bound))
	bufio.NewReader(c).ReadString('\n')
}

// TestIdleExpectContinue: a handler behind Idle that answers without
// reading the body (a 401) still answers a client that waits for "100
// Continue" before sending it (litmus's expect100).
func TestIdleExpectContinue(t *testing.T) {
	srv := httptest.NewServer(Idle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "log in", http.StatusUnauthorized)
	}), time.Minute))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(bound))
	io.WriteString(c, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if line != "HTTP/1.1 401 Unauthorized\r\n" {
		t.Errorf("got %q, %v; want the 401 at once", line, err)
	}
}
