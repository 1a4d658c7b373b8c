package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/internal/guard/guardtest"
	"github.com/nymote/nymote/apps/mail/mailsvc"
)

// The hostile-client suite of issue 21 for the mail service: each test
// replays a finding on loopback with bounded counts. Nothing waits for time
// to pass: bound only fails a hung test.
const bound = 2 * time.Minute

func dialFrom(n int, addr string) (net.Conn, error) { return guardtest.DialFrom(n, addr, bound) }

// imapLogin logs in over a connection from 127.0.0.N (plain IMAP, the
// server allows it) and returns the server's answer.
func imapLogin(n int, addr, user, pw string) error {
	conn, err := dialFrom(n, addr)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(bound))
	c := imapclient.New(conn, nil)
	defer c.Close()
	return c.Login(user, pw).Wait()
}

// budget is the growth of the peak RSS allowed while hostile logins run:
// two argon2 hashes at once (19 MiB each) and the garbage they leave. At
// main, 50 wrong IMAP logins at once grow it by about 1 GB.
const budget = 200 << 20

// TestHostileParallelLogins replays H2: 50 wrong IMAP logins at once (from
// 50 addresses, so that no per-address limit helps), plus 40 wrong git
// logins: the process's peak RSS stays within budget, every attacker gets
// the clear refusal, and the owner logs in meanwhile.
func TestHostileParallelLogins(t *testing.T) {
	git := need(t, "git", "git")
	st := newStore(t, "alice")
	// Without InsecureAuth (git over TLS, logins over IMAPS); delays of at
	// most a second, so that the owner's login waits little.
	auth := guard.NewAuth(guard.AuthOptions{MaxDelay: time.Second})
	s := startServer(t, st, mailsvc.Config{Domains: []string{"example.org"}, Auth: auth}, nil)
	tlsc := &tls.Config{InsecureSkipVerify: true}
	growth := guardtest.RSSMeter(t)

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := dialFrom(10+i, s.addrs["imaps"])
			if err != nil {
				errs <- err
				return
			}
			conn.SetDeadline(time.Now().Add(bound))
			c := imapclient.New(tls.Client(conn, tlsc), nil)
			defer c.Close()
			err = c.Login("alice", fmt.Sprint("wrong guess ", i)).Wait()
			// Refused after the check, or unchecked when too many are in flight.
			if err == nil || !strings.Contains(err.Error(), "AUTHENTICATIONFAILED") && !strings.Contains(err.Error(), "UNAVAILABLE") {
				errs <- fmt.Errorf("IMAP attacker %d: %v, want NO [AUTHENTICATIONFAILED] or [UNAVAILABLE]", i, err)
			}
		}()
	}
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{TLSClientConfig: tlsc, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialFrom(100+i, addr)
			}}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest("GET", "https://"+s.addrs["git"]+"/info/refs?service=git-upload-pack", nil)
			req.SetBasicAuth("alice", fmt.Sprint("wrong guess ", i))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				errs <- fmt.Errorf("git attacker %d: %v", i, err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusTooManyRequests {
				errs <- fmt.Errorf("git attacker %d: %s, want 401 or 429", i, resp.Status)
			}
		}()
	}
	// The owner, meanwhile, from an address of their own.
	conn, err := dialFrom(2, s.addrs["imaps"])
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(bound))
	c := imapclient.New(tls.Client(conn, tlsc), nil)
	defer c.Close()
	if err := c.Login("alice", testPassword).Wait(); err != nil {
		t.Errorf("owner during the attack: %v", err)
	}
	run(t, t.TempDir(), git, "-c", "http.sslVerify=false", "clone", "-q",
		"https://alice:"+strings.ReplaceAll(testPassword, " ", "%20")+"@"+s.addrs["git"]+"/", "mine")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	g := growth()
	t.Logf("peak RSS growth during 50 IMAP + 40 git wrong logins: %d MiB (budget %d MiB)", g>>20, budget>>20)
	if g > budget {
		t.Errorf("peak RSS grew by %d MiB, budget %d MiB", g>>20, budget>>20)
	}
}

