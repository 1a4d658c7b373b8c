package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/cmd/nymote/cli"
	"github.com/nymote/nymote/store"
)

// zoneServer is a test DNS server answering from zone-file text.
type zoneServer struct {
	mu  sync.Mutex
	rrs []dns.RR
}

// add parses zone text (what nymote mail dns prints) into the server.
func (z *zoneServer) add(t *testing.T, text string) {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "")
	z.mu.Lock()
	defer z.mu.Unlock()
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		z.rrs = append(z.rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("parsing the zone: %v\n%s", err, text)
	}
}

// start serves the zone on loopback UDP and TCP and returns a resolver
// that asks it.
func (z *zoneServer) start(t *testing.T) *net.Resolver {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		z.mu.Lock()
		for _, q := range r.Question {
			exists := false
			name := q.Name
			for hops := 0; hops < 8; hops++ {
				var cname string
				for _, rr := range z.rrs {
					if !strings.EqualFold(rr.Header().Name, name) {
						continue
					}
					exists = true
					if rr.Header().Rrtype == q.Qtype {
						m.Answer = append(m.Answer, rr)
					} else if c, ok := rr.(*dns.CNAME); ok {
						// As a server does: the alias and its target's records.
						m.Answer = append(m.Answer, rr)
						cname = c.Target
					}
				}
				if cname == "" {
					break
				}
				name = cname
			}
			if !exists {
				m.Rcode = dns.RcodeNameError
			}
		}
		z.mu.Unlock()
		if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
			// Over UDP, what fits; the client asks again over TCP.
			size := dns.MinMsgSize
			if o := r.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: handler}
	tcp := &dns.Server{Listener: tl, Handler: handler}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// mailDNS runs nymote mail dns on a closed store's data directory.
func mailDNS(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if rc := cli.Main(context.Background(), append([]string{"mail", "dns"}, args...), cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb}); rc != 0 {
		t.Fatalf("nymote mail dns %s: %d\n%s", strings.Join(args, " "), rc, errb.String())
	}
	return out.String()
}

// dataStore makes a data directory with users, runs fn on it while the
// store is closed (the host tool's turn), and opens it again.
func dataStore(t *testing.T, fn func(dir string), users ...string) *store.Store {
	t.Helper()
	dir := t.TempDir()
	st, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if err := st.AddUser(context.Background(), u, testPassword, store.GitNone); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	fn(dir)
	st, err = store.OpenData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// smtpDialog talks SMTP line by line from a chosen local address.
type smtpDialog struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialSMTP(t *testing.T, from, addr string) *smtpDialog {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hung))
	s := &smtpDialog{t: t, c: c, r: bufio.NewReader(c)}
	s.reply()
	return s
}

// reply reads a (multi-line) reply.
func (s *smtpDialog) reply() string {
	s.t.Helper()
	var all string
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading a reply: %v (so far %q)", err, all)
		}
		all += l
		if len(l) < 4 || l[3] != '-' {
			return all
		}
	}
}

// cmd sends a line and checks the reply's code prefix.
func (s *smtpDialog) cmd(line, want string) string {
	s.t.Helper()
	fmt.Fprintf(s.c, "%s\r\n", line)
	r := s.reply()
	if !strings.HasPrefix(r, want) {
		s.t.Fatalf("%q: got %q, want %s", line, r, want)
	}
	return r
}

// send sends one message and returns the reply to its end.
func (s *smtpDialog) send(from, to, msg string) string {
	s.t.Helper()
	s.cmd("MAIL FROM:<"+from+">", "250")
	s.cmd("RCPT TO:<"+to+">", "250")
	s.cmd("DATA", "354")
	fmt.Fprintf(s.c, "%s.\r\n", strings.ReplaceAll(msg, "\r\n.", "\r\n.."))
	return s.reply()
}

