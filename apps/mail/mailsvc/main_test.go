package mailsvc_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/internal/testutil"
)

// TestMainProxy: the mail program on a host honours --proxy and
// $NYMOTE_PROXY as the appliance runtime does. A connection from a trusted
// network that starts with a PROXY v1 header is seen as the header's client
// (the failed login's log line names it); from an untrusted one the header
// is not read as one (IMAP answers it as a bad command) and the connection's
// own address is logged.
func TestMainProxy(t *testing.T) {
	const client = "192.0.2.7:5000"
	for _, tc := range []struct {
		name      string
		flag, env string
		trusted   bool
	}{
		{name: "trusted by --proxy", flag: "127.0.0.0/8", trusted: true},
		{name: "trusted by NYMOTE_PROXY", env: "10.1.1.1, 127.0.0.1", trusted: true},
		{name: "untrusted", flag: "10.1.1.0/24"},
		{name: "no proxy setting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NYMOTE_PROXY", tc.env)
			args := []string{"--data", t.TempDir(), "--domain", "example.org", "--imap", "127.0.0.1:0", "--insecure-auth"}
			if tc.flag != "" {
				args = append(args, "--proxy", tc.flag)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			defer pr.Close()
			var logs testutil.Buffer
			done := make(chan error, 1)
			go func() {
				done <- mailsvc.Main(ctx, args, pw, &logs)
				pw.Close()
			}()
			var addr string
			sc := bufio.NewScanner(pr)
			for addr == "" && sc.Scan() {
				if a, ok := strings.CutPrefix(sc.Text(), "nymote: mail imap listening on "); ok {
					addr = a
				}
			}
			if addr == "" {
				t.Fatalf("no listening line; Main: %v; logs:\n%s", <-done, logs.String())
			}
			go io.Copy(io.Discard, pr)

			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute)) // only a hung test
			_, port, _ := net.SplitHostPort(addr)
			fmt.Fprintf(c, "PROXY TCP4 192.0.2.7 127.0.0.1 5000 %s\r\n", port)
			r := bufio.NewReader(c)
			greeting, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(greeting, "* OK") {
				t.Fatalf("greeting %q, %v", greeting, err)
			}
			if tc.trusted {
				fmt.Fprintf(c, "a1 LOGIN nobody wrongpassword\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						t.Fatalf("reading the LOGIN answer: %v", err)
					}
					if strings.HasPrefix(line, "a1 ") {
						if !strings.HasPrefix(line, "a1 NO") {
							t.Errorf("LOGIN with a wrong password: got %q, want NO", line)
						}
						break
					}
				}
				// The log line is written before the answer.
				var failed string
				for _, l := range strings.Split(logs.String(), "\n") {
					if strings.Contains(l, "imap: login failed") {
						failed = l
					}
				}
				if !strings.Contains(failed, "remote="+client) {
					t.Errorf("login failure logged as %q, want remote=%s in it; logs:\n%s", failed, client, logs.String())
				}
			} else {
				// The header is an unknown command to IMAP, which
				// answers BAD and hangs up (before login, one unknown
				// command is a cross-protocol attack).
				line, _ := r.ReadString('\n')
				if !strings.HasPrefix(line, "PROXY BAD") {
					t.Errorf("an untrusted connection's PROXY line: got %q, want a BAD answer (not read as a header)", line)
				}
				if rest, err := io.ReadAll(r); err != nil || !strings.Contains(string(rest), "BYE") {
					t.Errorf("after the BAD: got %q, %v; want a BYE and the connection closed", rest, err)
				}
				if strings.Contains(logs.String(), "192.0.2.7") {
					t.Errorf("the untrusted header's address is in the logs:\n%s", logs.String())
				}
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Main after cancel: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("Main did not return after cancel")
			}
		})
	}
}

// TestMainProxyBadSetting: a malformed --proxy is refused, naming the flag.
func TestMainProxyBadSetting(t *testing.T) {
	err := mailsvc.Main(context.Background(), []string{"--data", t.TempDir(), "--domain", "example.org",
		"--imap", "127.0.0.1:0", "--proxy", "10.0.0.0/99"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--proxy") {
		t.Errorf("Main --proxy 10.0.0.0/99: %v, want an error naming --proxy", err)
	}
}

// TestMainACMEFlags: the ACME flags are refused without --acme, and a
// missing --acme-ca file is named.
func TestMainACMEFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--acme-email", "a@example.org"}, "need --acme"},
		{[]string{"--acme", "https://ca.invalid/dir", "--acme-ca", "/nonexistent.pem"}, "--acme-ca"},
	} {
		args := append([]string{"--data", t.TempDir(), "--domain", "example.org", "--https", "127.0.0.1:0"}, tc.args...)
		err := mailsvc.Main(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Main %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
