package msgauth

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
)

// FuzzSPF: any SPF record (the domain's, and one it includes or
// redirects to) gives one of the results, within the lookup limits,
// without a panic.
// make test runs it for 30000 inputs past its seeds (fuzz-short: 30000x).
func FuzzSPF(f *testing.F) {
	for _, s := range []string{"v=spf1 -all", "v=spf1 include:x.test ~all", "v=spf1 redirect=x.test", "v=spf1 a:%{ir}.%{l1r-}.x.test/24//64 mx:%{d2} -all",
		"v=spf1 exists:%{i}.%{h}.%{v}.%{p}.%{o}._spf.%{d} ?all", "v=spf1 ip4:192.0.2.0/33 ip6:::1/200", "v=spf1 %{", "v=spf1 a:%{zz}", "v=spf1 ptr:x.test exp=%{s}",
		"v=spf1 include:fuzz.test"} {
		f.Add(s, "v=spf1 include:fuzz.test")
	}
	f.Fuzz(func(t *testing.T, rec, other string) {
		d := &fakeDNS{
			txt: map[string][]string{"fuzz.test": {rec}, "x.test": {other}},
			ip:  map[string][]net.IP{"fuzz.test": {net.ParseIP("192.0.2.1")}},
		}
		res, _ := CheckSPF(context.Background(), d, net.ParseIP("192.0.2.1"), "fuzz.test", "a-b+c@fuzz.test", "helo.test")
		switch res {
		case SPFNone, SPFNeutral, SPFPass, SPFFail, SPFSoftFail, SPFTempError, SPFPermError:
		default:
			t.Fatalf("result %q", res)
		}
		if d.queries > 1+spfMaxLookups*(1+spfMaxNames)+2 {
			t.Fatalf("%d DNS queries", d.queries)
		}
	})
}

// FuzzCheck: any message (header, signatures) and any DMARC record give
// a verdict with one Authentication-Results field, without a panic.
// make test runs it for 30000 inputs past its seeds (fuzz-short: 30000x).
func FuzzCheck(f *testing.F) {
	kr := NewKeyring(memFiles{}, nil)
	raw := testMessage("alice@a.test")
	sig, err := kr.Sign(raw, []string{"a.test"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(append(sig, raw...)), "v=DMARC1; p=reject")
	f.Add("DKIM-Signature: v=1; a=rsa-sha256; d=a.test; s=x; h=from; bh=; b=\r\nFrom: a@a.test\r\n\r\nx", "v=DMARC1; p=quarantine; sp=none; pct=0")
	f.Add("From: <>\r\n\r\n", "v=DMARC1")
	f.Add("DKIM-Signature: v=1; d=a.test\r\n\tX-Evil: \r\nFrom: a@a.test\r\n\r\n", "v=DMARC1; p=reject")
	f.Add("From: \"\x01\r\n\" <a@a.test>\r\n\r\n", "v=DMARC1; p=reject")
	f.Add("From: a@a.test, b@b.test\r\nFrom: c@c.test\r\n\r\n", "v=DMARC1; p=reject; rua=mailto:x")
	f.Fuzz(func(t *testing.T, msg, dmarcRec string) {
		d := &fakeDNS{txt: map[string][]string{"a.test": {"v=spf1 -all"}, "_dmarc.a.test": {dmarcRec}}}
		c := &Checker{Resolver: d, Domains: []string{"b.test"}, Hostname: "mx.b.test"}
		v := c.Check(context.Background(), Input{IP: net.ParseIP("192.0.2.1"), Helo: "h.test", MailFrom: "x@a.test",
			Message: func() io.Reader { return bytes.NewReader([]byte(msg)) }})
		if n := bytes.Count([]byte(v.Header), []byte("Authentication-Results:")); n != 1 {
			t.Fatalf("%d Authentication-Results in %q", n, v.Header)
		}
		// One field: its lines end with CRLF, continuations start with a
		// tab, no other CR or LF.
		lines := bytes.Split([]byte(v.Header), []byte("\r\n"))
		if len(lines[len(lines)-1]) != 0 {
			t.Fatalf("no CRLF at the end of %q", v.Header)
		}
		for i, l := range lines[:len(lines)-1] {
			if bytes.ContainsAny(l, "\r\n") || (i > 0 && (len(l) == 0 || l[0] != '\t')) {
				t.Fatalf("line %d of %q", i, v.Header)
			}
		}
		if v.Action == Reject && v.Reason == "" {
			t.Fatal("a rejection without a reason")
		}
	})
}