// TestHostileNoLockout replays M2: after 100 failed logins for alice from
// another address, and after 100 from the owner's own address, the owner
// still logs in (slowed down, not refused), over IMAP and SMTP AUTH.
func TestHostileNoLockout(t *testing.T) {
	st := newStore(t, "alice")
	auth := guard.NewAuth(guard.AuthOptions{BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
	s := startServer(t, st, mailsvc.Config{Domains: []string{"example.org"}, InsecureAuth: true, Auth: auth}, nil)
	fail100 := func(from int) {
		t.Helper()
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ { // four at a time: the most one host may have in flight
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					if err := imapLogin(from, s.addrs["imap"], "alice", "guess"); err == nil || !strings.Contains(err.Error(), "AUTHENTICATIONFAILED") {
						t.Errorf("guess from 127.0.0.%d: %v, want NO [AUTHENTICATIONFAILED]", from, err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	for _, tc := range []struct {
		name           string
		attacker, user int
	}{
		{"from another address", 3, 4},
		{"from the same address", 5, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fail100(tc.attacker)
			if err := imapLogin(tc.user, s.addrs["imap"], "alice", testPassword); err != nil {
				t.Errorf("IMAP owner after 100 failures: %v", err)
			}
			conn, err := dialFrom(tc.user, s.addrs["submission"])
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(bound))
			sc := smtp.NewClient(conn)
			defer sc.Close()
			if err := sc.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
				t.Errorf("SMTP AUTH owner after 100 failures: %v", err)
			}
		})
	}
}

// TestHostileHandshake replays M1: a client that opens an IMAPS (or
// submissions) connection and sends no TLS handshake is closed after the
// handshake deadline, and one that opens many connections gets the busy
// answer beyond the cap.
func TestHostileHandshake(t *testing.T) {
	st := newStore(t, "alice")
	s := startServer(t, st, mailsvc.Config{Domains: []string{"example.org"}, InsecureAuth: true,
		Conns: guard.ListenerOptions{HandshakeTimeout: 200 * time.Millisecond, MaxConnsPerHost: 3}}, nil)
	for _, name := range []string{"imaps", "submissions", "imap", "smtp"} {
		t.Run("silent "+name, func(t *testing.T) {
			c, err := net.Dial("tcp", s.addrs[name])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(bound))
			if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("a silent connection to %s is still open after %v", name, bound)
			}
		})
	}
	for _, tc := range []struct{ name, greeting, busy string }{
		{"imap", "* OK", "* BYE Too many connections"},
		{"smtp", "220 ", "421 4.7.0 Too many connections"},
	} {
		t.Run("cap "+tc.name, func(t *testing.T) {
			for i := 0; i < 4; i++ {
				c, err := dialFrom(20, s.addrs[tc.name])
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(bound))
				line, err := bufio.NewReader(c).ReadString('\n')
				want := tc.greeting
				if i == 3 {
					want = tc.busy
				}
				if !strings.HasPrefix(line, want) {
					t.Fatalf("connection %d: %q, %v; want %q", i+1, line, err, want)
				}
			}
		})
	}
}

// TestGitTLS replays M3 for git: without InsecureAuth the git endpoint
// speaks TLS only, and a plain HTTP request with a password gets no answer
// in the clear.
func TestGitTLS(t *testing.T) {
	st := newStore(t, "alice")
	s := startServer(t, st, mailsvc.Config{Domains: []string{"example.org"}}, nil)
	req, _ := http.NewRequest("GET", "http://"+s.addrs["git"]+"/info/refs?service=git-upload-pack", nil)
	req.SetBasicAuth("alice", testPassword)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("git over plain HTTP: %s, want no service", resp.Status)
		}
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	req, _ = http.NewRequest("GET", "https://"+s.addrs["git"]+"/info/refs?service=git-upload-pack", nil)
	req.SetBasicAuth("alice", testPassword)
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("git over TLS: %s", resp.Status)
	}
}
