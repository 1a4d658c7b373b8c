package msgauth

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/nymote/nymote/store"
)

// memFiles are node files in memory.
type memFiles map[string][]byte

func (m memFiles) ReadNodeFile(name string) ([]byte, error) {
	b, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, store.ErrNotExist)
	}
	return b, nil
}
func (m memFiles) WriteNodeFile(name string, data []byte) error {
	m[name] = append([]byte(nil), data...)
	return nil
}

// fakeDNS answers from maps; a name missing is NXDOMAIN, one in fail a
// server failure. It counts queries.
type fakeDNS struct {
	txt     map[string][]string
	mx      map[string][]*net.MX
	ip      map[string][]net.IP
	fail    map[string]bool
	queries int
}

func notFound(n string) error { return &net.DNSError{Err: "no such host", Name: n, IsNotFound: true} }

func (f *fakeDNS) look(n string) error {
	f.queries++
	if f.fail[strings.TrimSuffix(n, ".")] {
		return &net.DNSError{Err: "server misbehaving", Name: n, IsTemporary: true}
	}
	return nil
}

func (f *fakeDNS) LookupTXT(_ context.Context, n string) ([]string, error) {
	if err := f.look(n); err != nil {
		return nil, err
	}
	if v, ok := f.txt[n]; ok {
		return v, nil
	}
	return nil, notFound(n)
}
func (f *fakeDNS) LookupMX(_ context.Context, n string) ([]*net.MX, error) {
	if err := f.look(n); err != nil {
		return nil, err
	}
	if v, ok := f.mx[n]; ok {
		return v, nil
	}
	return nil, notFound(n)
}
func (f *fakeDNS) LookupIP(_ context.Context, network, n string) ([]net.IP, error) {
	if err := f.look(n); err != nil {
		return nil, err
	}
	var out []net.IP
	for _, ip := range f.ip[n] {
		if (ip.To4() != nil) == (network == "ip4") {
			out = append(out, ip)
		}
	}
	if len(out) == 0 {
		return nil, notFound(n)
	}
	return out, nil
}
func (f *fakeDNS) LookupAddr(_ context.Context, a string) ([]string, error) {
	f.queries++
	return nil, notFound(a)
}

// TestSPF: the results of RFC 7208 for the usual terms, and its limits:
// include loops and more than 10 DNS-querying terms are permerror, as are
// more than two void lookups, two records, a redirect to no record; a DNS
// failure is temperror. Every check ends within the limits (the query
// count is bounded).
func TestSPF(t *testing.T) {
	d := &fakeDNS{
		txt: map[string][]string{
			"pass.test":      {"v=spf1 ip4:192.0.2.0/24 -all"},
			"v6.test":        {"v=spf1 ip6:2001:db8::/32 ~all"},
			"soft.test":      {"v=spf1 ~all"},
			"mx.test":        {"v=spf1 mx -all"},
			"a.test":         {"v=spf1 a:host.a.test/28 -all"},
			"inc.test":       {"v=spf1 include:pass.test -all"},
			"loop1.test":     {"v=spf1 include:loop2.test -all"},
			"loop2.test":     {"v=spf1 include:loop1.test -all"},
			"many.test":      {"v=spf1 a:x1.test a:x2.test a:x3.test a:x4.test a:x5.test a:x6.test a:x7.test a:x8.test a:x9.test a:x10.test a:x11.test ip4:192.0.2.1 -all"},
			"void.test":      {"v=spf1 a:n1.test a:n2.test a:n3.test ip4:192.0.2.1"},
			"two.test":       {"v=spf1 -all", "v=spf1 +all"},
			"redir.test":     {"v=spf1 redirect=pass.test"},
			"redirnone.test": {"v=spf1 redirect=nothing.test"},
			"junk.test":      {"v=spf1 ip4:999.1.1.1 -all"},
			"unknown.test":   {"v=spf1 frobnicate -all"},
			"macro.test":     {"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all"},
			"neutral.test":   {"v=spf1 ?ip4:192.0.2.1"},
			"tempinc.test":   {"v=spf1 include:broken.test -all"},
			"other.test":     {"some other text", "v=spf10 +all"},
			"huge.test":      {"v=spf1 " + strings.Repeat("ip4:10.0.0.1 ", 400) + "-all"},
		},
		mx: map[string][]*net.MX{"mx.test": {{Host: "mx1.mx.test.", Pref: 10}}},
		ip: map[string][]net.IP{
			"mx1.mx.test": {net.ParseIP("192.0.2.9")}, "host.a.test": {net.ParseIP("192.0.2.17")},
			"1.2.0.192.a._spf.macro.test": {net.ParseIP("127.0.0.2")},
		},
		fail: map[string]bool{"broken.test": true},
	}
	ip := net.ParseIP("192.0.2.1")
	for _, tc := range []struct {
		domain, sender string
		ip             net.IP
		want           SPFResult
	}{
		{"pass.test", "", ip, SPFPass},
		{"pass.test", "", net.ParseIP("198.51.100.1"), SPFFail},
		{"v6.test", "", net.ParseIP("2001:db8::5"), SPFPass},
		{"v6.test", "", ip, SPFSoftFail},
		{"soft.test", "", ip, SPFSoftFail},
		{"mx.test", "", net.ParseIP("192.0.2.9"), SPFPass},
		{"mx.test", "", ip, SPFFail},
		{"a.test", "", net.ParseIP("192.0.2.30"), SPFPass},
		{"a.test", "", net.ParseIP("192.0.2.40"), SPFFail},
		{"inc.test", "", ip, SPFPass},
		{"loop1.test", "", ip, SPFPermError},
		{"many.test", "", ip, SPFPermError},
		{"void.test", "", ip, SPFPermError},
		{"two.test", "", ip, SPFPermError},
		{"redir.test", "", ip, SPFPass},
		{"redirnone.test", "", ip, SPFPermError},
		{"junk.test", "", ip, SPFPermError},
		{"unknown.test", "", ip, SPFPermError},
		{"macro.test", "a-b@macro.test", net.ParseIP("192.0.2.1"), SPFPass},
		{"macro.test", "c@macro.test", net.ParseIP("192.0.2.1"), SPFFail},
		{"neutral.test", "", ip, SPFNeutral},
		{"tempinc.test", "", ip, SPFTempError},
		{"broken.test", "", ip, SPFTempError},
		{"none.test", "", ip, SPFNone},
		{"other.test", "", ip, SPFNone},
		{"huge.test", "", ip, SPFPermError},
		{"bad..name", "", ip, SPFPermError},
	} {
		d.queries = 0
		sender := tc.sender
		if sender == "" {
			sender = "x@" + tc.domain
		}
		got, why := CheckSPF(context.Background(), d, tc.ip, tc.domain, sender, "helo.test")
		if got != tc.want {
			t.Errorf("SPF of %s for %s: %s (%s), want %s", tc.domain, tc.ip, got, why, tc.want)
		}
		if d.queries > 1+spfMaxLookups*(1+spfMaxNames) {
			t.Errorf("SPF of %s: %d queries", tc.domain, d.queries)
		}
	}
}