// TestAuthTwoServers: two mail services and a DNS server publishing what
// nymote mail dns prints for their domains. Alice's signed mail to bob
// passes SPF, DKIM (both signatures) and DMARC at bob, as his copy's
// Authentication-Results says, and dkimpy verifies the signatures too.
// From a third host, mail forged as alice's is refused per a.test's
// p=reject, as is mail claiming bob's own domain; the session goes on and
// takes an honest message after. Loopback addresses stand for the hosts:
// alice's server sends from 127.0.0.2, the forger from 127.0.0.3.
func TestAuthTwoServers(t *testing.T) {
	var zones zoneServer
	var zoneA, zoneB string
	stA := dataStore(t, func(dir string) {
		zoneA = mailDNS(t, "--domain", "a.test", "--hostname", "mx.a.test", "--ip", "127.0.0.2", "--data", dir)
	}, "alice")
	stB := dataStore(t, func(dir string) {
		zoneB = mailDNS(t, "--domain", "b.test", "--hostname", "mx.b.test", "--ip", "127.0.0.1", "--data", dir)
	}, "bob")
	zones.add(t, zoneA)
	zones.add(t, zoneB)
	// A domain with a huge TXT answer (over TCP after truncation): 200
	// records of 250 bytes, one of them its SPF record.
	var huge strings.Builder
	for i := range 200 {
		fmt.Fprintf(&huge, "huge.test. 60 IN TXT \"%03d%s\"\n", i, strings.Repeat("x", 247))
	}
	huge.WriteString("huge.test. 60 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n_dmarc.huge.test. 60 IN TXT \"v=DMARC1; p=reject\"\n")
	// A domain whose policy is quarantine.
	huge.WriteString("q.test. 60 IN TXT \"v=spf1 -all\"\n_dmarc.q.test. 60 IN TXT \"v=DMARC1; p=quarantine\"\n")
	zones.add(t, huge.String())
	res := zones.start(t)

	b := startServer(t, stB, mailsvc.Config{Domains: []string{"b.test"}, Hostname: "mx.b.test", InsecureAuth: true, Resolver: res}, nil)
	_, bPort, _ := net.SplitHostPort(b.addrs["smtp"])
	fromA := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 30 * time.Second}
	a := startServer(t, stA, mailsvc.Config{Domains: []string{"a.test"}, Hostname: "mx.a.test", InsecureAuth: true, Resolver: res,
		RemotePort: bPort, Dial: fromA.DialContext, Backoff: []time.Duration{200 * time.Millisecond}}, nil)

	submit(t, a.addrs["submission"], "alice", "alice@a.test", []string{"bob@b.test"},
		"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: signed\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <signed@a.test>\r\n\r\nHello Bob, this is really me.\r\n")
	waitFor(t, "delivery to bob", hung, func() bool { return len(b.messages(t, "bob", "INBOX")) == 1 })
	got := b.messages(t, "bob", "INBOX")[0]
	hdr, _, _ := strings.Cut(got, "\r\n\r\n")
	if n := strings.Count(hdr, "Authentication-Results:"); n != 1 {
		t.Fatalf("%d Authentication-Results headers, want 1:\n%s", n, hdr)
	}
	ar := unfold(hdr, "Authentication-Results:")
	for _, want := range []string{"Authentication-Results: mx.b.test;", "spf=pass smtp.mailfrom=alice@a.test", "dmarc=pass header.from=a.test"} {
		if !strings.Contains(ar, want) {
			t.Errorf("Authentication-Results %q lacks %q", ar, want)
		}
	}
	if n := strings.Count(ar, "dkim=pass header.d=a.test"); n != 2 {
		t.Errorf("Authentication-Results %q: %d DKIM passes for a.test, want 2 (Ed25519 and RSA)", ar, n)
	}
	if py := dkimPython(); py != "" {
		verifyDKIMPy(t, py, got, zoneA)
	} else {
		t.Log("python3-dkim not installed: no independent verification here")
	}

	// The forger, from a third host.
	s := dialSMTP(t, "127.0.0.3", b.addrs["smtp"])
	s.cmd("EHLO forger.test", "250")
	r := s.send("alice@a.test", "bob@b.test", "From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: forged\r\n\r\nSend money.\r\n")
	if !strings.HasPrefix(r, "550 5.7.1") || !strings.Contains(r, "reject") {
		t.Errorf("forged a.test mail: %q, want 550 5.7.1 per p=reject", r)
	}
	// With a forged signature too.
	r = s.send("alice@a.test", "bob@b.test", "DKIM-Signature: v=1; a=ed25519-sha256; d=a.test; s=nope; h=from; bh=AAAA; b=AAAA\r\nFrom: alice@a.test\r\n\r\nSend more.\r\n")
	if !strings.HasPrefix(r, "550 5.7.1") {
		t.Errorf("forged a.test mail with a bad signature: %q, want 550 5.7.1", r)
	}
	// Claiming bob's own domain.
	r = s.send("boss@b.test", "bob@b.test", "From: The Boss <boss@b.test>\r\nTo: bob@b.test\r\nSubject: urgent\r\n\r\nWire it now.\r\n")
	if !strings.HasPrefix(r, "550 5.7.1") {
		t.Errorf("mail claiming b.test from outside: %q, want 550 5.7.1", r)
	}
	// A huge DNS answer: read whole (over TCP), the SPF record found
	// in it fails, and p=reject applies.
	r = s.send("x@huge.test", "bob@b.test", "From: x@huge.test\r\nTo: bob@b.test\r\nSubject: huge\r\n\r\nhi\r\n")
	if !strings.HasPrefix(r, "550 5.7.1") || !strings.Contains(r, "SPF fail") {
		t.Errorf("mail from a domain with a huge TXT answer: %q, want 550 5.7.1 after SPF fail", r)
	}
	// Failing p=quarantine: accepted into Junk, and the forged
	// Authentication-Results in it (claiming bob's server) is gone.
	r = s.send("x@q.test", "bob@b.test", "Authentication-Results: mx.b.test; dmarc=pass header.from=q.test\r\nFrom: x@q.test\r\nTo: bob@b.test\r\nSubject: quarantined\r\n\r\nmaybe\r\n")
	if !strings.HasPrefix(r, "250") {
		t.Errorf("p=quarantine mail: %q, want 250 (into Junk)", r)
	}
	// A bad reverse path.
	s.cmd("MAIL FROM:<no-domain@>", "5")
	s.cmd("MAIL FROM:<a@bad_domain!.test>", "553")
	// The session survives, and honest mail from a domain without
	// policy still arrives (SPF none).
	s.cmd("RSET", "250")
	if r := s.send("carol@c.test", "bob@b.test", "From: carol@c.test\r\nTo: bob@b.test\r\nSubject: honest\r\n\r\nHi.\r\n"); !strings.HasPrefix(r, "250") {
		t.Errorf("honest mail after the refusals: %q", r)
	}
	s.cmd("QUIT", "221")
	waitFor(t, "carol's message", hung, func() bool { return len(b.messages(t, "bob", "INBOX")) == 2 })
	for _, m := range b.messages(t, "bob", "INBOX") {
		if strings.Contains(m, "forged") || strings.Contains(m, "Wire it now") {
			t.Errorf("a forged message was delivered:\n%s", m)
		}
	}
	junk := b.messages(t, "bob", "Junk")
	if len(junk) != 1 || !strings.Contains(junk[0], "Subject: quarantined") {
		t.Fatalf("bob's Junk: %q", junk)
	}
	jh, _, _ := strings.Cut(junk[0], "\r\n\r\n")
	if n := strings.Count(jh, "Authentication-Results:"); n != 1 || !strings.Contains(unfold(jh, "Authentication-Results:"), "dmarc=fail") {
		t.Errorf("the quarantined message's header (%d Authentication-Results, want ours only, dmarc=fail):\n%s", n, jh)
	}
	_ = a
}

