package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/store"
)

func TestPeerCommands(t *testing.T) {
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	if code, _, errs := run(t, "", "peer", "add", "cloud", "https://cloud.example:9418/replica", "--data", data); code != 2 || !strings.Contains(errs, "--as NAME") {
		t.Errorf("add without a node name: exit %d, %q", code, errs)
	}
	out := mustRun(t, "", "peer", "add", "cloud", "https://cloud.example:9418/replica", "--as", "home", "--data", data)
	if !strings.Contains(out, "Added peer cloud") || !strings.Contains(out, "Token") {
		t.Errorf("add:\n%s", out)
	}
	mustRun(t, "0123456789abcdef0123456789abcdef\n", "peer", "add", "laptop", "http://192.0.2.7:8080/replica", "--token-stdin", "--data", data)
	if out := mustRun(t, "", "peer", "add", "mail", "http://mail.alice.nymote:9418/replica", "--tunnel", "--data", data); !strings.Contains(out, "No token") || strings.Contains(out, "Token (") {
		t.Errorf("add --tunnel:\n%s", out)
	}
	if code, _, errs := run(t, "x\n", "peer", "add", "vm2", "http://vm2.alice.nymote/replica", "--tunnel", "--token-stdin", "--data", data); code != 2 || !strings.Contains(errs, "needs no token") {
		t.Errorf("add --tunnel --token-stdin: exit %d, %q", code, errs)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cloud", "https://x/replica"}, "exists already"},
		{[]string{"home", "https://x/replica"}, "own name"},
		{[]string{"Bad_Name", "https://x/replica"}, "node name"},
		{[]string{"vm", "ftp://x/"}, "http:// or https://"},
		{[]string{"vm", "https://u:pw@x/"}, "no user name"},
	} {
		code, _, errs := run(t, "", append(append([]string{"peer", "add"}, c.args...), "--data", data)...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("peer add %v: exit %d, %q; want an error with %q", c.args, code, errs, c.want)
		}
	}
	out = mustRun(t, "", "peer", "list", "--data", data)
	if !strings.Contains(out, "cloud") || !strings.Contains(out, "laptop") || !strings.Contains(out, "http://192.0.2.7:8080/replica") {
		t.Errorf("list:\n%s", out)
	}
	out = mustRun(t, "", "peer", "status", "--data", data)
	if !strings.Contains(out, "No status yet") || !strings.Contains(out, "never") {
		t.Errorf("status:\n%s", out)
	}
	out = mustRun(t, "", "store", "log", "--data", data)
	if !strings.Contains(out, "peer add cloud") || strings.Contains(out, "0123456789abcdef") {
		t.Errorf("log:\n%s", out)
	}
	mustRun(t, "", "peer", "del", "cloud", "--data", data)
	if code, _, errs := run(t, "", "peer", "del", "cloud", "--data", data); code == 0 || !strings.Contains(errs, "no peer named") {
		t.Errorf("second del: exit %d, %q", code, errs)
	}
}

// TestPeerAddTokenOnly: for a new node, peer add --token-only keeps the
// token (and the node's name) as node files and makes no commit, so that
// the store stays empty and its first boot with --set peer=... clones the
// peer's.
func TestPeerAddTokenOnly(t *testing.T) {
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	out := mustRun(t, "0123456789abcdef0123456789abcdef\n", "peer", "add", "home", "https://home.example:443/replica",
		"--as", "cloud", "--token-stdin", "--token-only", "--data", data)
	if !strings.Contains(out, "boot with --set peer=home=https://home.example:443/replica --set peer-as=cloud") || strings.Contains(out, "0123456789abcdef") {
		t.Errorf("add --token-only:\n%s", out)
	}
	b, err := os.ReadFile(filepath.Join(data, "node", "replica", "peers", "home.token"))
	if err != nil || strings.TrimSpace(string(b)) != "0123456789abcdef0123456789abcdef" {
		t.Errorf("token node file: %q, %v", b, err)
	}
	s, err := store.OpenData(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if h, err := s.Resolve(""); err == nil && !h.IsZero() {
		t.Errorf("add --token-only made a commit (%s): the store must stay empty to be cloned", h)
	}
	if self, _ := replica.Self(s); self != "cloud" {
		t.Errorf("node name %q", self)
	}
	if code, _, errs := run(t, "", "peer", "add", "vm", "http://vm.alice.nymote/replica", "--tunnel", "--token-only", "--as", "cloud", "--data", data); code != 2 || !strings.Contains(errs, "needs no token") {
		t.Errorf("--token-only --tunnel: exit %d, %q", code, errs)
	}
}