func testMessage(from string) []byte {
	return []byte("From: Alice <" + from + ">\r\nTo: bob@b.test\r\nSubject: hello\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <1@a.test>\r\n\r\nHello Bob.\r\n")
}

// TestSignVerify: a message from a local domain gets two signatures
// (Ed25519, RSA) that verify against the records Records prints; a
// message from another domain gets none; a changed body fails.
func TestSignVerify(t *testing.T) {
	kr := NewKeyring(memFiles{}, nil)
	raw := testMessage("alice@a.test")
	sig, err := kr.Sign(raw, []string{"a.test"})
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(sig, []byte("DKIM-Signature:")); n != 2 {
		t.Fatalf("%d signatures, want 2:\n%s", n, sig)
	}
	keys, err := kr.Published("a.test")
	if err != nil {
		t.Fatal(err)
	}
	rrs, err := Records(RecordOptions{Domain: "a.test", Hostname: "mx.a.test", DKIM: keys})
	if err != nil {
		t.Fatal(err)
	}
	txt := map[string][]string{}
	for _, rr := range rrs {
		if tr, ok := rr.(interface{ String() string }); ok && strings.Contains(tr.String(), "_domainkey") {
			f := strings.Fields(tr.String())
			// The zone's strings, joined as a resolver joins them.
			v := strings.Join(f[4:], " ")
			v = strings.ReplaceAll(v, "\" \"", "")
			txt[strings.TrimSuffix(f[0], ".")] = []string{strings.Trim(v, "\"")}
		}
	}
	verify := func(msg []byte) []*dkim.Verification {
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: func(n string) ([]string, error) {
			if v, ok := txt[n]; ok {
				return v, nil
			}
			return nil, notFound(n)
		}})
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	signed := append(append([]byte{}, sig...), raw...)
	for _, v := range verify(signed) {
		if v.Err != nil || v.Domain != "a.test" {
			t.Errorf("verification: %s %v", v.Domain, v.Err)
		}
	}
	tampered := bytes.Replace(signed, []byte("Hello Bob."), []byte("Pay Mallory."), 1)
	for _, v := range verify(tampered) {
		if v.Err == nil {
			t.Errorf("a changed body verifies")
		}
	}
	added := bytes.Replace(signed, []byte("Subject: hello"), []byte("Subject: hello\r\nSubject: added"), 1)
	for _, v := range verify(added) {
		if v.Err == nil {
			t.Errorf("an added Subject: verifies (oversigning)")
		}
	}
	if sig, err := kr.Sign(testMessage("alice@elsewhere.test"), []string{"a.test"}); err != nil || sig != nil {
		t.Errorf("signing another domain's message: %q, %v", sig, err)
	}
	// An independent verifier, when installed: dkimpy's dkimverify (Debian
	// python3-dkim), with our records as its DNS.
	if py := dkimPython(); py != "" {
		dir := t.TempDir()
		msgFile := filepath.Join(dir, "msg")
		os.WriteFile(msgFile, signed, 0o600)
		var records strings.Builder
		for n, v := range txt {
			fmt.Fprintf(&records, "%q: %q,\n", n+".", v[0])
		}
		script := "import dkim,sys\nrecs={" + records.String() + "}\n" +
			"def dns(name, timeout=5):\n    n=name.decode() if isinstance(name,bytes) else name\n    return recs.get(n,'').encode()\n" +
			"msg=open(sys.argv[1],'rb').read()\n" +
			"ok=[dkim.DKIM(msg).verify(idx=i, dnsfunc=dns) for i in range(2)]\nprint(ok)\nsys.exit(0 if all(ok) else 1)\n"
		out, err := exec.Command(py, "-c", script, msgFile).CombinedOutput()
		if err != nil {
			t.Errorf("dkimpy does not verify both signatures: %v\n%s", err, out)
		} else {
			t.Logf("dkimpy: %s", out)
		}
	} else {
		t.Logf("python3-dkim not installed: no independent verification here")
	}
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

