package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/internal/testutil"
)

// TestSummon runs nymote summon with an appliance whose program is
// missing, asks summon status, and stops it with the context (Ctrl-C).
func TestSummon(t *testing.T) {
	dir := t.TempDir()
	control, port := testutil.FreeAddr(t), testutil.FreeAddr(t)
	_, p, _ := net.SplitHostPort(port)
	cfgFile := filepath.Join(dir, "jitsu.yaml")
	cfg := fmt.Sprintf(`dns: 127.0.0.1:0
control: %s
zones: [{name: home.test}]
appliances:
  - name: mail.home.test
    address: 127.0.0.1
    ports: [{name: imap, port: %s}]
    data: %s
    launcher: {kind: process, command: [/nonexistent/mail]}
`, control, p, dir)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var errb testutil.Buffer
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"summon", "--config", cfgFile}, IO{In: strings.NewReader(""), Out: &errb, Err: &errb})
	}()
	var out string
	for i := 0; ; i++ {
		code, o, e := run(t, "", "summon", "status", "--config", cfgFile)
		if code == 0 {
			out = o
			break
		}
		if i == 100 {
			t.Fatalf("summon status: exit %d: %s\nsummon: %s", code, e, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "mail.home.test") || !strings.Contains(out, "stopped") {
		t.Errorf("status:\n%s", out)
	}
	// A connection to the appliance's port boots it; the boot fails.
	if c, err := net.Dial("tcp", port); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1))
		c.Close()
	}
	out = mustRun(t, "", "summon", "status", "--control", control, "--json")
	if !strings.Contains(out, `"state": "failed"`) || !strings.Contains(out, "/nonexistent/mail") {
		t.Errorf("status --json after a failed boot:\n%s", out)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("summon: exit %d\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "level=ERROR") || !strings.Contains(errb.String(), "boot failed") {
		t.Errorf("summon's log lacks the failed boot:\n%s", errb.String())
	}

	// A broken configuration names the field and its line.
	os.WriteFile(cfgFile, []byte(strings.Replace(cfg, "    data:", "    dta:", 1)), 0o600)
	if code, _, e := run(t, "", "summon", "--config", cfgFile); code != 1 || !strings.Contains(e, "line 8: field dta not found") {
		t.Errorf("broken configuration: exit %d, %q", code, e)
	}
	if code, _, e := run(t, "", "summon", "status", "--control", testutil.FreeAddr(t)); code != 1 || !strings.Contains(e, "is nymote summon running?") {
		t.Errorf("status without a summon: exit %d, %q", code, e)
	}
}
