package mtasts

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/mail/msgauth"
	"github.com/nymote/nymote/internal/testutil"
)

// TestParse: what msgauth serves parses back; bad policies are refused.
func TestParse(t *testing.T) {
	p, err := Parse(msgauth.STSPolicy("enforce", "mx.example.org", "*.backup.example.org"))
	if err != nil || p.Mode != Enforce || p.MaxAge != msgauth.STSMaxAge*time.Second || len(p.MX) != 2 {
		t.Fatalf("%+v %v", p, err)
	}
	for host, want := range map[string]bool{"mx.example.org": true, "MX.Example.org.": true, "a.backup.example.org": true,
		"a.b.backup.example.org": false, "backup.example.org": false, "example.org": false} {
		if p.Matches(host) != want {
			t.Errorf("Matches(%q) = %v", host, !want)
		}
	}
	for _, bad := range []string{"", "version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n", "version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmax_age: 1\n", "version: STSv1\nmode: enforce\nmx: a\nmax_age: -1\n", "junk"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

type fakeDNS struct{ txt map[string][]string }

func (f fakeDNS) LookupTXT(_ context.Context, n string) ([]string, error) {
	if v, ok := f.txt[n]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: n, IsNotFound: true}
}
func (f fakeDNS) LookupHost(context.Context, string) ([]string, error) {
	return []string{"127.0.0.1"}, nil
}

// TestFetch: the policy is fetched over verified HTTPS from
// mta-sts.DOMAIN, cached while the id stays, fetched again when it
// changes; no record is no policy; a server that fails is an error.
func TestFetch(t *testing.T) {
	var hits atomic.Int32
	policy := msgauth.STSPolicy("enforce", "mx.remote.test")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Host != "mta-sts.remote.test" || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(policy))
	})
	pool, cert := testutil.CA(t, "mta-sts.remote.test", "mta-sts.broken.test")
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	dns := fakeDNS{txt: map[string][]string{"_mta-sts.remote.test": {"v=STSv1; id=1"}, "_mta-sts.broken.test": {"v=STSv1; id=9"},
		"_mta-sts.other.test": {"v=STSv1; id=1"}}}
	// Without the CA, the certificate is refused.
	if _, err := (&Fetcher{Resolver: dns, Port: port}).Policy(context.Background(), "remote.test"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a certificate of an unknown CA: %v", err)
	}
	f2 := &Fetcher{Resolver: dns, Port: port, RootCAs: pool}
	// A certificate that does not name mta-sts.other.test is refused.
	if _, err := f2.Policy(context.Background(), "other.test"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a certificate for another name: %v", err)
	}
	p, err := f2.Policy(context.Background(), "remote.test")
	if err != nil || p == nil || p.Mode != Enforce || p.ID != "1" {
		t.Fatalf("policy %+v, %v", p, err)
	}
	n := hits.Load()
	if p, _ := f2.Policy(context.Background(), "remote.test"); p == nil || hits.Load() != n {
		t.Errorf("the cached policy was fetched again")
	}
	dns.txt["_mta-sts.remote.test"] = []string{"v=STSv1; id=2"}
	if p, _ := f2.Policy(context.Background(), "remote.test"); p == nil || p.ID != "2" || hits.Load() != n+1 {
		t.Errorf("a new id: policy %+v, %d fetches", p, hits.Load()-n)
	}
	if p, err := f2.Policy(context.Background(), "none.test"); p != nil || err != nil {
		t.Errorf("no record: %+v, %v", p, err)
	}
	if _, err := f2.Policy(context.Background(), "broken.test"); err == nil {
		t.Errorf("a policy server that answers 404 is no error")
	}
}