// TestRotation: a new pair is published at once and signs from
// RotationDelay on; the old pair stays published RetainFor more.
func TestRotation(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	files := memFiles{}
	kr := NewKeyring(files, func() time.Time { return now })
	first, err := kr.Signing("a.test")
	if err != nil || len(first) != 2 {
		t.Fatalf("signing keys: %v, %v", first, err)
	}
	now = now.Add(24 * time.Hour)
	if _, err := kr.Rotate("a.test"); err != nil {
		t.Fatal(err)
	}
	sels := func(ks []Key) string {
		var s []string
		for _, k := range ks {
			s = append(s, k.Selector)
		}
		return strings.Join(s, " ")
	}
	check := func(when string, wantSigning, wantPublished string) {
		t.Helper()
		// A new keyring, as after a restart: the keys are read back.
		kr := NewKeyring(files, func() time.Time { return now })
		s, _ := kr.Signing("a.test")
		p, _ := kr.Published("a.test")
		if sels(s) != wantSigning || sels(p) != wantPublished {
			t.Errorf("%s: signing %q, published %q; want %q, %q", when, sels(s), sels(p), wantSigning, wantPublished)
		}
	}
	check("just rotated", "ed20260101 rsa20260101", "ed20260101 ed20260102 rsa20260101 rsa20260102")
	now = now.Add(RotationDelay)
	check("after the delay", "ed20260102 rsa20260102", "ed20260101 ed20260102 rsa20260101 rsa20260102")
	now = now.Add(RetainFor)
	check("after the overlap", "ed20260102 rsa20260102", "ed20260102 rsa20260102")
	if _, err := NewKeyring(files, nil).Keys("../x"); err == nil {
		t.Error("a domain of ../x is accepted")
	}
}

