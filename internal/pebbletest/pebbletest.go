// Package pebbletest runs Pebble, Let's Encrypt's test CA, and its
// challenge test server for tests: it builds them from the Go module proxy
// into the user's cache once (later runs reuse them) and runs them until
// the test ends.
package pebbletest

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/internal/testutil"
)

// The Pebble version the tests build.
const Module, Version = "github.com/letsencrypt/pebble/v2", "v2.10.3"

// Binaries builds pebble and pebble-challtestsrv from the Go module proxy
// into the user's cache (once: later runs reuse them) and returns their
// folder, and the module's source folder (its test certificates). It skips
// the test when the module is not available (offline).
func Binaries(t testing.TB) (bin, src string) {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skipf("no cache folder for the Pebble build: %v", err)
	}
	bin = filepath.Join(cache, "nymote-test", "pebble-"+Version)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	goCmd := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = t.TempDir() // outside this module: the tools' own go.mod
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-buildvcs=false", "GOWORK=off")
		return cmd.Output()
	}
	out, err := goCmd("mod", "download", "-json", Module+"@"+Version)
	if err != nil {
		t.Skipf("Pebble %s is not available from the module proxy (offline?): %v", Version, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v %s", err, out)
	}
	_, e1 := os.Stat(filepath.Join(bin, "pebble"))
	_, e2 := os.Stat(filepath.Join(bin, "pebble-challtestsrv"))
	if e1 != nil || e2 != nil {
		t.Logf("building Pebble %s into %s", Version, bin)
		if out, err := goCmd("install", Module+"/cmd/pebble@"+Version, Module+"/cmd/pebble-challtestsrv@"+Version); err != nil {
			t.Fatalf("building Pebble: %v\n%s", err, out)
		}
	}
	return bin, mod.Dir
}

// StartProc runs a program until the test ends, its output in out and in
// the test's log on failure.
func StartProc(t testing.TB, out *testutil.Buffer, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s:\n%s", filepath.Base(name), out.String())
		}
	})
}

// WaitLine waits until buf holds s, failing the test after wait (a bound
// that only a hung program reaches).
func WaitLine(t testing.TB, what string, buf *testutil.Buffer, s string, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !strings.Contains(buf.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%q); so far:\n%s", what, s, buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Roots returns Pebble's root certificate, asked from its management
// endpoint (url, ".../roots/0") with client until it answers: the
// management port may open a moment after the ACME port. Only a hung
// Pebble fails the bound.
func Roots(t testing.TB, client *http.Client, url string) *x509.CertPool {
	t.Helper()
	var resp *http.Response
	for deadline := time.Now().Add(time.Minute); ; {
		var err error
		if resp, err = client.Get(url); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pebble's management port: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rootPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("Pebble's root: %q", rootPEM)
	}
	return roots
}

// NOOPAnswers sends NOOP on an IMAP connection (w, read through r) and
// checks that it answers OK: a connection opened before a certificate's
// renewal still works after it.
func NOOPAnswers(t testing.TB, w io.Writer, r *bufio.Reader) {
	t.Helper()
	fmt.Fprintf(w, "a1 NOOP\r\n")
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("the IMAPS connection opened before the renewal: %v", err)
		}
		if strings.HasPrefix(l, "a1 ") {
			if !strings.HasPrefix(l, "a1 OK") {
				t.Errorf("NOOP after the renewal: %q", l)
			}
			return
		}
	}
}
