//go:build linux

package nymote

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/netstack/netstacktest"
)

// TestAppsOnTAP runs every app's program on a host with the runtime's
// --net tap:NAME, as DESIGN.md promises: each serves on a netstack over a
// TAP device through its one front door (appliance.Main), with its own
// flags. A client on the TAP device's kernel side talks to it; SIGTERM
// stops it cleanly. The TAP device lives in a namespace of its own.
func TestAppsOnTAP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every app program")
	}
	netstacktest.NeedRoot(t)
	// Each app: its flags for a listener at ADDR (the netstack's
	// address), the port to probe, and the probe.
	type probe func(c net.Conn) error
	cases := map[string]struct {
		flags func(addr string) []string
		port  int
		probe probe
	}{
		"hello": {func(string) []string { return nil }, app.HostPort(7, app.HostPortOffset), func(c net.Conn) error {
			return expectLine(c, "hello from nymote (boot 1)")
		}},
		"mail": {func(addr string) []string { return []string{"--domain", "example.org", "--imap", addr + ":143"} }, 143, func(c net.Conn) error {
			return expectLine(c, "* OK")
		}},
		"contacts": {func(addr string) []string { return []string{"--https", addr + ":443"} }, 443, probeDAV},
		"calendar": {func(addr string) []string { return []string{"--https", addr + ":443"} }, 443, probeDAV},
	}
	for i, name := range app.Names() {
		tc, ok := cases[name]
		if !ok {
			t.Errorf("%s: no TAP test case: add one", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			pkg := "./" + strings.TrimPrefix(app.Apps[name].Package, module+"/")
			bin := filepath.Join(t.TempDir(), name)
			if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
				t.Fatalf("go build %s: %v\n%s", pkg, err, out)
			}
			ns := netstacktest.NewNS(t)
			tap := "nytap" + fmt.Sprint(i)
			host, guest := fmt.Sprintf("10.80.%d.1", i), fmt.Sprintf("10.80.%d.2", i)
			netstacktest.Run(t, "ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
			netstacktest.Run(t, "ip", "-n", ns, "addr", "add", host+"/24", "dev", tap)
			netstacktest.Run(t, "ip", "-n", ns, "link", "set", tap, "up")

			args := append([]string{"--net", "tap:" + tap, "--ip", guest + "/24", "--data", t.TempDir()}, tc.flags(guest)...)
			cmd := netstacktest.CommandNS(context.Background(), ns, bin, args...)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			listening := make(chan string, 1)
			want := fmt.Sprintf("listening on %s:%d", guest, tc.port)
			go func() {
				sc := bufio.NewScanner(stdout)
				var lines []string
				for sc.Scan() {
					lines = append(lines, sc.Text())
					if strings.HasSuffix(sc.Text(), want) {
						listening <- sc.Text()
					}
				}
				exited <- cmd.Wait()
			}()
			select {
			case <-listening:
			case err := <-exited:
				t.Fatalf("%s %q exited (%v) before a line ending %q; stderr:\n%s", name, args, err, want, stderr.String())
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("%s: no line ending %q in 60s; stderr:\n%s", name, want, stderr.String())
			}
			c, err := netstacktest.Dial(ns, "tcp", fmt.Sprintf("%s:%d", guest, tc.port), 20*time.Second)
			if err != nil {
				t.Fatalf("dial %s over the TAP device: %v", name, err)
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if err := tc.probe(c); err != nil {
				t.Errorf("%s over the TAP device: %v", name, err)
			}
			c.Close()
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("%s after SIGTERM: %v; stderr:\n%s", name, err, stderr.String())
				}
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("%s did not stop within 60s of SIGTERM; stderr:\n%s", name, stderr.String())
			}
		})
	}
}

// expectLine reads one line from c and checks that it starts with prefix.
func expectLine(c net.Conn, prefix string) error {
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the greeting: %v (got %q)", err, line)
	}
	if !strings.HasPrefix(line, prefix) {
		return fmt.Errorf("greeting %q, want %q", line, prefix)
	}
	return nil
}

// probeDAV asks for the current user's principal over HTTPS without
// credentials: a DAV server answers 401.
func probeDAV(c net.Conn) error {
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	req, _ := http.NewRequest("PROPFIND", "https://dav/", strings.NewReader(`<propfind xmlns="DAV:"><prop><current-user-principal/></prop></propfind>`))
	req.Header.Set("Depth", "0")
	if err := req.Write(tc); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("PROPFIND without credentials: %s, want 401", resp.Status)
	}
	return nil
}