// TestCheck: DMARC as the From: domain's record says, and bad input:
// malformed signatures, junk DMARC records, no From:.
func TestCheck(t *testing.T) {
	ip := net.ParseIP("192.0.2.1")
	d := &fakeDNS{txt: map[string][]string{
		"rej.test": {"v=spf1 ip4:198.51.100.1 -all"}, "_dmarc.rej.test": {"v=DMARC1; p=reject"},
		"quar.test": {"v=spf1 -all"}, "_dmarc.quar.test": {"v=DMARC1; p=quarantine"},
		"ok.test": {"v=spf1 ip4:192.0.2.1 -all"}, "_dmarc.ok.test": {"v=DMARC1; p=reject"},
		"junk.test": {"v=spf1 -all"}, "_dmarc.junk.test": {"v=DMARC1; p=frobnicate; rua=mailto:x@junk.test"},
		"twice.test": {"v=spf1 -all"}, "_dmarc.twice.test": {"v=DMARC1; p=reject", "v=DMARC1; p=none"},
		"_dmarc.sub.test": {"v=DMARC1; p=none; sp=reject"},
	}}
	kr := NewKeyring(memFiles{}, nil)
	kr.Keys("local.test")
	c := &Checker{Resolver: d, Domains: []string{"local.test"}, Keyring: kr, Hostname: "mx.local.test"}
	check := func(from, mailFrom string, msg []byte) Verdict {
		return c.Check(context.Background(), Input{IP: ip, Helo: "client.test", MailFrom: mailFrom,
			Message: func() io.Reader { return bytes.NewReader(msg) }})
	}
	for _, tc := range []struct {
		name, from, mailFrom string
		msg                  []byte
		want                 Action
		dmarc                string
	}{
		{"reject policy fails", "a@rej.test", "a@rej.test", nil, Reject, "fail"},
		{"quarantine policy fails", "a@quar.test", "a@quar.test", nil, Junk, "fail"},
		{"aligned SPF passes", "a@ok.test", "a@ok.test", nil, Deliver, "pass"},
		{"junk DMARC record is no policy", "a@junk.test", "a@junk.test", nil, Deliver, "none"},
		{"two DMARC records are no policy", "a@twice.test", "a@twice.test", nil, Deliver, "none"},
		{"subdomain policy of the organizational domain", "a@x.sub.test", "a@x.sub.test", nil, Reject, "fail"},
		{"no DMARC at all", "a@nothing.test", "a@nothing.test", nil, Deliver, "none"},
		{"our domain from outside", "alice@local.test", "x@ok.test", nil, Reject, "none"},
		{"our domain as envelope sender", "a@nothing.test", "alice@local.test", nil, Reject, "none"},
		{"DMARC fails for a sender not aligned", "a@ok.test", "alice@local.test", nil, Reject, "fail"},
		{"bounce", "a@nothing.test", "", nil, Deliver, "none"},
		{"bounce claiming a domain with p=reject", "a@ok.test", "", nil, Reject, "fail"},
		{"no From:", "", "a@ok.test", []byte("Subject: x\r\n\r\nbody\r\n"), Deliver, "permerror"},
		{"malformed signature", "a@nothing.test", "a@nothing.test",
			[]byte("DKIM-Signature: v=1; a=rsa-sha256; d=nothing.test; s=x; b=!!!; bh=???\r\nFrom: a@nothing.test\r\n\r\nbody\r\n"), Deliver, "none"},
		{"garbage signature", "a@nothing.test", "a@nothing.test",
			[]byte("DKIM-Signature: \x01\x02;;;===\r\nFrom: a@nothing.test\r\n\r\nbody\r\n"), Deliver, "permerror"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.msg
			if msg == nil {
				msg = testMessage(tc.from)
			}
			v := check(tc.from, tc.mailFrom, msg)
			if v.Action != tc.want || v.DMARC != tc.dmarc {
				t.Errorf("action %d dmarc %s (%s), want %d %s\n%s", v.Action, v.DMARC, v.Reason, tc.want, tc.dmarc, v.Header)
			}
			if !strings.HasPrefix(v.Header, "Authentication-Results: mx.local.test;") || !strings.HasSuffix(v.Header, "\r\n") ||
				strings.Count(v.Header, "\r\n") != strings.Count(v.Header, "\r\n\t")+1 {
				t.Errorf("header %q", v.Header)
			}
		})
	}
	// Our own signed mail, coming back in (a forward): DKIM passes with
	// the local keys, without DNS.
	raw := testMessage("alice@local.test")
	sig, err := kr.Sign(raw, []string{"local.test"})
	if err != nil {
		t.Fatal(err)
	}
	if v := check("", "x@ok.test", append(sig, raw...)); v.Action != Deliver || v.DMARC != "pass" ||
		!strings.Contains(v.Header, "dkim=pass") {
		t.Errorf("our signed message: %d %s %s", v.Action, v.DMARC, v.Header)
	}
}

// BenchmarkSign: both signatures of a small message (what submission
// adds per message to a remote recipient).
func BenchmarkSign(b *testing.B) {
	kr := NewKeyring(memFiles{}, nil)
	raw := testMessage("alice@a.test")
	if _, err := kr.Sign(raw, []string{"a.test"}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := kr.Sign(raw, []string{"a.test"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheck: the checks of an inbound message signed twice, DNS
// answered from memory (the cost beyond the lookups themselves).
func BenchmarkCheck(b *testing.B) {
	kr := NewKeyring(memFiles{}, nil)
	raw := testMessage("alice@a.test")
	sig, _ := kr.Sign(raw, []string{"a.test"})
	msg := append(sig, raw...)
	d := &fakeDNS{txt: map[string][]string{"a.test": {"v=spf1 ip4:192.0.2.1 -all"}, "_dmarc.a.test": {"v=DMARC1; p=reject"}}}
	c := &Checker{Resolver: d, Keyring: kr, Hostname: "mx.b.test", Domains: []string{"b.test"}}
	for b.Loop() {
		v := c.Check(context.Background(), Input{IP: net.ParseIP("192.0.2.1"), Helo: "mx.a.test", MailFrom: "alice@a.test",
			Message: func() io.Reader { return bytes.NewReader(msg) }})
		if v.DMARC != "pass" {
			b.Fatal(v.Header)
		}
	}
}
