package mailsvc_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/mail/mailsvc"
)

// listen opens a loopback listener.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serveWeb runs Serve with HTTP and HTTPS listeners and cfg (DataDir and
// Domains filled in when empty); it returns their addresses. Serve stops
// when the test ends.
func serveWeb(t *testing.T, cfg mailsvc.Config, ls mailsvc.Listeners) (httpAddr, httpsAddr string) {
	t.Helper()
	if cfg.DataDir == "" && cfg.Store == nil {
		cfg.DataDir = t.TempDir()
	}
	if len(cfg.Domains) == 0 {
		cfg.Domains = []string{"example.org"}
	}
	if ls.HTTP == nil {
		ls.HTTP = listen(t)
	}
	if ls.HTTPS == nil {
		ls.HTTPS = listen(t)
	}
	httpAddr, httpsAddr = ls.HTTP.Addr().String(), ls.HTTPS.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mailsvc.Serve(ctx, cfg, ls) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("Serve did not return after cancel")
		}
	})
	return httpAddr, httpsAddr
}

// insecureClient trusts any certificate, follows no redirect, and dials
// addr whatever the URL's host (so that requests can name any host).
func insecureClient(addr string) *http.Client {
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func get(t *testing.T, c *http.Client, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// TestWebMount: handlers mounted through Config.Web (the console is on
// /console/ already) are served on HTTPS;
// plain HTTP redirects them to HTTPS (same host and path, the HTTPS port),
// but serves a path mounted plain.
func TestWebMount(t *testing.T) {
	cfg := mailsvc.Config{Web: func(w *mailsvc.Web) {
		w.Mount("/extra/", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			io.WriteString(rw, "extra "+r.URL.Path)
		}))
		w.MountPlain("/open/", "/open/", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			io.WriteString(rw, "open "+r.URL.Path)
		}))
	}}
	httpAddr, httpsAddr := serveWeb(t, cfg, mailsvc.Listeners{})
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)

	code, _, body := get(t, insecureClient(httpsAddr), "https://mail.example.org/extra/x")
	if code != 200 || body != "extra /extra/x" {
		t.Errorf("HTTPS /extra/x: %d %q", code, body)
	}
	code, hdr, _ := get(t, insecureClient(httpAddr), "http://mail.example.org/extra/x?a=b")
	if want := "https://mail.example.org:" + httpsPort + "/extra/x?a=b"; code != http.StatusMovedPermanently || hdr.Get("Location") != want {
		t.Errorf("HTTP /extra/x: %d to %q, want 301 to %q", code, hdr.Get("Location"), want)
	}
	code, _, body = get(t, insecureClient(httpAddr), "http://mail.example.org/open/y")
	if code != 200 || body != "open /open/y" {
		t.Errorf("HTTP /open/y: %d %q", code, body)
	}
	code, _, _ = get(t, insecureClient(httpsAddr), "https://mail.example.org/nothing")
	if code != http.StatusNotFound {
		t.Errorf("HTTPS /nothing: %d, want 404", code)
	}
	if !strings.HasPrefix(httpAddr, "127.0.0.1:") {
		t.Fatal(httpAddr)
	}
}

// TestWebWellKnown: the mail app serves its MTA-STS policy on HTTPS only
// (HTTP redirects it), and Thunderbird's autoconfig on HTTP too.
func TestWebWellKnown(t *testing.T) {
	httpAddr, httpsAddr := serveWeb(t, mailsvc.Config{Domains: []string{"example.org"}, Hostname: "mx.example.org"}, mailsvc.Listeners{})
	code, _, body := get(t, insecureClient(httpsAddr), "https://mta-sts.example.org/.well-known/mta-sts.txt")
	if code != 200 || !strings.Contains(body, "mode: enforce\r\nmx: mx.example.org\r\n") {
		t.Errorf("MTA-STS over HTTPS: %d %q", code, body)
	}
	if code, _, _ := get(t, insecureClient(httpAddr), "http://mta-sts.example.org/.well-known/mta-sts.txt"); code != http.StatusMovedPermanently {
		t.Errorf("MTA-STS over HTTP: %d, want a redirect", code)
	}
	code, _, body = get(t, insecureClient(httpAddr), "http://autoconfig.example.org/mail/config-v1.1.xml")
	if code != 200 || !strings.Contains(body, "<hostname>mx.example.org</hostname>") {
		t.Errorf("autoconfig over HTTP: %d %q", code, body)
	}
}
