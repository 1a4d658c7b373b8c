package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	msg := testMessage("cloned", "in git")
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
