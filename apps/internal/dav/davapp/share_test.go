package davapp

import (
	"net/http"
	"net/http/httptest"
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

func TestReadOnlyCopies(t *testing.T) {
	subs, _ := parseSubscriptions("/bob/alice-work/=https://h/alice/work/#tok", caldav.New(0))
	h := readOnlyCopies(subs, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) }))
	for _, c := range []struct {
		method, path, dest string
		want               int
	}{
		{"GET", "/bob/alice-work/x.ics", "", 299},
		{"PROPFIND", "/bob/alice-work/", "", 299},
		{"PUT", "/bob/alice-work/x.ics", "", 403},
		{"DELETE", "/bob/alice-work/", "", 403},
		{"DELETE", "/bob/", "", 403}, // a parent of the copy
		{"PUT", "/bob/default/x.ics", "", 299},
		{"MOVE", "/bob/default/x.ics", "http://h/bob/alice-work/x.ics", 403},
		{"PUT", "/bob/alice-work2/x.ics", "", 299},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if c.dest != "" {
			r.Header.Set("Destination", c.dest)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, w.Code, c.want)
		}
	}
}