// unfold returns the header field starting with name, unfolded.
func unfold(hdr, name string) string {
	i := strings.Index(hdr, name)
	if i < 0 {
		return ""
	}
	f := hdr[i:]
	var out strings.Builder
	for j, l := range strings.Split(f, "\r\n") {
		if j > 0 && (l == "" || (l[0] != ' ' && l[0] != '\t')) {
			break
		}
		if j > 0 {
			out.WriteByte(' ')
		}
		out.WriteString(strings.TrimSpace(l))
	}
	return out.String()
}

// dkimPython is a python3 that imports dkim (Debian's python3-dkim is for
// /usr/bin/python3, which may not be the first python3 on $PATH), or "".
func dkimPython() string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if py, err := exec.LookPath(p); err == nil && exec.Command(py, "-c", "import dkim").Run() == nil {
			return py
		}
	}
	return ""
}

// verifyDKIMPy verifies every DKIM signature of msg with dkimpy, its DNS
// answered from zone (what nymote mail dns printed).
func verifyDKIMPy(t *testing.T, py, msg, zone string) {
	t.Helper()
	recs := map[string]string{}
	zp := dns.NewZoneParser(strings.NewReader(zone), ".", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if txt, ok := rr.(*dns.TXT); ok {
			recs[txt.Hdr.Name] = strings.Join(txt.Txt, "")
		}
	}
	var pyRecs strings.Builder
	for n, v := range recs {
		fmt.Fprintf(&pyRecs, "%q: %q,\n", n, v)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "msg")
	if err := os.WriteFile(f, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	script := "import dkim,sys\nrecs={" + pyRecs.String() + "}\n" +
		"def dns(name, timeout=5):\n    n=name.decode() if isinstance(name,bytes) else name\n    return recs.get(n,'').encode()\n" +
		"msg=open(sys.argv[1],'rb').read()\nn=msg.split(b'\\r\\n\\r\\n')[0].count(b'DKIM-Signature:')\n" +
		"ok=[dkim.DKIM(msg).verify(idx=i, dnsfunc=dns) for i in range(n)]\nprint(n, ok)\nsys.exit(0 if n==2 and all(ok) else 1)\n"
	out, err := exec.Command(py, "-c", script, f).CombinedOutput()
	if err != nil {
		t.Errorf("dkimpy does not verify both signatures of the delivered message: %v\n%s", err, out)
	} else {
		t.Logf("dkimpy: %s", out)
	}
}
