package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/nymote/nymote/apps/mail/mailsvc"
)

// TestTLSRequired: without --insecure-auth, logins need TLS (STARTTLS or
// implicit), on IMAP and on submission.
func TestTLSRequired(t *testing.T) {
	st := newStore(t, "alice")
	s := startServer(t, st, mailsvc.Config{}, nil)
	c, err := imapclient.DialInsecure(s.addrs["imap"], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", testPassword).Wait(); err == nil || !strings.Contains(err.Error(), "PRIVACYREQUIRED") {
		t.Errorf("LOGIN without TLS: got %v, want PRIVACYREQUIRED", err)
	}
	c2, err := imapclient.DialStartTLS(s.addrs["imap"], &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Login("alice", testPassword).Wait(); err != nil {
		t.Errorf("LOGIN after STARTTLS: %v", err)
	}
	sc, err := smtp.Dial(s.addrs["submission"])
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Auth(sasl.NewPlainClient("", "alice", testPassword)); err == nil {
		t.Error("AUTH on submission without TLS: got OK")
	}
	ss, err := smtp.DialTLS(s.addrs["submissions"], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	if err := ss.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Errorf("AUTH on submissions (implicit TLS): %v", err)
	}
	if !strings.Contains(s.out.String(), "nymote: mail tls certificate sha256 ") {
		t.Errorf("no fingerprint printed: %s", s.out.String())
	}
}

// TestGitClone: with --git, a user with git access clones the store and
// finds their mail in it.
func TestGitClone(t *testing.T) {
	git := need(t, "git", "git")
	st := newStore(t, "alice")
	s := startServer(t, st, mailDefaults(), nil)
	// From another domain: inbound mail claiming example.org from
	// outside is refused unless it passes DKIM or SPF.
	msg := strings.Replace(testMessage("cloned", "in git"), "alice@example.org", "carol@elsewhere.test", 1)
	sc, err := smtp.Dial(s.addrs["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.SendMail("x@elsewhere.test", []string{"alice@example.org"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	sc.Close()
	dir := t.TempDir()
	run(t, dir, git, "clone", "-q", "http://alice:"+strings.ReplaceAll(testPassword, " ", "%20")+"@"+s.addrs["git"]+"/", "mine")
	var found bool
	filepath.Walk(filepath.Join(dir, "mine", "mail", "alice"), func(p string, info os.FileInfo, err error) error {
		if strings.HasSuffix(p, ".eml") {
			b, _ := os.ReadFile(p)
			found = found || bytes.Contains(b, []byte("Subject: cloned"))
		}
		return nil
	})
	if !found {
		t.Error("the delivered message is not in the clone")
	}
}

// TestMainFlags: the program refuses bad flags with a message.
func TestMainFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--domain", "example.org", "--imap", "127.0.0.1:0"}, "--data"},
		{[]string{"--data", t.TempDir(), "--imap", "127.0.0.1:0"}, "--domain"},
		{[]string{"--data", t.TempDir(), "--domain", "example.org"}, "no listener"},
		{[]string{"--data", t.TempDir(), "--domain", "example.org", "--imap", "127.0.0.1:0", "extra"}, "unexpected"},
	} {
		var out, errb bytes.Buffer
		err := mailsvc.Main(context.Background(), tc.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Main(%q): got %v, want an error about %s", tc.args, err, tc.want)
		}
	}
}

// TestSMTPBadInput talks SMTP by hand: malformed and out-of-order commands,
// unknown and over-long users; each gets a 5xx and the session goes on;
// 8-bit headers and broken MIME are delivered as they are.
func TestSMTPBadInput(t *testing.T) {
	st := newStore(t, "alice")
	s := startServer(t, st, mailDefaults(), nil)
	conn, err := net.Dial("tcp", s.addrs["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hung))
	r := bufio.NewReader(conn)
	reply := func() string {
		t.Helper()
		var last string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading a reply: %v", err)
			}
			last = line
			if len(line) < 4 || line[3] != '-' {
				return strings.TrimSpace(last)
			}
		}
	}
	reply() // greeting
	for _, tc := range []struct{ cmd, want string }{
		{"EHLO client.test", "250"},
		// go-smtp hangs up after more than three of these: three it is.
		{"FROBNICATE", "5"},
		{"RCPT TO:<alice@example.org>", "5"},
		{"MAIL FROM:<bad", "5"},
		{"MAIL FROM:<x@elsewhere.test>", "250"},
		{"RCPT TO:<nobody@example.org>", "550"},
		{"RCPT TO:<alice+lists@example.org>", "250"},
		{"RCPT TO:<" + strings.Repeat("a", 300) + "@example.org>", "550"},
		{"NOOP", "250"},
		{"DATA", "354"},
		{"Subject: caf\xe9 \xff\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nbroken\r\n.", "250"},
		{"QUIT", "221"},
	} {
		if _, err := conn.Write([]byte(tc.cmd + "\r\n")); err != nil {
			t.Fatal(err)
		}
		if got := reply(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%.40q: got %q, want %s", tc.cmd, got, tc.want)
		}
	}
	got := s.messages(t, "alice", "INBOX")
	if len(got) != 1 || !strings.Contains(got[0], "caf\xe9 \xff") {
		t.Errorf("delivered: %q", got)
	}
}
