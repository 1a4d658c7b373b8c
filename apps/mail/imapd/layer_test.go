package imapd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// Tests of the protocol layer (proto.go) and of the commands it answers.

// TestRFC9208Quota is RFC 9208's commands, over raw protocol lines.
func TestRFC9208Quota(t *testing.T) {
	tg := func(h *harness) imapTarget {
		return imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}
	}
	body := "Subject: q\r\n\r\n" + strings.Repeat("x", 1500) + "\r\n" // 1517 bytes: 2 KiB
	for _, tc := range []struct {
		name  string
		quota store.Quota
		run   func(t *testing.T, s *rawSession)
	}{
		{"3, 4.3.2: GETQUOTAROOT names the user's root and its usage (STORAGE in KiB, rounded up)", store.Quota{StorageKiB: 10, Messages: 5}, func(t *testing.T, s *rawSession) {
			s.appendOK("INBOX", body)
			u := s.ok("GETQUOTAROOT INBOX")
			want := []string{`* QUOTAROOT INBOX ""`, `* QUOTA "" (STORAGE 2 10 MESSAGE 1 5)`}
			if fmt.Sprint(u) != fmt.Sprint(want) {
				t.Errorf("GETQUOTAROOT INBOX: %q, want %q", u, want)
			}
			// Usage is over all of the user's mailboxes.
			s.appendOK("Archive", body)
			if u := s.ok(`GETQUOTA ""`); len(u) != 1 || u[0] != `* QUOTA "" (STORAGE 3 10 MESSAGE 2 5)` {
				t.Errorf(`GETQUOTA "": %q`, u)
			}
		}},
		{"5.1: only limited resources are listed", store.Quota{Messages: 3}, func(t *testing.T, s *rawSession) {
			if u := s.ok(`GETQUOTA ""`); len(u) != 1 || u[0] != `* QUOTA "" (MESSAGE 0 3)` {
				t.Errorf(`GETQUOTA "": %q`, u)
			}
		}},
		{"a user without limits has no quota root", store.Quota{}, func(t *testing.T, s *rawSession) {
			if u := s.ok("GETQUOTAROOT INBOX"); len(u) != 1 || u[0] != "* QUOTAROOT INBOX" {
				t.Errorf("GETQUOTAROOT INBOX: %q, want no root", u)
			}
			wantStatus(t, `GETQUOTA ""`, second(s.do(`GETQUOTA ""`)), "NO [NONEXISTENT]")
		}},
		{"4.3.1: GETQUOTA of another root is NO", store.Quota{Messages: 3}, func(t *testing.T, s *rawSession) {
			wantStatus(t, "GETQUOTA bob", second(s.do("GETQUOTA bob")), "NO [NONEXISTENT]")
		}},
		{"4.3.2: GETQUOTAROOT of a mailbox that does not exist is NO", store.Quota{Messages: 3}, func(t *testing.T, s *rawSession) {
			wantStatus(t, "GETQUOTAROOT Nope", second(s.do("GETQUOTAROOT Nope")), "NO [NONEXISTENT]")
		}},
		{"4.3.3: SETQUOTA is refused (the administrator sets quotas)", store.Quota{Messages: 3}, func(t *testing.T, s *rawSession) {
			wantStatus(t, "SETQUOTA", second(s.do(`SETQUOTA "" (STORAGE 1)`)), "NO [NOPERM]")
		}},
		{"syntax errors are BAD and leave the session usable", store.Quota{Messages: 3}, func(t *testing.T, s *rawSession) {
			wantStatus(t, "GETQUOTAROOT", second(s.do("GETQUOTAROOT")), "BAD")
			wantStatus(t, "GETQUOTAROOT a b", second(s.do("GETQUOTAROOT a b")), "BAD")
			wantStatus(t, `GETQUOTA "open`, second(s.do(`GETQUOTA "open`)), "BAD")
			wantStatus(t, "GETQUOTAROOT &Jjo", second(s.do("GETQUOTAROOT &Jjo")), "BAD")
			s.ok("NOOP")
		}},
		{"mailbox names in modified UTF-7, quoted, or as literals", store.Quota{Messages: 3}, func(t *testing.T, s *rawSession) {
			s.ok(`CREATE "&AOk-t&AOk-"`)
			if u := s.ok(`GETQUOTAROOT "&AOk-t&AOk-"`); len(u) != 2 || u[0] != `* QUOTAROOT &AOk-t&AOk- ""` {
				t.Errorf("GETQUOTAROOT été: %q", u)
			}
			// A synchronizing literal: the server asks for it.
			tag := s.send("GETQUOTAROOT {5}")
			if l := s.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("after a literal's announcement: %q, want +", l)
			}
			fmt.Fprintf(s.c, "INBOX\r\n")
			if u, st := s.wait(tag); !strings.HasPrefix(st, "OK") || len(u) != 2 {
				t.Errorf("GETQUOTAROOT {5}: %s %q", st, u)
			}
			// A non-synchronizing one (LITERAL+).
			if u := s.ok("GETQUOTAROOT {5+}\r\nINBOX"); len(u) != 2 {
				t.Errorf("GETQUOTAROOT {5+}: %q", u)
			}
			// Too large a literal is refused before it is sent.
			tag = s.send("GETQUOTAROOT {100000}")
			if _, st := s.wait(tag); !strings.HasPrefix(st, "BAD") {
				t.Errorf("GETQUOTAROOT {100000}: %s, want BAD", st)
			}
			s.ok("NOOP")
		}},
		{"RFC 9208 4.2: STATUS DELETED and DELETED-STORAGE", store.Quota{Messages: 3}, func(t *testing.T, s *rawSession) {
			s.appendOK("INBOX", body)
			s.appendOK("INBOX", "Subject: s\r\n\r\nshort\r\n")
			s.ok("SELECT INBOX")
			s.ok(`STORE 1 +FLAGS (\Deleted)`)
			if u := s.ok("STATUS INBOX (DELETED DELETED-STORAGE)"); len(u) != 1 || u[0] != "* STATUS INBOX (DELETED 1 DELETED-STORAGE 2)" {
				t.Errorf("STATUS: %q", u)
			}
		}},
		{"capabilities: announced after login, in LOGIN's OK and CAPABILITY", store.Quota{}, func(t *testing.T, s *rawSession) {
			u := s.ok("CAPABILITY")
			if len(u) != 1 || !strings.Contains(u[0]+" ", " "+layerCaps+" ") {
				t.Errorf("CAPABILITY: %q, want %s", u, layerCaps)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t)
			if err := h.st.SetQuota(context.Background(), "alice", tc.quota); err != nil {
				t.Fatal(err)
			}
			s := dialRaw(t, tg(h), "alice")
			tc.run(t, s)
		})
	}

	t.Run("before login: not announced, BAD without BYE", func(t *testing.T) {
		h := start(t)
		s := dialRaw(t, tg(h), "")
		if u := s.ok("CAPABILITY"); strings.Contains(u[0], "QUOTA") {
			t.Errorf("CAPABILITY before login: %q, want no QUOTA", u)
		}
		wantStatus(t, "GETQUOTAROOT before login", second(s.do("GETQUOTAROOT INBOX")), "BAD")
		_, st := s.do("LOGIN alice password-alice")
		if !strings.HasPrefix(st, "OK [CAPABILITY ") || !strings.Contains(st, " "+layerCaps+"]") {
			t.Errorf("LOGIN: %s, want the QUOTA capabilities in its CAPABILITY code", st)
		}
		s.ok("UNAUTHENTICATE")
		if u := s.ok("CAPABILITY"); strings.Contains(u[0], "QUOTA") {
			t.Errorf("CAPABILITY after UNAUTHENTICATE: %q, want no QUOTA", u)
		}
	})
}

