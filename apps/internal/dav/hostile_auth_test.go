package dav_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/internal/guard/guardtest"
	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/store"
)

// The hostile-client suite of issue 21 for DAV; bound only fails a hung
// test.
const bound = 2 * time.Minute

// loginBudget is the growth of the peak RSS allowed while 50 wrong logins run
// at once: two argon2 hashes (19 MiB each) and their garbage. At main it
// grew by about 1.7 GB.
const loginBudget = 200 << 20

type hostile struct {
	http, https string
	tr          func(from int) *http.Transport
}

// startHostile serves contacts on an http (InsecureHTTP when insecure)
// and an https listener with cfg's guards.
func startHostile(t *testing.T, cfg dav.Config) *hostile {
	t.Helper()
	st, err := store.InitData(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for u, p := range davtest.Users {
		if err := st.AddUser(context.Background(), u, p, store.GitNone); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg.TLS, _, err = svc.TLSConfig(ctx, st, svc.TLSOptions{Hostnames: []string{"127.0.0.1"}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Kind, cfg.Logger = st, carddav.New(4096), slog.New(slog.DiscardHandler)
	var lns []dav.Listener
	for _, p := range []string{"http", "https"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, dav.Listener{Proto: p, Listener: ln})
	}
	done := make(chan error, 1)
	go func() { done <- dav.Serve(ctx, cfg, lns) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &hostile{http: lns[0].Addr().String(), https: lns[1].Addr().String(), tr: func(from int) *http.Transport {
		return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return guardtest.DialFrom(from, addr, bound)
			}}
	}}
}

// propfind sends an authenticated PROPFIND of /user/ from 127.0.0.FROM
// and returns the status.
func (h *hostile) propfind(from int, scheme, user, pw string) (int, error) {
	addr := h.https
	if scheme == "http" {
		addr = h.http
	}
	req, _ := http.NewRequest("PROPFIND", scheme+"://"+addr+"/"+user+"/", nil)
	req.Header.Set("Depth", "0")
	req.SetBasicAuth(user, pw)
	tr := h.tr(from)
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestHostileBasicAuth replays H2 for DAV: 50 wrong Basic logins at once
// (from 50 addresses) stay within a memory budget, each gets 401 (or 429),
// and the owner is served meanwhile.
func TestHostileBasicAuth(t *testing.T) {
	h := startHostile(t, dav.Config{Options: dav.Options{Auth: guard.NewAuth(guard.AuthOptions{MaxDelay: time.Second})}})
	growth := guardtest.RSSMeter(t)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := h.propfind(10+i, "https", "alice", fmt.Sprint("wrong guess ", i))
			if err != nil || code != http.StatusUnauthorized && code != http.StatusTooManyRequests {
				errs <- fmt.Errorf("attacker %d: %d, %v; want 401 or 429", i, code, err)
			}
		}()
	}
	if code, err := h.propfind(2, "https", "alice", davtest.Users["alice"]); code != http.StatusMultiStatus {
		t.Errorf("owner during the attack: %d, %v", code, err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	g := growth()
	t.Logf("peak RSS growth during 50 wrong DAV logins: %d MiB (budget %d MiB)", g>>20, loginBudget>>20)
	if g > loginBudget {
		t.Errorf("peak RSS grew by %d MiB, budget %d MiB", g>>20, loginBudget>>20)
	}
}

// TestHostileNoLockoutDAV replays M2 for DAV: 100 failures for alice from
// another address or from her own leave her slowed down, not refused.
func TestHostileNoLockoutDAV(t *testing.T) {
	h := startHostile(t, dav.Config{Options: dav.Options{Auth: guard.NewAuth(guard.AuthOptions{BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})}})
	for _, tc := range []struct {
		name           string
		attacker, user int
	}{
		{"from another address", 3, 4},
		{"from the same address", 5, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ { // four at a time: the most one host may have in flight
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 25; i++ {
						if code, err := h.propfind(tc.attacker, "https", "alice", "guess"); code != http.StatusUnauthorized {
							t.Errorf("guess: %d, %v; want 401", code, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if code, err := h.propfind(tc.user, "https", "alice", davtest.Users["alice"]); code != http.StatusMultiStatus {
				t.Errorf("owner after 100 failures: %d, %v; want 207", code, err)
			}
		})
	}
}

// TestHostileTLS replays M1 and M3 for DAV: a connection to the https
// port that sends no handshake is closed after the deadline; the plain
// port only redirects, even with a right password; connections beyond the
// per-host cap get 503 at once.
func TestHostileTLS(t *testing.T) {
	h := startHostile(t, dav.Config{Conns: guard.ListenerOptions{HandshakeTimeout: 200 * time.Millisecond, MaxConnsPerHost: 2}})
	t.Run("silent https", func(t *testing.T) {
		c, err := net.Dial("tcp", h.https)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(bound))
		if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a silent https connection is still open after %v", bound)
		}
	})
	t.Run("plain http redirects", func(t *testing.T) {
		code, err := h.propfind(6, "http", "alice", davtest.Users["alice"])
		if code != http.StatusMovedPermanently {
			t.Errorf("PROPFIND over plain HTTP: %d, %v; want 301 to https", code, err)
		}
	})
	t.Run("cap", func(t *testing.T) {
		// Two connections that have not finished their request hold their
		// places (accepted in order), the third gets 503 at once.
		for i := 0; i < 3; i++ {
			c, err := guardtest.DialFrom(7, h.http, bound)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "OPTIONS / HTTP/1.1\r\n")
			if i < 2 {
				continue
			}
			c.SetDeadline(time.Now().Add(bound))
			line, err := bufio.NewReader(c).ReadString('\n')
			if !strings.HasPrefix(line, "HTTP/1.1 503") {
				t.Fatalf("connection 3: %q, %v; want HTTP/1.1 503", line, err)
			}
		}
	})
}
