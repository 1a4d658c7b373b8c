package appliance

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// TestUpdateCertKept: the update port's certificate is made once, kept on
// the data disk as a node file of mode 0600, and the same after a restart
// (its fingerprint is what a person pins); a damaged file is replaced and
// said; without a data directory each boot makes its own.
func TestUpdateCertKept(t *testing.T) {
	dir := t.TempDir()
	addr := netip.MustParseAddr("10.0.2.15")
	var said []string
	say := func(f string, a ...any) { said = append(said, fmt.Sprintf(f, a...)) }
	_, fp1, err := loadUpdateCert(dir, addr, say)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.FromSlash(UpdateCertFile))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", UpdateCertFile, fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("node folder: mode %v, want 0700", di.Mode().Perm())
	}
	_, fp2, err := loadUpdateCert(dir, addr, say)
	if err != nil || fp2 != fp1 {
		t.Errorf("after a restart: fingerprint %s (%v), want %s", fp2, err, fp1)
	}
	if len(said) != 0 {
		t.Errorf("said %q", said)
	}

	if err := os.WriteFile(path, []byte("-----BEGIN PRIVATE KEY-----\ntorn"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, fp3, err := loadUpdateCert(dir, addr, say)
	if err != nil || fp3 == fp1 || fp3 == "" {
		t.Errorf("after damage: fingerprint %s (%v), want a new one", fp3, err)
	}
	if len(said) != 1 {
		t.Errorf("after damage: said %q, want one line", said)
	}
	if _, fp4, _ := loadUpdateCert(dir, addr, say); fp4 != fp3 {
		t.Errorf("the replacement is not kept: %s, want %s", fp4, fp3)
	}

	_, a, _ := loadUpdateCert("", addr, say)
	_, b, _ := loadUpdateCert("", addr, say)
	if a == b {
		t.Error("without a data directory, two boots share a certificate")
	}
}
