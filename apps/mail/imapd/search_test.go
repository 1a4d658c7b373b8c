package imapd

import (
	"strings"
	"testing"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// TestMayContain checks SEARCH's header prefilter against the parse it
// saves: wherever mayContain rules a header out, no field of it matches
// when parsed and decoded (and the plain cases are ruled out, or it would
// save nothing).
func TestMayContain(t *testing.T) {
	hdrs := []string{
		"From: Sender <sender07@example.net>\r\nSubject: Zebra alpha #2\r\n\r\n",
		"Subject: =?utf-8?q?Z=C3=A9bra?= crossing\r\nFrom: a@b\r\n\r\n",
		"Subject: =?iso-8859-1?q?caf=E9?=\r\n\r\n",
		"Subject: folded\r\n zebra\r\n\tline\r\n\r\n",
		"Subject: =?utf-8?q?zeb=72a?= and =?utf-8?b?c2VuZGVyMDdA?=\r\n\r\n",
		"Subject: 1 \u212a\r\n\r\n", // KELVIN SIGN lower-cases to ASCII k
		"Subject: Stra\u00dfe\r\n\r\n",
		"X-Odd: value\r\nSUBJECT: UPPER CASE\r\n\r\n",
	}
	pats := []string{"zebra", "sender07@", "k", "kelvin k", "folded zebra", "zebra line", "café", "z\u00e9bra", "stra\u00dfe", "upper case", "upper", "nothing", "", "=?"}
	ruledOut := 0
	for _, h := range hdrs {
		for _, p := range pats {
			if mayContain(h, p) {
				continue
			}
			ruledOut++
			for _, key := range []string{"subject", "from", "x-odd"} {
				if vals := mailstore.HeaderFieldValues(h, key); matchValues(vals, p) {
					t.Errorf("mayContain(%q, %q) is false, but %s: %q matches", h, p, key, vals)
				}
			}
		}
	}
	if ruledOut == 0 {
		t.Error("mayContain ruled nothing out")
	}
	for _, c := range []struct {
		s, sub string
		want   bool
	}{{"Zebra", "zebra", true}, {"xZEBRA", "zebra", true}, {"zebr", "zebra", false}, {"a@B.c", "@b.", true}, {"", "", true}, {"ab", "", true}} {
		if got := containsFoldASCII(c.s, c.sub); got != c.want {
			t.Errorf("containsFoldASCII(%q, %q) = %v", c.s, c.sub, got)
		}
	}
	if !mayContain("Subject: x\r\n\r\n", "") || mayContain("Subject: x\r\n\r\n", "zebra") || !mayContain(strings.Repeat("a", 10)+"Zebra", "zebra") {
		t.Error("mayContain: plain cases wrong")
	}
}
