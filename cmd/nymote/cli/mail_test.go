package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestMailDNS: nymote mail dns prints the domain's records (the DKIM keys
// made on first use, the same on a second run); dkim-rotate adds a pair
// that the records then carry too; bad flags are usage errors naming the
// flag.
func TestMailDNS(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, _, stderr := run(t, "", "store", "init", "--data", data); code != 0 {
		t.Fatalf("store init: %s", stderr)
	}
	code, out, stderr := run(t, "", "mail", "dns", "--domain", "example.org", "--hostname", "mx.example.org", "--ip", "192.0.2.1", "--data", data)
	if code != 0 {
		t.Fatalf("mail dns: %d %s", code, stderr)
	}
	for _, want := range []string{"example.org.\t3600\tIN\tMX\t10 mx.example.org.", "\"v=spf1 ip4:192.0.2.1 mx -all\"",
		"_domainkey.example.org.", "k=ed25519", "k=rsa", "_dmarc.example.org.", "_mta-sts.example.org.", "_smtp._tls.example.org.",
		"_submissions._tcp.example.org.\t3600\tIN\tSRV\t0 1 465 mx.example.org.", "_imaps._tcp.example.org.", "CAA\t0 issue \"letsencrypt.org\""} {
		if !strings.Contains(out, want) {
			t.Errorf("mail dns output lacks %q:\n%s", want, out)
		}
	}
	if _, again, _ := run(t, "", "mail", "dns", "--domain", "example.org", "--hostname", "mx.example.org", "--ip", "192.0.2.1", "--data", data); again != out {
		t.Errorf("a second run prints other records:\n%s\nthen\n%s", out, again)
	}
	code, rot, stderr := run(t, "", "mail", "dkim-rotate", "--domain", "example.org", "--data", data)
	if code != 0 || strings.Count(rot, "\n") != 4 {
		t.Fatalf("dkim-rotate: %d %q %s", code, rot, stderr)
	}
	_, after, _ := run(t, "", "mail", "dns", "--domain", "example.org", "--data", data)
	if n := strings.Count(after, "._domainkey.example.org."); n != 4 {
		t.Errorf("after a rotation %d DKIM records, want 4 (both pairs during the overlap):\n%s", n, after)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"mail", "dns", "--data", data}, "--domain"},
		{[]string{"mail", "dns", "--domain", "example.org", "--ip", "nope", "--data", data}, "--ip"},
		{[]string{"mail", "dns", "--domain", "example.org", "--dmarc-policy", "maybe", "--data", data}, "DMARC policy"},
		{[]string{"mail", "dkim-rotate", "--data", data}, "--domain"},
	} {
		if code, _, stderr := run(t, "", tc.args...); code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: %d %q, want 2 naming %s", tc.args, code, stderr, tc.want)
		}
	}
}
