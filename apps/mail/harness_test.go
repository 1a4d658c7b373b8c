package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/store"
)

// server is one mail service running in this process on loopback.
type server struct {
	t       *testing.T
	st      *store.Store
	addrs   map[string]string // imap, imaps, smtp, submission, submissions, git
	certPEM []byte
	cancel  context.CancelFunc
	done    chan error
	out     *testutil.Buffer
}

const testPassword = "correct horse battery"

// newStore makes a data directory with users (git access: read).
func newStore(t *testing.T, users ...string) *store.Store {
	t.Helper()
	st, err := store.InitData(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if err := st.AddUser(context.Background(), u, testPassword, store.GitRead); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// listen opens loopback listeners; fixed gives addresses to reuse (a
// server coming back on the same ports).
func listen(t *testing.T, fixed map[string]string) (mailsvc.Listeners, map[string]string) {
	t.Helper()
	addrs := map[string]string{}
	var ls mailsvc.Listeners
	for _, n := range []struct {
		name string
		ln   *net.Listener
	}{{"imap", &ls.IMAP}, {"imaps", &ls.IMAPS}, {"smtp", &ls.SMTP}, {"submission", &ls.Submission}, {"submissions", &ls.Submissions}, {"git", &ls.Git}} {
		a := "127.0.0.1:0"
		if fixed != nil {
			a = fixed[n.name]
		}
		var ln net.Listener
		var err error
		for i := 0; i < 50; i++ { // the port may linger a moment after a stop
			if ln, err = net.Listen("tcp", a); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		*n.ln = ln
		addrs[n.name] = ln.Addr().String()
	}
	return ls, addrs
}

func startServer(t *testing.T, st *store.Store, cfg mailsvc.Config, fixed map[string]string) *server {
	t.Helper()
	ls, addrs := listen(t, fixed)
	cfg.Store = st
	if cfg.Domains == nil {
		cfg.Domains = []string{"example.org"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	out := &testutil.Buffer{}
	cfg.Stdout = out
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{t: t, st: st, addrs: addrs, cancel: cancel, done: make(chan error, 1), out: out}
	go func() { s.done <- mailsvc.Serve(ctx, cfg, ls) }()
	// Wait for the console lines.
	deadline := time.Now().Add(hung)
	for strings.Count(out.String(), "listening on") < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var err error
	s.certPEM, err = st.ReadNodeFile(svc.CertPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *server) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("serve: %v", err)
		}
	case <-time.After(hung):
		s.t.Error("serve did not stop")
	}
}

func (s *server) imap(t *testing.T, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(s.addrs["imaps"], &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, testPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// messages returns the bodies of a mailbox's messages.
func (s *server) messages(t *testing.T, user, mailbox string) []string {
	t.Helper()
	c := s.imap(t, user)
	defer c.Logout()
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.BodySection[0].Bytes))
	}
	return out
}

// hung is how long a test waits for an event before it calls the wait
// hung: generous, so that only a hung program reaches it, never a slow
// (loaded) machine.
const hung = 2 * time.Minute

// waitFor polls f until it holds; timeout is raised to hung if shorter,
// since waits bound hangs, never durations.
func waitFor(t *testing.T, what string, timeout time.Duration, f func() bool) {
	t.Helper()
	if timeout < hung {
		timeout = hung
	}
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// need skips the test if a program is missing.
func need(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Skipf("%s not installed (apt-get install -y %s); skipping", prog, pkg)
	}
	return p
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func testMessage(subject, body string) string {
	return "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: " + subject +
		"\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n\r\n" + body + "\r\n"
}

type mailsvcConfig = mailsvc.Config

func runMayFail(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// testLog sends a server's logs to the test's log (shown on failure or -v).
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
