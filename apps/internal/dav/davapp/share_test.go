package davapp

import (
	"strings"
	"testing"

	"github.com/nymote/nymote/apps/calendar/caldav"
)

func TestParseSubscriptions(t *testing.T) {
	kind := caldav.New(0)
	subs, err := parseSubscriptions("/bob/alice-work/=https://alice.my.nymote/alice/work/#nymote-cap:AAAA#AB:CD:"+strings.Repeat("00:", 29)+"EF, /bob/x/=http://h/y/#nymote-cap:B", kind)
	if err != nil || len(subs) != 2 || subs[0].Local != "/bob/alice-work/" || subs[0].Token != "nymote-cap:AAAA" || subs[0].Client == nil || subs[1].Client != nil {
		t.Fatalf("parseSubscriptions: %v %+v", err, subs)
	}
	if subs, err := parseSubscriptions("", kind); err != nil || len(subs) != 0 {
		t.Fatalf("empty: %v %v", subs, err)
	}
	for _, bad := range []string{"/bob/x/=https://h/y/", "/bob/=https://h/y/#t", "bob/x/=https://h/#t", "/bob/x/=ftp://h/#t", "/bob/x/=https://h/#t#zz"} {
		if _, err := parseSubscriptions(bad, kind); err == nil {
			t.Errorf("parseSubscriptions(%q) accepted", bad)
		}
	}
}