func second(_ []string, st string) string { return st }

// readTagged reads responses until the tagged ones of tags, in order, have
// come, and returns every line.
func (s *rawSession) readTagged(tags ...string) []string {
	s.t.Helper()
	var lines []string
	for len(tags) > 0 {
		l := s.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, tags[0]+" ") {
			tags = tags[1:]
		} else if !strings.HasPrefix(l, "* ") && !strings.HasPrefix(l, "+") {
			s.t.Fatalf("out of order: %q while waiting for %s (so far %q)", l, tags[0], lines)
		}
	}
	return lines
}

// index is the position of the first line matching re, or -1.
func index(lines []string, re string) int {
	r := regexp.MustCompile(re)
	for i, l := range lines {
		if r.MatchString(l) {
			return i
		}
	}
	return -1
}

// TestLayerPipelining: commands the layer answers, pipelined between
// commands it passes to imapserver, are answered in order, each after the
// command before it has completed; literals are passed whole, never taken
// for commands.
func TestLayerPipelining(t *testing.T) {
	h := start(t)
	if err := h.st.SetQuota(context.Background(), "alice", store.Quota{Messages: 100}); err != nil {
		t.Fatal(err)
	}
	s := dialRaw(t, imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}, "alice")

	// One write: passed, ours, passed (with a non-synchronizing literal
	// holding a line that looks like one of our commands), ours, passed.
	msg := "Subject: p\r\n\r\nz GETQUOTAROOT INBOX\r\n"
	if _, err := fmt.Fprintf(s.c, "a NOOP\r\nb GETQUOTAROOT INBOX\r\nc APPEND INBOX {%d+}\r\n%s\r\nd GETQUOTA \"\"\r\ne SELECT INBOX\r\nf GETQUOTA \"\"\r\ng FETCH 1 (BODY.PEEK[TEXT])\r\n", len(msg), msg); err != nil {
		t.Fatal(err)
	}
	lines := s.readTagged("a", "b", "c", "d", "e", "f", "g")
	for _, w := range []struct{ re, after, before string }{
		{`^\* QUOTA "" \(MESSAGE 0 100\)$`, `^a OK`, `^b OK`},
		{`^\* QUOTA "" \(MESSAGE 1 100\)$`, `^c OK`, `^d OK`},
		{`^\* 1 EXISTS$`, `^d OK`, `^e OK`},
	} {
		i, a, b := index(lines, w.re), index(lines, w.after), index(lines, w.before)
		if i < 0 || i < a || i > b {
			t.Errorf("%s: at %d, want between %s (%d) and %s (%d): %q", w.re, i, w.after, a, w.before, b, lines)
		}
	}
	if index(lines, `^z `) >= 0 || index(lines, `z GETQUOTAROOT INBOX`) < 0 {
		t.Errorf("the literal's line was taken for a command, or not stored: %q", lines)
	}

	// A synchronizing literal refused by imapserver (over the APPEND
	// limit) is never sent: what follows is the next command.
	tag := s.send("APPEND INBOX {2000000}")
	if l := s.line(); !strings.HasPrefix(l, tag+" NO [TOOBIG]") {
		t.Fatalf("APPEND over the limit: %q, want NO [TOOBIG]", l)
	}
	if u := s.ok(`GETQUOTA ""`); len(u) != 1 || !strings.Contains(u[0], "MESSAGE 1 100") {
		t.Errorf("GETQUOTA after a refused literal: %q", u)
	}
	// A synchronizing literal accepted: the layer passes it after
	// imapserver's continuation request.
	s.appendOK("INBOX", msg)
	if u := s.ok(`GETQUOTA ""`); len(u) != 1 || !strings.Contains(u[0], "MESSAGE 2 100") {
		t.Errorf("GETQUOTA after APPEND: %q", u)
	}
	// AUTHENTICATE's continuation lines are passed, not parsed.
	s2 := dialRaw(t, imapTarget{name: "nymote", addr: h.addr}, "")
	tag = s2.send("AUTHENTICATE PLAIN")
	if l := s2.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("AUTHENTICATE: %q, want +", l)
	}
	fmt.Fprintf(s2.c, "AGFsaWNlAHBhc3N3b3JkLWFsaWNl\r\n") // \0alice\0password-alice
	if _, st := s2.wait(tag); !strings.HasPrefix(st, "OK") {
		t.Fatalf("AUTHENTICATE: %s", st)
	}
	if u := s2.ok(`GETQUOTA ""`); len(u) != 1 {
		t.Errorf("GETQUOTA after AUTHENTICATE: %q", u)
	}
}

