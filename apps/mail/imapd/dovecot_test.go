package imapd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nymote/nymote/internal/testutil"
)

// An imapTarget is a server the conformance tests talk to: ours, or a
// private Dovecot to compare with where the RFC leaves room.
type imapTarget struct {
	name string
	addr string
	// users are the logins and their passwords.
	users map[string]string
}

// nymoteTarget serves a fresh store with users alice and bob.
func nymoteTarget(t *testing.T) imapTarget {
	h := start(t)
	return imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice", "bob": "password-bob"}}
}

// dovecotTarget starts a private Dovecot (Debian's dovecot-imapd) on a
// loopback port with its own configuration, users alice and bob and
// maildirs in a temporary folder, or skips when it is not installed or
// cannot run here (it runs the mail processes as nobody, so it needs root).
func dovecotTarget(t *testing.T) imapTarget {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/dovecot"); err2 != nil {
			t.Skip("dovecot is not installed (apt-get install -y dovecot-imapd): no comparison with Dovecot")
		}
		bin = "/usr/sbin/dovecot"
	}
	if os.Geteuid() != 0 {
		t.Skip("a private Dovecot runs its mail processes as nobody, which needs root")
	}
	dir, err := os.MkdirTemp("", "dovecot-conformance-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"run", "state", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "nobody:nogroup", filepath.Join(dir, "home")).CombinedOutput(); err != nil {
		t.Skipf("cannot give Dovecot's mail folder to nobody: %v: %s", err, out)
	}
	users := map[string]string{"alice": "password-alice", "bob": "password-bob"}
	var pw strings.Builder
	for u, p := range users {
		fmt.Fprintf(&pw, "%s:{PLAIN}%s\n", u, p)
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	conf := fmt.Sprintf(`protocols = imap
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%n %[1]s/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%[1]s/home/%%n
}
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  inet_listener imap {
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
`, dir, port)
	cf := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-c", cf)
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Skipf("starting dovecot: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM lets the master stop its children; SIGKILL only if it hangs.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second) // only a hung start waits this long
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "out"))
			log2, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("dovecot exited: %v\n%s%s", err, log, log2)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot does not listen on %s", addr)
		}
	}
	return imapTarget{name: "dovecot", addr: addr, users: users}
}

// rawSession talks IMAP by lines, to check the exact untagged responses.
type rawSession struct {
	t   testing.TB
	c   net.Conn
	r   *bufio.Reader
	n   int
	all []string // every untagged response so far, for checkFlagsAnnounced
}

// dialRaw connects and, if user is not "", logs in.
func dialRaw(t testing.TB, tg imapTarget, user string) *rawSession {
	t.Helper()
	c, err := net.Dial("tcp", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(2 * time.Minute)) // only a hung server waits this long
	s := &rawSession{t: t, c: c, r: bufio.NewReader(c)}
	if greeting := s.line(); !strings.HasPrefix(greeting, "* OK") {
		t.Fatalf("%s greeting: %q", tg.name, greeting)
	}
	if user != "" {
		if _, st := s.do("LOGIN %s %s", user, tg.users[user]); !strings.HasPrefix(st, "OK") {
			t.Fatalf("%s login %s: %s", tg.name, user, st)
		}
	}
	return s
}

var literalAtEnd = regexp.MustCompile(`\{(\d+)\}$`)

// line reads one response line, with the literals it holds inlined, and
// without its CRLF.
func (s *rawSession) line() string {
	s.t.Helper()
	var b strings.Builder
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading a response: %v (so far %q)", err, b.String()+l)
		}
		l = strings.TrimRight(l, "\r\n")
		b.WriteString(l)
		m := literalAtEnd.FindStringSubmatch(l)
		if m == nil {
			return b.String()
		}
		n, _ := strconv.Atoi(m[1])
		buf := make([]byte, n)
		if _, err := io.ReadFull(s.r, buf); err != nil {
			s.t.Fatalf("reading a literal: %v", err)
		}
		b.Write(buf)
	}
}

func (s *rawSession) send(format string, args ...any) string {
	s.t.Helper()
	s.n++
	tag := fmt.Sprintf("t%d", s.n)
	if _, err := fmt.Fprintf(s.c, tag+" "+format+"\r\n", args...); err != nil {
		s.t.Fatal(err)
	}
	return tag
}

// wait reads up to the tagged response of tag and returns the untagged
// responses before it and the tagged status without the tag.
func (s *rawSession) wait(tag string) (untagged []string, status string) {
	s.t.Helper()
	for {
		l := s.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimPrefix(l, tag+" ")
		}
		if strings.HasPrefix(l, "* ") {
			s.all = append(s.all, l)
		}
		untagged = append(untagged, l)
	}
}

// do sends a command and waits for its tagged response.
func (s *rawSession) do(format string, args ...any) (untagged []string, status string) {
	s.t.Helper()
	return s.wait(s.send(format, args...))
}

// appendMsg APPENDs msg with a synchronizing literal.
func (s *rawSession) appendMsg(mailbox, flags, msg string) (untagged []string, status string) {
	s.t.Helper()
	if flags != "" {
		flags = "(" + flags + ") "
	}
	tag := s.send("APPEND %s %s{%d}", mailbox, flags, len(msg))
	l := s.line()
	if strings.HasPrefix(l, tag+" ") {
		return nil, strings.TrimPrefix(l, tag+" ")
	}
	if !strings.HasPrefix(l, "+") {
		s.t.Fatalf("APPEND: got %q, want a continuation request", l)
	}
	if _, err := fmt.Fprintf(s.c, "%s\r\n", msg); err != nil {
		s.t.Fatal(err)
	}
	return s.wait(tag)
}

// ok is do, failing the test unless the status is OK.
func (s *rawSession) ok(format string, args ...any) []string {
	s.t.Helper()
	u, st := s.do(format, args...)
	if !strings.HasPrefix(st, "OK") {
		s.t.Fatalf("%s: got %s (untagged %q), want OK", fmt.Sprintf(format, args...), st, u)
	}
	return u
}

// idle starts IDLE and returns its tag once the server is idling.
func (s *rawSession) idle() string {
	s.t.Helper()
	tag := s.send("IDLE")
	for {
		l := s.line()
		if strings.HasPrefix(l, "+") {
			return tag
		}
		if strings.HasPrefix(l, tag+" ") {
			s.t.Fatalf("IDLE: %s", l)
		}
		s.all = append(s.all, l)
	}
}

// until reads untagged responses until one matches re and returns them.
func (s *rawSession) until(re string) []string {
	s.t.Helper()
	r := regexp.MustCompile(re)
	var got []string
	for {
		l := s.line()
		s.all = append(s.all, l)
		got = append(got, l)
		if r.MatchString(l) {
			return got
		}
	}
}

// done ends IDLE.
func (s *rawSession) done(tag string) []string {
	s.t.Helper()
	if _, err := fmt.Fprintf(s.c, "DONE\r\n"); err != nil {
		s.t.Fatal(err)
	}
	u, st := s.wait(tag)
	if !strings.HasPrefix(st, "OK") {
		s.t.Fatalf("IDLE: %s", st)
	}
	return u
}
