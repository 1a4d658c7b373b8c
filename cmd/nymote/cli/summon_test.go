package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/signpost"
)

// TestSummon runs nymote summon with an appliance whose program is
// missing, asks summon status, and stops it with the context (Ctrl-C).
func TestSummon(t *testing.T) {
	dir := t.TempDir()
	control, port := testutil.FreeAddr(t), testutil.FreeAddr(t)
	_, p, _ := net.SplitHostPort(port)
	cfgFile := filepath.Join(dir, "jitsu.yaml")
	cfg := fmt.Sprintf(`dns: 127.0.0.1:0
control: %s
zones: [{name: home.test}]
appliances:
  - name: mail.home.test
    address: 127.0.0.1
    ports: [{name: imap, port: %s}]
    data: %s
    launcher: {kind: process, command: [/nonexistent/mail]}
`, control, p, dir)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var errb testutil.Buffer
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"summon", "--config", cfgFile}, IO{In: strings.NewReader(""), Out: &errb, Err: &errb})
	}()
	var out string
	for i := 0; ; i++ {
		code, o, e := run(t, "", "summon", "status", "--config", cfgFile)
		if code == 0 {
			out = o
			break
		}
		if i == 100 {
			t.Fatalf("summon status: exit %d: %s\nsummon: %s", code, e, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "mail.home.test") || !strings.Contains(out, "stopped") {
		t.Errorf("status:\n%s", out)
	}
	// A connection to the appliance's port boots it; the boot fails.
	if c, err := net.Dial("tcp", port); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1))
		c.Close()
	}
	out = mustRun(t, "", "summon", "status", "--control", control, "--json")
	if !strings.Contains(out, `"state": "failed"`) || !strings.Contains(out, "/nonexistent/mail") {
		t.Errorf("status --json after a failed boot:\n%s", out)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("summon: exit %d\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "level=ERROR") || !strings.Contains(errb.String(), "boot failed") {
		t.Errorf("summon's log lacks the failed boot:\n%s", errb.String())
	}

	// A broken configuration names the field and its line.
	os.WriteFile(cfgFile, []byte(strings.Replace(cfg, "    data:", "    dta:", 1)), 0o600)
	if code, _, e := run(t, "", "summon", "--config", cfgFile); code != 1 || !strings.Contains(e, "line 8: field dta not found") {
		t.Errorf("broken configuration: exit %d, %q", code, e)
	}
	if code, _, e := run(t, "", "summon", "status", "--control", testutil.FreeAddr(t)); code != 1 || !strings.Contains(e, "is nymote summon running?") {
		t.Errorf("status without a summon: exit %d, %q", code, e)
	}
}

