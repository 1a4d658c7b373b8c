package ubootenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const size = 64 << 10

func TestRoundTrip(t *testing.T) {
	e := New(size, map[string]string{"bootdelay": "0", "nymote_slot": "1"})
	e.Set("nymote_next", "2")
	e.Set("nymote_slot", "2")
	e.Set("bootdelay", "")
	b, err := e.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Get("nymote_slot"); v != "2" {
		t.Errorf("nymote_slot %q, want 2", v)
	}
	if _, ok := got.Get("bootdelay"); ok {
		t.Error("bootdelay was not removed")
	}
	b[100] ^= 1
	if _, err := Parse(b); !errors.Is(err, ErrBadCRC) {
		t.Errorf("a changed byte: %v, want ErrBadCRC", err)
	}
	if err := e.Set("a=b", "c"); err == nil {
		t.Error("a name with = was accepted")
	}
	big := New(64, map[string]string{"x": strings.Repeat("y", 100)})
	if _, err := big.Bytes(); err == nil {
		t.Error("variables larger than the area were encoded")
	}
}

// TestLibubootenv checks the format against libubootenv's tools: what
// Bytes writes, fw_printenv reads; what fw_setenv writes, Parse reads.
func TestLibubootenv(t *testing.T) {
	printenv, err := exec.LookPath("fw_printenv")
	if err != nil {
		t.Skip("fw_printenv not installed: apt-get install libubootenv-tool")
	}
	setenv, err := exec.LookPath("fw_setenv")
	if err != nil {
		t.Skip("fw_setenv not installed: apt-get install libubootenv-tool")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "uboot.env")
	cfg := filepath.Join(dir, "fw_env.config")
	os.WriteFile(cfg, []byte(file+" 0x0 0x10000\n"), 0o644)
	b, _ := New(size, map[string]string{"nymote_slot": "1", "bootdelay": "0"}).Bytes()
	os.WriteFile(file, b, 0o644)
	out, err := exec.Command(printenv, "-c", cfg, "nymote_slot").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "nymote_slot=1" {
		t.Fatalf("fw_printenv nymote_slot: %q, %v", out, err)
	}
	if out, err := exec.Command(setenv, "-c", cfg, "nymote_tried", "1").CombinedOutput(); err != nil {
		t.Fatalf("fw_setenv: %v: %s", err, out)
	}
	b, _ = os.ReadFile(file)
	e, err := Parse(b)
	if err != nil {
		t.Fatalf("parsing what fw_setenv wrote: %v", err)
	}
	if v, _ := e.Get("nymote_tried"); v != "1" {
		t.Errorf("nymote_tried %q after fw_setenv, want 1", v)
	}
	if v, _ := e.Get("nymote_slot"); v != "1" {
		t.Errorf("nymote_slot %q after fw_setenv, want 1", v)
	}
}
