package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// These tests drive the service with real clients from Debian packages
// (make test-deps: apt-get install -y isync swaks curl python3).

func TestSwaks(t *testing.T) {
	swaks := need(t, "swaks", "swaks")
	if out, _ := runMayFail(t.TempDir(), swaks, "--support"); !strings.Contains(out, "TLS supported") {
		t.Skip("swaks has no TLS (apt-get install -y libnet-ssleay-perl); skipping")
	}
	st := newStore(t, "alice", "bob")
	s := startServer(t, st, mailDefaults(), nil)
	dir := t.TempDir()

	// Inbound: anyone may deliver to a local user.
	out := run(t, dir, swaks, "--server", s.addrs["smtp"], "--from", "someone@elsewhere.test", "--to", "alice@example.org",
		"--header", "Subject: inbound via swaks", "--body", "hello alice")
	if !strings.Contains(out, "<-  250") {
		t.Fatalf("swaks inbound: %s", out)
	}
	// Submission with AUTH over STARTTLS.
	out = run(t, dir, swaks, "--server", s.addrs["submission"], "-tls", "--auth", "PLAIN", "--auth-user", "alice",
		"--auth-password", testPassword, "--from", "alice@example.org", "--to", "bob@example.org",
		"--header", "Subject: submitted via swaks", "--body", "hello bob")
	if !strings.Contains(out, "235 ") || !strings.Contains(out, "<~  250") {
		t.Fatalf("swaks submission: %s", out)
	}
	bigFile := filepath.Join(dir, "big.txt")
	os.WriteFile(bigFile, []byte(strings.Repeat(strings.Repeat("x", 70)+"\r\n", 5000)), 0o600)
	// Refusals: relaying through the inbound port, unknown users, a wrong
	// password, AUTH before TLS is fine only because tests run with
	// --insecure-auth, so check that submission without AUTH is refused.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"relay", []string{"--server", s.addrs["smtp"], "--from", "x@elsewhere.test", "--to", "someone@other.test"}, "554"},
		{"unknown user", []string{"--server", s.addrs["smtp"], "--from", "x@elsewhere.test", "--to", "nobody@example.org"}, "550"},
		{"wrong password", []string{"--server", s.addrs["submission"], "-tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong", "--from", "alice@example.org", "--to", "bob@example.org"}, "535"},
		{"no auth", []string{"--server", s.addrs["submission"], "-tls", "--from", "alice@example.org", "--to", "bob@example.org"}, "502"},
		{"forged sender", []string{"--server", s.addrs["submission"], "-tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", testPassword, "--from", "bob@example.org", "--to", "bob@example.org"}, "553"},
		{"too big", []string{"--server", s.addrs["smtp"], "--from", "x@elsewhere.test", "--to", "alice@example.org", "--body", "@" + bigFile}, "552"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := append([]string{swaks}, tc.args...)
			out, _ := runMayFail(dir, cmd...)
			if !strings.Contains(out, "<** "+tc.want) && !strings.Contains(out, "<~* "+tc.want) {
				t.Errorf("got %s, want a %s reply", out, tc.want)
			}
		})
	}
	if got := s.messages(t, "alice", "INBOX"); len(got) != 1 || !strings.Contains(got[0], "inbound via swaks") || !strings.Contains(got[0], "Received: from") {
		t.Errorf("alice's INBOX: got %q", got)
	}
	if got := s.messages(t, "bob", "INBOX"); len(got) != 1 || !strings.Contains(got[0], "hello bob") {
		t.Errorf("bob's INBOX: got %q", got)
	}
}

func TestPythonImaplib(t *testing.T) {
	py := need(t, "python3", "python3")
	st := newStore(t, "alice")
	s := startServer(t, st, mailDefaults(), nil)
	host, port, _ := strings.Cut(s.addrs["imap"], ":")
	script := fmt.Sprintf(`
import imaplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4(%q, %s)
m.starttls(ssl_context=ctx)
m.login("alice", %q)
msg = b"From: py@example.org\r\nSubject: from python\r\n\r\nhello from imaplib\r\n"
typ, data = m.append("INBOX", r"(\Flagged)", None, msg)
assert typ == "OK", (typ, data)
assert b"APPENDUID" in data[0], data
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"1", (typ, data)
typ, data = m.fetch("1", "(FLAGS RFC822)")
assert typ == "OK", (typ, data)
assert data[0][1] == msg, data
assert b"\\Flagged" in data[0][0], data
typ, data = m.search(None, "SUBJECT", "python")
assert data[0] == b"1", data
typ, data = m.uid("SEARCH", "FROM", "py@")
assert data[0] == b"1", data
m.store("1", "+FLAGS", r"(\Deleted)")
m.expunge()
typ, data = m.status("INBOX", "(MESSAGES)")
assert b"MESSAGES 0" in data[0], data
m.logout()
print("ok")
`, host, port, testPassword)
	out := run(t, t.TempDir(), py, "-c", script)
	if strings.TrimSpace(out) != "ok" {
		t.Fatalf("python: %s", out)
	}
}

