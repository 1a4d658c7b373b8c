package davapp_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davapp"
	"github.com/nymote/nymote/apps/internal/svc"
)

// TestRun starts the contacts program in-process on HTTP and HTTPS with a
// generated certificate, reads its console lines and talks to it.
func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	st, err := svc.OpenStore(dir, slog.New(slog.DiscardHandler))
	if err == nil {
		err = st.AddUser(context.Background(), "alice", "alice-password", "")
	}
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	contacts := davapp.Service(app.Contacts, func(n int64) dav.Kind { return carddav.New(n) }, "")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- appliance.Run(ctx, contacts, []string{"--data", dir, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--log-level", "warn"}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	addrs := map[string]string{}
	var fp string
	for len(addrs) < 2 && sc.Scan() {
		line := sc.Text()
		var proto, addr string
		if _, err := fmt.Sscanf(line, "nymote: contacts %s listening on %s", &proto, &addr); err == nil {
			addrs[proto] = addr
		}
		if f, ok := strings.CutPrefix(line, "nymote: contacts tls certificate sha256 "); ok {
			fp = f
		}
	}
	go io.Copy(io.Discard, pr)
	if addrs["http"] == "" || addrs["https"] == "" || fp == "" {
		t.Fatalf("console lines: %v, fingerprint %q", addrs, fp)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	for proto, addr := range addrs {
		req, _ := http.NewRequest("PROPFIND", proto+"://"+addr+"/alice/", nil)
		req.SetBasicAuth("alice", "alice-password")
		req.Header.Set("Depth", "1")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		resp.Body.Close()
		// Plain HTTP only redirects to https (issue 21, M3).
		want, loc := 207, ""
		if proto == "http" {
			want, loc = 301, "https://"+addrs["https"]+"/alice/"
		}
		if resp.StatusCode != want || resp.Header.Get("Location") != loc {
			t.Errorf("%s PROPFIND: %d %q, want %d %q", proto, resp.StatusCode, resp.Header.Get("Location"), want, loc)
		}
		if proto == "https" {
			sum := sha256.Sum256(resp.TLS.PeerCertificates[0].Raw)
			if got := strings.ReplaceAll(fmt.Sprintf("% X", sum[:]), " ", ":"); got != fp {
				t.Errorf("certificate %s, printed %s", got, fp)
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestRunWhileCloning: a new node (empty store) whose peer does not answer
// keeps retrying the clone, and meanwhile its HTTP and HTTPS ports answer
// 503 with Retry-After and the reason instead of staying closed.
func TestRunWhileCloning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "a.token")
	if err := os.WriteFile(tok, []byte("peer-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	contacts := davapp.Service(app.Contacts, func(n int64) dav.Kind { return carddav.New(n) }, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- appliance.Run(ctx, contacts, []string{"--data", dir, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--log-level", "error",
			"--peer", "a=http://127.0.0.1:9/replica", "--peer-as", "b", "--peer-token", tok}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	addrs := map[string]string{}
	retries := 0
	for retries < 2 && sc.Scan() {
		line := sc.Text()
		var proto, addr string
		if _, err := fmt.Sscanf(line, "nymote: contacts %s listening on %s", &proto, &addr); err == nil {
			addrs[proto] = addr
		}
		if strings.Contains(line, "clone failed, trying again") {
			retries++
		}
	}
	go io.Copy(io.Discard, pr)
	if addrs["http"] == "" || addrs["https"] == "" || retries < 2 {
		t.Fatalf("console: addresses %v, %d retries of the clone", addrs, retries)
	}
	// (The bounds only fail a hung test: ports left unserved.)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, TLSHandshakeTimeout: 2 * time.Minute, ResponseHeaderTimeout: 2 * time.Minute}
	for proto, addr := range addrs {
		req, _ := http.NewRequest("PROPFIND", proto+"://"+addr+"/alice/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s while cloning: %v", proto, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "copying its store from its peer") {
			t.Errorf("%s while cloning: %s, Retry-After %q, %q", proto, resp.Status, resp.Header.Get("Retry-After"), body)
		}
	}
	cancel()
	<-done
}
