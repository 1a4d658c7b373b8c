package davapp

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/internal/testutil"
)

// TestApplianceService runs the contacts app through the appliance runtime's
// host mode, as it runs as PID 1 but on host sockets: both ports serve,
// authentication is required, and it stops cleanly.
func TestApplianceService(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	st, err := svc.OpenStore(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(context.Background(), "alice", "alice-password", ""); err != nil {
		t.Fatal(err)
	}
	st.Close()
	contacts := Service(app.Contacts, func(max int64) dav.Kind { return carddav.New(max) }, "Contacts")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- appliance.RunHost(ctx, contacts, []string{"--data", data, "--port-offset", "0", "--listen", "127.0.0.1", "--port", "http=0", "--port", "https=0"}, &out, &out)
	}()
	var httpAddr, httpsAddr string
	deadline := time.Now().Add(2 * time.Minute) // only a hung start fails it
	// The certificate's line comes once the service has its TLS
	// configuration, after the runtime's listener lines.
	for (httpAddr == "" || httpsAddr == "" || !strings.Contains(out.String(), "tls certificate sha256")) && time.Now().Before(deadline) {
		for _, l := range strings.Split(out.String(), "\n") {
			if i := strings.Index(l, "contacts http listening on "); i >= 0 {
				httpAddr = strings.TrimSpace(l[i+len("contacts http listening on "):])
			}
			if i := strings.Index(l, "contacts https listening on "); i >= 0 {
				httpsAddr = strings.TrimSpace(l[i+len("contacts https listening on "):])
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if httpAddr == "" || httpsAddr == "" {
		t.Fatalf("no listener line:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "contacts https listening on") || !strings.Contains(out.String(), "tls certificate sha256") {
		t.Errorf("console:\n%s", out.String())
	}
	// Port 80 only redirects to https (issue 21, M3); DAV is on 443.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	req, _ := http.NewRequest("PROPFIND", "http://"+httpAddr+"/alice/", nil)
	req.SetBasicAuth("alice", "alice-password")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || loc != "https://"+httpsAddr+"/alice/" {
		t.Errorf("plain HTTP: %d to %q, want a redirect to https://%s/alice/", resp.StatusCode, loc, httpsAddr)
	}
	for _, tc := range []struct {
		user, pw string
		want     int
	}{{"", "", http.StatusUnauthorized}, {"alice", "wrong", http.StatusUnauthorized}, {"alice", "alice-password", http.StatusMultiStatus}} {
		req, _ := http.NewRequest("PROPFIND", "https://"+httpsAddr+"/", strings.NewReader(`<propfind xmlns="DAV:"><prop><current-user-principal/></prop></propfind>`))
		req.Header.Set("Depth", "0")
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pw)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("PROPFIND as %q: %d, want %d", tc.user, resp.StatusCode, tc.want)
		}
	}
	// The web console and API are on the same HTTPS port (issue 19).
	for _, tc := range []struct {
		path, user string
		want       int
	}{{"/console/login", "", http.StatusOK}, {"/api/v1/me", "", http.StatusUnauthorized}, {"/api/v1/me", "alice", http.StatusOK},
		{"/api/v1/users/alice/timeline", "alice", http.StatusOK}, {"/metrics", "alice", http.StatusForbidden}} {
		req, _ := http.NewRequest("GET", "https://"+httpsAddr+tc.path, nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, "alice-password")
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s as %q: %d, want %d", tc.path, tc.user, resp.StatusCode, tc.want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunHost: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the service did not stop")
	}
}
