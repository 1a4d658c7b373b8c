package jitsu

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/miekg/dns"

	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/store"
)

var (
	mailOnce sync.Once
	mailBin  string
	mailErr  error
)

// buildMail builds the mail appliance program once per test binary.
func buildMail(t testing.TB) string {
	t.Helper()
	mailOnce.Do(func() {
		mailBin = filepath.Join(testTmp, "mail")
		var out []byte
		out, mailErr = exec.Command("go", "build", "-o", mailBin, "../apps/mail").CombinedOutput()
		if mailErr != nil {
			mailErr = fmt.Errorf("go build ./apps/mail: %v\n%s", mailErr, out)
		}
	})
	if mailErr != nil {
		t.Fatal(mailErr)
	}
	return mailBin
}

const mailPassword = "correct horse battery"

// mailApp is the YAML of the mail appliance run as a host process on a
// store with user alice.
func mailApp(t testing.TB, name string, port int, ttl string) string {
	t.Helper()
	data := t.TempDir()
	st, err := store.InitData(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(context.Background(), "alice", mailPassword, store.GitNone); err != nil {
		t.Fatal(err)
	}
	st.Close()
	return fmt.Sprintf(`
  - name: %s
    address: 127.0.0.1
    ports: [{name: imap, port: %d}]
    ttl: %s
    boot_timeout: 30s
    data: %s
    launcher:
      kind: process
      command: [%q, --data, "${data}", --domain, home.test, --imap, "127.0.0.1:${port:imap}"]
`, name, port, ttl, data, buildMail(t))
}

func imapLogin(t testing.TB, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatalf("IMAP connect to %s: %v", addr, err)
	}
	if err := c.Login("alice", mailPassword).Wait(); err != nil {
		c.Close()
		t.Fatalf("IMAP login: %v", err)
	}
	return c
}

// TestMail: a query for the mail appliance boots it; an IMAP login right
// after the answer succeeds; a message appended survives the idle
// power-off and the next boot.
func TestMail(t *testing.T) {
	if testing.Short() {
		t.Skip("building the mail appliance in -short mode")
	}
	port := testutil.FreePort(t)
	s, _ := startServer(t, Options{IdleCheck: 50 * time.Millisecond}, mailApp(t, "mail.home.test", port, "1s"))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	wantA(t, query(t, s.DNSAddr(), "udp", "mail.home.test", dns.TypeA), "127.0.0.1", 1)
	c := imapLogin(t, addr)
	msg := "From: bob@home.test\r\nTo: alice@home.test\r\nSubject: summoned\r\n\r\nhello\r\n"
	ap := c.Append("INBOX", int64(len(msg)), nil)
	ap.Write([]byte(msg))
	ap.Close()
	if _, err := ap.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	c.Logout().Wait()
	c.Close()

	st := waitState(t, s, "mail.home.test", Stopped, 10*time.Second)
	if st.LastError != "" {
		t.Fatalf("idle stop not clean: %s", st.LastError)
	}
	wantA(t, query(t, s.DNSAddr(), "tcp", "mail.home.test", dns.TypeA), "127.0.0.1", 1)
	c = imapLogin(t, addr)
	defer c.Close()
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("after the second boot: INBOX has %v messages (%v), want 1", sel, err)
	}
	if st := waitState(t, s, "mail.home.test", Running, 0); st.Boots != 2 {
		t.Errorf("boots: %d, want 2", st.Boots)
	}
}
