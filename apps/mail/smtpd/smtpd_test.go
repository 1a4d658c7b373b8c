package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nymote/nymote/apps/mail/imapd"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// testServer is an inbound SMTP server, a submission server and an IMAP
// server in this process, on loopback, over one store.
type testServer struct {
	st                   *store.Store
	ms                   *mailstore.Store
	smtp, submission, im string
}

func startServers(t *testing.T, dataDir string, sopts store.Options, opts Options) *testServer {
	t.Helper()
	st, err := store.InitData(dataDir, sopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddUser(context.Background(), "alice", testPassword, store.GitNone); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ms, err := mailstore.Open(st, mailstore.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	ts := &testServer{st: st, ms: ms}
	serve := func(addr *string, serve func(net.Listener) error, closeFn func() error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		*addr = ln.Addr().String()
		go serve(ln)
		t.Cleanup(func() { closeFn() })
	}
	in := opts
	in.Mail, in.Domains, in.Logger = ms, []string{"example.org"}, log
	sub := in
	sub.Submission, sub.InsecureAuth = true, true
	inbound, submission := New(in), New(sub)
	isrv := imapd.New(imapd.Options{Mail: ms, Domains: []string{"example.org"}, InsecureAuth: true, Logger: log})
	serve(&ts.smtp, inbound.Serve, inbound.Close)
	serve(&ts.submission, submission.Serve, submission.Close)
	serve(&ts.im, isrv.Serve, isrv.Close)
	return ts
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// deliverMsg sends msg over SMTP (net/smtp), logging in first if user is
// set, and returns the server's answer to the end of DATA (nil: 250).
func deliverMsg(t *testing.T, addr, user, from, to string, msg []byte) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	if user != "" {
		if err := c.Auth(plainAuth{user}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Close()
}

// plainAuth is AUTH PLAIN without net/smtp's refusal of plain text on a
// connection that is not loopback-or-TLS (the servers here allow it).
type plainAuth struct{ user string }

func (a plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + testPassword), nil
}
func (a plainAuth) Next([]byte, bool) ([]byte, error) { return nil, nil }

func smtpCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// TestSubmissionFrom: on submission, a message whose From: header is not
// the user's own address is refused with 550 5.7.1 and a text that says
// why; the user's own address (any local domain, any case) passes.
func TestSubmissionFrom(t *testing.T) {
	ts := startServers(t, t.TempDir(), store.Options{}, Options{})
	for _, tc := range []struct {
		name, header string
		ok           bool
	}{
		{"own address", "From: Alice <alice@example.org>", true},
		{"own address, other case", "From: ALICE@Example.ORG", true},
		{"someone else", "From: Bob <bob@example.org>", false},
		{"a remote address", "From: alice@evil.example", false},
		{"one of two is not hers", "From: alice@example.org, boss@example.org", false},
		{"no From:", "Subject: none", false},
		{"not an address", "From: <<<", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte(tc.header + "\r\nTo: alice@example.org\r\nSubject: from check\r\n\r\nhello\r\n")
			err := deliverMsg(t, ts.submission, "alice", "alice@example.org", "alice@example.org", msg)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("got %v, want 250", err)
			case !tc.ok && smtpCode(err) != 550:
				t.Fatalf("got %v, want 550 5.7.1", err)
			case !tc.ok && !strings.Contains(err.Error(), "5.7.1"):
				t.Fatalf("got %v, want enhanced code 5.7.1", err)
			}
			if err != nil {
				t.Logf("refused: %v", err)
			}
		})
	}
}

// TestConnectionCap: beyond MaxConnections, a client is answered 421 at
// once; when a connection ends, its place is free again.
func TestConnectionCap(t *testing.T) {
	ts := startServers(t, t.TempDir(), store.Options{}, Options{MaxConnections: 2})
	greet := func() (net.Conn, string) {
		c, err := net.Dial("tcp", ts.smtp)
		if err != nil {
			t.Fatal(err)
		}
		l, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return c, l
	}
	c1, l1 := greet()
	c2, l2 := greet()
	c3, l3 := greet()
	c3.Close()
	if !strings.HasPrefix(l1, "220") || !strings.HasPrefix(l2, "220") {
		t.Fatalf("first two connections: %q, %q, want 220", l1, l2)
	}
	if !strings.HasPrefix(l3, "421") {
		t.Fatalf("third connection: %q, want 421", l3)
	}
	c1.Close()
	// The place frees once the server has seen c1 close: wait for it.
	for i := 0; ; i++ {
		c, l := greet()
		c.Close()
		if strings.HasPrefix(l, "220") {
			break
		}
		if i > 10000 {
			t.Fatalf("after a connection closed, still refused: %q", l)
		}
	}
	c2.Close()
}

// TestFullDisk replays issue 21's M7 on a real 16 MiB file system (tmpfs,
// as root): a message that would eat into the store's reserve is refused
// with 452 over SMTP and NO [OVERQUOTA] over IMAP APPEND, while small mail
// still arrives; on a disk with no space at all, CREATE answers NO
// [OVERQUOTA] "The data disk is full" (it was [SERVERBUG]); and nothing
// acknowledged is lost (git fsck).
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small file system needs root")
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed (apt-get install -y git)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	// 16 MiB: a reserve of 4 MiB.
	ts := startServers(t, mnt, store.Options{}, Options{})
	small := []byte("From: carol@example.net\r\nTo: alice@example.org\r\nSubject: small\r\n\r\nstill arrives\r\n")
	if err := deliverMsg(t, ts.smtp, "", "carol@example.net", "alice@example.org", small); err != nil {
		t.Fatalf("a small message: %v", err)
	}
	big := append([]byte("From: carol@example.net\r\nTo: alice@example.org\r\nSubject: big\r\n\r\n"),
		bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n"), 5<<20/66)...)
	err = deliverMsg(t, ts.smtp, "", "carol@example.net", "alice@example.org", big)
	if smtpCode(err) != 452 || !strings.Contains(err.Error(), "4.3.1") {
		t.Fatalf("a 5 MiB message on a 16 MiB disk: got %v, want 452 4.3.1", err)
	}
	t.Logf("SMTP: %v", err)

	ic, err := imapclient.DialInsecure(ts.im, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("alice", testPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	app := ic.Append("INBOX", int64(len(big)), nil)
	app.Write(big)
	app.Close()
	_, err = app.Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeOverQuota {
		t.Fatalf("APPEND of 5 MiB on a 16 MiB disk: got %v, want NO [OVERQUOTA]", err)
	}
	t.Logf("APPEND: %v", err)
	if err := deliverMsg(t, ts.smtp, "", "carol@example.net", "alice@example.org", small); err != nil {
		t.Fatalf("a small message after the refusals: %v", err)
	}

	// Fill the disk to the last block: the store's own commits fail, with
	// a clear answer.
	if err := ts.st.Flush(); err != nil {
		t.Fatal(err)
	}
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 64<<10)
	for {
		if _, err := filler.Write(block); err != nil {
			break
		}
	}
	for n := len(block) / 2; n > 0; n /= 2 {
		for {
			if _, err := filler.Write(block[:n]); err != nil {
				break
			}
		}
	}
	filler.Close()
	// The commit log's last page may have room for a few small records:
	// CREATE until the disk refuses.
	for i := 0; ; i++ {
		err = ic.Create(fmt.Sprintf("Full/%d", i), nil).Wait()
		if err != nil {
			break
		}
		if i == 1000 {
			t.Fatal("1000 CREATEs on a full disk all succeeded")
		}
	}
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeOverQuota || !strings.Contains(ie.Text, "disk is full") {
		t.Fatalf("CREATE on a full disk: got %v, want NO [OVERQUOTA] The data disk is full", err)
	}
	t.Logf("CREATE: %v", err)
	os.Remove(filepath.Join(mnt, "filler"))
	if err := ic.Create("Projects", nil).Wait(); err != nil {
		t.Fatalf("CREATE once there is room again: %v", err)
	}
	sel, err := ic.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 {
		t.Errorf("INBOX holds %d messages, want the 2 small ones", sel.NumMessages)
	}
	ic.Logout().Wait()
	if err := ts.st.Flush(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(git, "-C", ts.st.Path(), "fsck", "--strict").CombinedOutput(); err != nil {
		t.Fatalf("git fsck --strict: %v\n%s", err, out)
	}
}

// TestSubmissionSenderNamesAddress: MAIL FROM an address that is not the
// user's is refused with a text naming the address to send as (a new user
// guessing the domain wrong learns the right one).
func TestSubmissionSenderNamesAddress(t *testing.T) {
	ts := startServers(t, t.TempDir(), store.Options{}, Options{})
	err := deliverMsg(t, ts.submission, "alice", "alice@wrong.example", "alice@example.org", []byte("From: alice@example.org\r\n\r\nhi\r\n"))
	if smtpCode(err) != 553 || !strings.Contains(err.Error(), "alice@example.org") || !strings.Contains(err.Error(), "alice@wrong.example") {
		t.Fatalf("MAIL FROM another domain: got %v, want 553 naming alice@wrong.example and alice@example.org", err)
	}
}

// TestCopyWithoutAR: Authentication-Results fields of our authserv-id are
// dropped from the header (continuations too), others and the body kept.
func TestCopyWithoutAR(t *testing.T) {
	long := strings.Repeat("x", 20000)
	in := "Authentication-Results: mx.example.org; dmarc=pass\r\n\theader.from=bank.example\r\n" +
		"Subject: " + long + "\r\n" +
		"authentication-results: MX.EXAMPLE.ORG;spf=pass\r\n" +
		"Authentication-Results: other.example; dkim=pass\r\n" +
		"From: a@b.example\r\n\r\n" +
		"Authentication-Results: mx.example.org; in the body stays\r\n"
	var out bytes.Buffer
	if err := copyWithoutAR(&out, strings.NewReader(in), "mx.example.org"); err != nil {
		t.Fatal(err)
	}
	want := "Subject: " + long + "\r\nAuthentication-Results: other.example; dkim=pass\r\nFrom: a@b.example\r\n\r\n" +
		"Authentication-Results: mx.example.org; in the body stays\r\n"
	if out.String() != want {
		t.Errorf("got %q,\nwant %q", out.String(), want)
	}
}