// TestSummonMailRecords: jitsu with a zone's mail: serves exactly the
// records nymote mail dns prints (every name, every type, asked with the
// miekg/dns client over TCP and with dig), from the appliance's data
// directory; after nymote mail dkim-rotate it serves the new selectors
// beside the old ones (the overlap) without a restart.
func TestSummonMailRecords(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mustRun(t, "", "store", "init", "--data", data)
	dnsArgs := []string{"mail", "dns", "--domain", "example.org", "--hostname", "mx.example.org", "--ip", "192.0.2.1,2001:db8::25", "--data", data}
	printed := mustRun(t, "", dnsArgs...)
	cfgFile := filepath.Join(dir, "jitsu.yaml")
	cfg := fmt.Sprintf(`dns: 127.0.0.1:0
zones:
  - name: example.org
    mail: {hostname: mx.example.org, ips: [192.0.2.1, "2001:db8::25"], data: %s}
`, data)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var errb testutil.Buffer
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"summon", "--config", cfgFile}, IO{In: strings.NewReader(""), Out: &errb, Err: &errb})
	}()
	defer func() {
		cancel()
		<-done
	}()
	var server string
	for deadline := time.Now().Add(20 * time.Second); server == ""; time.Sleep(20 * time.Millisecond) {
		if _, rest, ok := strings.Cut(errb.String(), "summon: DNS on "); ok {
			server, _, _ = strings.Cut(rest, " ")
		} else if time.Now().After(deadline) {
			t.Fatalf("summon did not start:\n%s", errb.String())
		}
	}

	// What jitsu answers for every name nymote mail dns printed, asked
	// for all types at once (ANY) and type by type.
	compare := func(printed string) (diffs []string) {
		want := parseZone(t, printed)
		for name, byType := range want {
			got := map[uint16][]string{}
			for _, rr := range exchange(t, server, name, dns.TypeANY).Answer {
				if t := rr.Header().Rrtype; t != dns.TypeSOA && t != dns.TypeNS {
					got[t] = append(got[t], rr.String())
				}
			}
			for typ, rrs := range byType {
				var one []string
				for _, rr := range exchange(t, server, name, typ).Answer {
					one = append(one, rr.String())
				}
				if !sameSet(one, rrs) {
					diffs = append(diffs, fmt.Sprintf("%s %s: jitsu %q, printed %q", name, dns.TypeToString[typ], one, rrs))
				}
				if !sameSet(got[typ], rrs) {
					diffs = append(diffs, fmt.Sprintf("%s ANY, type %s: jitsu %q, printed %q", name, dns.TypeToString[typ], got[typ], rrs))
				}
				delete(got, typ)
			}
			for typ, rrs := range got {
				diffs = append(diffs, fmt.Sprintf("%s: jitsu has %s records nymote mail dns does not print: %q", name, dns.TypeToString[typ], rrs))
			}
		}
		return diffs
	}
	if d := compare(printed); len(d) > 0 {
		t.Fatalf("jitsu's records differ from nymote mail dns:\n%s\nprinted:\n%s", strings.Join(d, "\n"), printed)
	}
	// An alias is followed to the server's address, as resolvers want.
	if r := exchange(t, server, "mta-sts.example.org", dns.TypeA); len(r.Answer) != 2 || r.Answer[1].String() != "mx.example.org.\t3600\tIN\tA\t192.0.2.1" {
		t.Errorf("mta-sts.example.org A: %v", r.Answer)
	}
	if r := exchange(t, server, "nothing.example.org", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("nothing.example.org: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	if r := exchange(t, server, "_domainkey.example.org", dns.TypeTXT); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("_domainkey.example.org (an empty non-terminal): %s with %d answers, want NOERROR and none", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	if _, err := exec.LookPath("dig"); err == nil {
		out, err := exec.Command("dig", "@127.0.0.1", "-p", strings.TrimPrefix(server, "127.0.0.1:"), "+short", "_dmarc.example.org", "TXT").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != `"v=DMARC1; p=reject; adkim=r; aspf=r"` {
			t.Errorf("dig _dmarc.example.org TXT: %v %q", err, out)
		}
	} else {
		t.Log("dig not installed (Debian bind9-dnsutils): only the miekg/dns client was used")
	}

	// A rotation: both pairs are published during the overlap.
	mustRun(t, "", "mail", "dkim-rotate", "--domain", "example.org", "--data", data)
	rotated := mustRun(t, "", dnsArgs...)
	if n := strings.Count(rotated, "._domainkey.example.org."); n != 4 {
		t.Fatalf("after dkim-rotate nymote mail dns prints %d DKIM records, want 4", n)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		d := compare(rotated)
		if len(d) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after dkim-rotate jitsu's records differ from nymote mail dns:\n%s", strings.Join(d, "\n"))
		}
	}
	if !strings.Contains(errb.String(), "mail records rebuilt: the DKIM keys changed") {
		t.Errorf("no log line of the rebuild:\n%s", errb.String())
	}
}

// parseZone parses zone-file text into records by name and type (as
// strings, in miekg/dns's presentation format).
func parseZone(t *testing.T, text string) map[string]map[uint16][]string {
	t.Helper()
	out := map[string]map[uint16][]string{}
	zp := dns.NewZoneParser(strings.NewReader(text), "", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := dns.CanonicalName(rr.Header().Name)
		if out[name] == nil {
			out[name] = map[uint16][]string{}
		}
		out[name][rr.Header().Rrtype] = append(out[name][rr.Header().Rrtype], rr.String())
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone: %v\n%s", err, text)
	}
	return out
}

func exchange(t *testing.T, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 10 * time.Second}).Exchange(m, server)
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return r
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestSummonSignpostFlag: --signpost names a node's data directory; one
// without a node is refused, naming what is missing.
func TestSummonSignpostFlag(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "jitsu.yaml")
	if err := os.WriteFile(cfgFile, []byte("dns: 127.0.0.1:0\nzones: [{name: home.test}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := run(t, "", "summon", "--config", cfgFile, "--signpost", dir)
	if code == 0 || !strings.Contains(errs, "signpost.data") || !strings.Contains(errs, "no identity") {
		t.Errorf("summon --signpost on a directory without a node: exit %d, %q", code, errs)
	}
	// A hub's directory: its own name answers, asked from loopback.
	hub := t.TempDir()
	if _, err := signpost.Issue(hub, "mail", "198.51.100.2:51820", "alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var errb testutil.Buffer
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"summon", "--config", cfgFile, "--signpost", hub}, IO{In: strings.NewReader(""), Out: &errb, Err: &errb})
	}()
	defer func() {
		cancel()
		<-done
	}()
	var server string
	for deadline := time.Now().Add(20 * time.Second); server == ""; time.Sleep(20 * time.Millisecond) {
		if _, rest, ok := strings.Cut(errb.String(), "summon: DNS on "); ok {
			server, _, _ = strings.Cut(rest, " ")
		} else if time.Now().After(deadline) {
			t.Fatalf("summon did not start:\n%s", errb.String())
		}
	}
	r := exchange(t, server, "hub.alice.nymote", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("hub.alice.nymote from loopback: %v", r)
	}
}