func TestCurlIMAPS(t *testing.T) {
	curl := need(t, "curl", "curl")
	st := newStore(t, "alice")
	s := startServer(t, st, mailDefaults(), nil)
	c := s.imap(t, "alice")
	msg := testMessage("for curl", "read me over IMAPS")
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	cmd.Write([]byte(msg))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cafile := filepath.Join(dir, "cert.pem")
	os.WriteFile(cafile, s.certPEM, 0o600)
	// The generated certificate, pinned as the CA: curl verifies it.
	out := run(t, dir, curl, "-sS", "--cacert", cafile, "--user", "alice:"+testPassword,
		"imaps://"+strings.Replace(s.addrs["imaps"], "127.0.0.1", "localhost", 1)+"/INBOX;UID=1")
	if strings.ReplaceAll(out, "\r\n", "\n") != strings.ReplaceAll(msg, "\r\n", "\n") {
		t.Fatalf("curl: got %q, want %q", out, msg)
	}
	// A wrong password is refused.
	if out, err := runMayFail(dir, curl, "-sS", "-k", "--user", "alice:wrong", "imaps://"+s.addrs["imaps"]+"/INBOX;UID=1"); err == nil {
		t.Fatalf("curl with a wrong password: %s", out)
	}
}

func TestMbsync(t *testing.T) {
	mbsync := need(t, "mbsync", "isync")
	st := newStore(t, "alice")
	s := startServer(t, st, mailDefaults(), nil)
	c := s.imap(t, "alice")
	for i := 1; i <= 2; i++ {
		msg := testMessage(fmt.Sprintf("server %d", i), "on the server")
		cmd := c.Append("INBOX", int64(len(msg)), nil)
		cmd.Write([]byte(msg))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Mail")
	os.MkdirAll(maildir, 0o700)
	cafile := filepath.Join(dir, "cert.pem")
	os.WriteFile(cafile, s.certPEM, 0o600)
	host, port, _ := strings.Cut(s.addrs["imaps"], ":")
	rc := fmt.Sprintf(`IMAPAccount nymote
Host %s
Port %s
User alice
Pass "%s"
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account nymote

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, host, port, testPassword, cafile, maildir, maildir)
	rcfile := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(rcfile, []byte(rc), 0o600)
	sync := func() { run(t, dir, mbsync, "-c", rcfile, "-a") }

	sync()
	local := func() []string {
		var files []string
		for _, sub := range []string{"new", "cur"} {
			es, _ := os.ReadDir(filepath.Join(maildir, "INBOX", sub))
			for _, e := range es {
				files = append(files, filepath.Join(maildir, "INBOX", sub, e.Name()))
			}
		}
		return files
	}
	if n := len(local()); n != 2 {
		t.Fatalf("after the first sync: %d local messages, want 2", n)
	}
	for _, mb := range []string{"Sent", "Trash", "Drafts"} {
		if _, err := os.Stat(filepath.Join(maildir, mb)); err != nil {
			t.Errorf("mailbox %s not synced: %v", mb, err)
		}
	}
	// New mail locally goes up; a flag set locally goes up.
	newMsg := testMessage("local", "written in the maildir")
	os.WriteFile(filepath.Join(maildir, "INBOX", "new", fmt.Sprintf("%d.local.host", time.Now().UnixNano())), []byte(newMsg), 0o600)
	f := local()[0]
	if strings.Contains(f, "/new/") {
		nf := strings.Replace(f, "/new/", "/cur/", 1) + ":2,F"
		if strings.Contains(f, ":2,") {
			nf = f + "F"
		}
		os.Rename(f, nf)
	} else {
		os.Rename(f, f+"F")
	}
	sync()
	got := s.messages(t, "alice", "INBOX")
	if len(got) != 3 || !strings.Contains(got[2], "written in the maildir") {
		t.Fatalf("server after upload: %d messages", len(got))
	}
	flagged, err := c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, nil).Wait()
	if _, err2 := c.Select("INBOX", nil).Wait(); err2 != nil {
		t.Fatal(err2)
	}
	flagged, err = c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, nil).Wait()
	if err != nil || len(flagged.AllUIDs()) != 1 {
		t.Errorf("flag set in the maildir: server has %v flagged (%v)", flagged.AllUIDs(), err)
	}
	// A deletion on the server goes down; new mail on the server goes down.
	if _, err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	msg := testMessage("server 3", "more from the server")
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	cmd.Write([]byte(msg))
	cmd.Close()
	cmd.Wait()
	sync()
	files := local()
	if len(files) != 3 {
		t.Fatalf("after deleting one and adding one on the server: %d local messages, want 3", len(files))
	}
	var all string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all += string(b)
	}
	if strings.Contains(all, "Subject: server 2") || !strings.Contains(all, "Subject: server 3") {
		t.Errorf("local maildir after sync has the wrong messages")
	}
	_ = imapclient.Options{}
}

func mailDefaults() mailsvcConfig {
	return mailsvcConfig{MaxMessageBytes: 200000, InsecureAuth: true}
}