// TestLayerIdle: IDLE's DONE is passed to imapserver, and a command of the
// layer pipelined after it is answered after IDLE's completion.
func TestLayerIdle(t *testing.T) {
	h := start(t)
	if err := h.st.SetQuota(context.Background(), "alice", store.Quota{Messages: 100}); err != nil {
		t.Fatal(err)
	}
	tg := imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}
	a := dialRaw(t, tg, "alice")
	b := dialRaw(t, tg, "alice")
	a.ok("SELECT INBOX")
	idle := a.idle()
	b.appendOK("INBOX", "Subject: i\r\n\r\nidle\r\n")
	a.until(`^\* 1 EXISTS$`)
	if _, err := fmt.Fprintf(a.c, "DONE\r\nq GETQUOTA \"\"\r\n"); err != nil {
		t.Fatal(err)
	}
	lines := a.readTagged(idle, "q")
	if i := index(lines, `^\* QUOTA "" \(MESSAGE 1 100\)$`); i != len(lines)-2 {
		t.Errorf("after IDLE: %q, want the QUOTA response after IDLE's OK", lines)
	}
	// IDLE again, after one of ours.
	idle = a.idle()
	b.appendOK("INBOX", "Subject: i\r\n\r\nidle\r\n")
	a.until(`^\* 2 EXISTS$`)
	a.done(idle)
	// IDLE, DONE and one of ours in one write, DONE before the server's
	// "+": DONE is still IDLE's, not a command.
	if _, err := fmt.Fprintf(a.c, "i2 IDLE\r\nDONE\r\nq2 GETQUOTA \"\"\r\n"); err != nil {
		t.Fatal(err)
	}
	lines = a.readTagged("i2", "q2")
	if index(lines, `^\+`) < 0 || index(lines, `^\* QUOTA "" \(MESSAGE 2 100\)$`) != len(lines)-2 || !strings.HasPrefix(lines[len(lines)-1], "q2 OK") {
		t.Errorf("IDLE, DONE and GETQUOTA in one write: %q", lines)
	}
}

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestLayerTLS: STARTTLS (the layer's) and implicit TLS, with login refused
// in clear text.
func TestLayerTLS(t *testing.T) {
	st, err := store.InitData(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(context.Background(), "alice", "password-alice", store.GitNone); err != nil {
		t.Fatal(err)
	}
	ms, err := mailstore.Open(st, mailstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Enough messages for the responses of a FETCH of flags to go out in
	// several writes of the fast path (fetchflags.go), each in several
	// TLS records.
	const n = 3000
	u, _ := ms.User(context.Background(), "alice")
	inbox, _ := u.Mailbox("INBOX")
	err = ms.Update(context.Background(), "alice", "fill", func(w *mailstore.Writer) error {
		for i := range n {
			if _, err := w.Append(inbox, []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i)), []imap.Flag{imap.FlagSeen}, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := selfSigned(t)
	srv := New(Options{Mail: ms, TLSConfig: cfg, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln993, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	go srv.ServeTLS(ln993, cfg)
	t.Cleanup(func() { srv.Close(); ms.Close(); st.Close() })
	clientCfg := &tls.Config{InsecureSkipVerify: true}
	tg := imapTarget{name: "nymote", addr: ln.Addr().String()}

	afterTLS := func(s *rawSession) {
		t.Helper()
		u := s.ok("CAPABILITY")
		if strings.Contains(u[0], "STARTTLS") || strings.Contains(u[0], "LOGINDISABLED") || !strings.Contains(u[0], "AUTH=PLAIN") {
			t.Errorf("CAPABILITY under TLS: %q", u)
		}
		if _, st := s.do("LOGIN alice password-alice"); !strings.HasPrefix(st, "OK") {
			t.Fatalf("LOGIN under TLS: %s", st)
		}
		if u := s.ok("GETQUOTAROOT INBOX"); len(u) != 1 {
			t.Errorf("GETQUOTAROOT under TLS: %q", u)
		}
		s.ok("SELECT INBOX")
		u = s.ok("FETCH 1:* (FLAGS)")
		re := regexp.MustCompile(`^\* (\d+) FETCH \(UID (\d+) FLAGS \(\\Seen( \\Recent)?\)\)$`)
		if len(u) != n {
			t.Fatalf("FETCH 1:* (FLAGS) under TLS: %d responses, want %d", len(u), n)
		}
		for i, l := range u {
			if m := re.FindStringSubmatch(l); m == nil || m[1] != strconv.Itoa(i+1) || m[2] != m[1] {
				t.Fatalf("FETCH 1:* (FLAGS) under TLS: response %d is %q", i, l)
			}
		}
		s.ok("LOGOUT")
	}

	t.Run("STARTTLS", func(t *testing.T) {
		s := dialRaw(t, tg, "")
		u := s.ok("CAPABILITY")
		if !strings.Contains(u[0], "STARTTLS") || !strings.Contains(u[0], "LOGINDISABLED") {
			t.Errorf("CAPABILITY in clear text: %q", u)
		}
		if _, st := s.do("LOGIN alice password-alice"); strings.HasPrefix(st, "OK") {
			t.Fatalf("LOGIN in clear text: %s", st)
		}
		wantStatus(t, "STARTTLS x", second(s.do("STARTTLS x")), "BAD")
		if _, st := s.do("STARTTLS"); !strings.HasPrefix(st, "OK") {
			t.Fatalf("STARTTLS: %s", st)
		}
		tc := tls.Client(s.c, clientCfg)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		s.c, s.r = tc, bufio.NewReader(tc)
		// No second greeting: the first line is CAPABILITY's.
		afterTLS(s)
	})
	t.Run("implicit TLS", func(t *testing.T) {
		c, err := tls.Dial("tcp", ln993.Addr().String(), clientCfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		s := &rawSession{t: t, c: c, r: bufio.NewReader(c)}
		if g := s.line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("greeting: %q", g)
		}
		afterTLS(s)
	})
	t.Run("clear text after STARTTLS is refused", func(t *testing.T) {
		s := dialRaw(t, tg, "")
		if _, err := fmt.Fprintf(s.c, "a STARTTLS\r\nb LOGIN alice password-alice\r\n"); err != nil {
			t.Fatal(err)
		}
		if l := s.line(); !strings.HasPrefix(l, "* BYE") {
			t.Errorf("STARTTLS with a command after it: %q, want BYE", l)
		}
	})
	t.Run("STARTTLS twice", func(t *testing.T) {
		c, err := tls.Dial("tcp", ln993.Addr().String(), clientCfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		s := &rawSession{t: t, c: c, r: bufio.NewReader(c)}
		s.line()
		wantStatus(t, "STARTTLS under TLS", second(s.do("STARTTLS")), "BAD")
		s.ok("NOOP")
	})
}

// TestLayerPassThroughLiterals: commands the layer passes on, with
// synchronizing literals that imapserver asks for (LOGIN, SEARCH), and a
// command line longer than the layer's buffers, reach imapserver whole.
func TestLayerPassThroughLiterals(t *testing.T) {
	h := start(t)
	s := dialRaw(t, imapTarget{name: "nymote", addr: h.addr}, "")
	// LOGIN {5} alice {14} password-alice: two continuation requests.
	tag := s.send("LOGIN {5}")
	if l := s.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("LOGIN {5}: %q, want +", l)
	}
	fmt.Fprintf(s.c, "alice {14}\r\n")
	if l := s.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("LOGIN's second literal: %q, want +", l)
	}
	fmt.Fprintf(s.c, "password-alice\r\n")
	if _, st := s.wait(tag); !strings.HasPrefix(st, "OK") {
		t.Fatalf("LOGIN with literals: %s", st)
	}
	s.appendOK("INBOX", "Subject: needle\r\n\r\nhay\r\n")
	s.appendOK("INBOX", "Subject: other\r\n\r\nhay\r\n")
	s.ok("SELECT INBOX")
	tag = s.send("SEARCH SUBJECT {6}")
	if l := s.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("SEARCH {6}: %q, want +", l)
	}
	fmt.Fprintf(s.c, "needle\r\n")
	if u, st := s.wait(tag); !strings.HasPrefix(st, "OK") || len(u) != 1 || u[0] != "* SEARCH 1" {
		t.Errorf("SEARCH with a literal: %s %q", st, u)
	}
	// A 20 KiB command line (a long sequence set), then one of ours.
	var set []string
	for i := 1; len(strings.Join(set, ",")) < 20<<10; i += 2 {
		set = append(set, fmt.Sprint(i))
	}
	if _, err := fmt.Fprintf(s.c, "long FETCH %s (FLAGS)\r\nq GETQUOTAROOT INBOX\r\n", strings.Join(set, ",")); err != nil {
		t.Fatal(err)
	}
	lines := s.readTagged("long", "q")
	if !strings.HasPrefix(lines[len(lines)-1], "q OK") || index(lines, `^long OK`) < 0 || index(lines, `^\* QUOTAROOT INBOX$`) < index(lines, `^long OK`) {
		t.Errorf("a long line, then GETQUOTAROOT: %q", lines)
	}
	// A non-synchronizing literal over the layer's bound for its own
	// commands is not read: the connection ends.
	s2 := dialRaw(t, imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}, "alice")
	if _, err := fmt.Fprintf(s2.c, "big GETQUOTAROOT {100000+}\r\n"); err != nil {
		t.Fatal(err)
	}
	if l := s2.line(); !strings.HasPrefix(l, "* BYE") {
		t.Errorf("a literal of 100000 bytes for GETQUOTAROOT: %q, want BYE", l)
	}
}

// TestLayerGuardLoggedIn: guard.LoggedIn finds the guarded connection
// beneath imapserver's (the layer's innerConn, TLS after STARTTLS, the
// corkConn), so that the connection guard's login timeout stops at login.
func TestLayerGuardLoggedIn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := guard.NewListener(ln, guard.ListenerOptions{})
	defer gl.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	gc, err := gl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	cc := &corkConn{Conn: gc}
	for _, outer := range []net.Conn{cc, tls.Server(cc, selfSigned(t))} {
		p := &proto{raw: cc, outer: outer}
		var c net.Conn = &innerConn{p: p}
		found := false
		for c != nil && !found {
			if _, ok := c.(*guard.Conn); ok {
				found = true
				break
			}
			u, ok := c.(interface{ NetConn() net.Conn })
			if !ok {
				break
			}
			c = u.NetConn()
		}
		if !found {
			t.Errorf("from the innerConn over %T, no *guard.Conn beneath", outer)
		}
	}
}

// recordConn records what is written to it.
type recordConn struct {
	net.Conn
	buf []byte
}

func (c *recordConn) Write(b []byte) (int, error) {
	c.buf = append(c.buf, b...)
	return len(b), nil
}

// TestLayerOutputFraming: however imapserver's writes are split, the layer
// passes its output unchanged but for the capability lists it extends,
// skips literals (a "+" or "* CAPABILITY" inside one is data), and sees
// each continuation request once.
func TestLayerOutputFraming(t *testing.T) {
	lit := "+ not a continuation\r\n* CAPABILITY NOT ONE\r\n{3}\r\n"
	in := "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] IMAP server ready\r\n" +
		fmt.Sprintf("* 1 FETCH (UID 1 BODY[] {%d}\r\n%s)\r\n", len(lit), lit) +
		"* 2 FETCH (UID 2 BINARY[] ~{5}\r\n+ \r\n* FLAGS (\\Seen))\r\n" +
		"+ idling\r\n" +
		"* " + strings.Repeat("LONG ", 40) + "\r\n" +
		"* CAPABILITY IMAP4rev1 IDLE\r\n" +
		"a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n" +
		"* CAPABILITYX is not one\r\n"
	want := strings.NewReplacer(
		"IMAP4rev1 AUTH=PLAIN]", "IMAP4rev1 AUTH=PLAIN "+layerCaps+"]",
		"* CAPABILITY IMAP4rev1 IDLE\r\n", "* CAPABILITY IMAP4rev1 IDLE "+layerCaps+"\r\n",
		"IMAP4rev1 IDLE] Logged in", "IMAP4rev1 IDLE "+layerCaps+"] Logged in",
	).Replace(in)
	rng := mrand.New(mrand.NewPCG(1, 2))
	for round := range 500 {
		rc := &recordConn{}
		p := &proto{outer: rc}
		p.sess.Store(&Session{user: &mailstore.User{Name: "alice"}})
		c := &innerConn{p: p}
		conts := 0
		for rest := []byte(in); len(rest) > 0; {
			n := 1 + rng.IntN(min(len(rest), 40))
			if round == 0 {
				n = len(rest) // one write
			}
			if _, err := p.write(c, rest[:n]); err != nil {
				t.Fatal(err)
			}
			if p.cont.Swap(false) {
				conts++
			}
			rest = rest[n:]
		}
		if string(rc.buf) != want {
			t.Fatalf("round %d: output\n%q\nwant\n%q", round, rc.buf, want)
		}
		if conts != 1 {
			t.Fatalf("round %d: %d continuation requests seen, want 1", round, conts)
		}
	}
}

// TestLayerInputSplit: a pipelined stream of commands (passed on and the
// layer's, with a non-synchronizing literal) sent a few bytes per write is
// answered as when sent whole.
func TestLayerInputSplit(t *testing.T) {
	h := start(t)
	if err := h.st.SetQuota(context.Background(), "alice", store.Quota{Messages: 100}); err != nil {
		t.Fatal(err)
	}
	s := dialRaw(t, imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}, "alice")
	msg := "Subject: split\r\n\r\nq GETQUOTA \"\"\r\n"
	stream := fmt.Sprintf("a NOOP\r\nb GETQUOTAROOT {5+}\r\nINBOX\r\nc APPEND INBOX {%d+}\r\n%s\r\nd GETQUOTA \"\"\r\ne SELECT INBOX\r\nf UID SORT (SIZE) UTF-8 ALL\r\n", len(msg), msg)
	rng := mrand.New(mrand.NewPCG(3, 4))
	go func() {
		for rest := []byte(stream); len(rest) > 0; {
			n := 1 + rng.IntN(min(len(rest), 7))
			if _, err := s.c.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
	}()
	lines := s.readTagged("a", "b", "c", "d", "e", "f")
	for _, re := range []string{`^\* QUOTAROOT INBOX ""$`, `^\* QUOTA "" \(MESSAGE 1 100\)$`, `^\* SORT 1$`} {
		if index(lines, re) < 0 {
			t.Errorf("no %s in %q", re, lines)
		}
	}
	if index(lines, `^q `) >= 0 {
		t.Errorf("a literal's line answered as a command: %q", lines)
	}
}
