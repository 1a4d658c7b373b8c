package cli

import (
	"strings"
	"testing"
)

// TestSignpostCommands: id show makes and shows a node's keys; peer invite
// prints an invitation; a bad one is refused by peer join with the reason;
// share mint, narrow and revoke print tokens and IDs; peer del of an
// unknown node fails.
func TestSignpostCommands(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := run(t, "", "id", "show", "--data", dir)
	if code != 0 || !strings.Contains(out, "wireguard key") || !strings.Contains(out, "tunnel addresses  100.") {
		t.Fatalf("id show: %d\n%s%s", code, out, errOut)
	}
	code, out2, _ := run(t, "", "id", "show", "--data", dir)
	if code != 0 || out2 != out {
		t.Fatalf("a second id show differs:\n%s\n%s", out, out2)
	}
	code, inv, errOut := run(t, "", "peer", "invite", "laptop", "--endpoint", "192.0.2.1:51820", "--person", "alice", "--data", dir)
	if code != 0 || !strings.HasPrefix(inv, "nymote-invite:") || len(inv) > 260 {
		t.Fatalf("peer invite: %d %q %s", code, inv, errOut)
	}
	code, _, errOut = run(t, "", "peer", "join", "nymote-invite:AAAA", "--data", t.TempDir())
	if code == 0 || !strings.Contains(errOut, "bad invitation") {
		t.Fatalf("peer join of a bad invitation: %d %s", code, errOut)
	}
	code, _, errOut = run(t, "", "peer", "del", "nobody", "--data", dir)
	if code == 0 || !strings.Contains(errOut, "no such peer") {
		t.Fatalf("peer del nobody: %d %s", code, errOut)
	}
	code, tok, errOut := run(t, "", "share", "mint", "/alice/work/", "--rights", "read", "--data", dir)
	if code != 0 || !strings.HasPrefix(tok, "nymote-cap:") {
		t.Fatalf("share mint: %d %q %s", code, tok, errOut)
	}
	code, narrow, errOut := run(t, "", "share", "narrow", strings.TrimSpace(tok), "--ttl", "1h")
	if code != 0 || !strings.HasPrefix(narrow, "nymote-cap:") || len(narrow) <= len(tok) {
		t.Fatalf("share narrow: %d %q %s", code, narrow, errOut)
	}
	code, out, errOut = run(t, "", "share", "revoke", strings.TrimSpace(narrow), "--data", dir)
	if code != 0 || !strings.HasPrefix(out, "Revoked token ") {
		t.Fatalf("share revoke: %d %q %s", code, out, errOut)
	}
	code, _, errOut = run(t, "", "share", "mint", "/alice/", "--data", dir)
	if code == 0 || !strings.Contains(errOut, "one collection") {
		t.Fatalf("share mint of an account: %d %s", code, errOut)
	}
}
