package images

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDebugCommands: the debug module names gosh and the core commands.
func TestDebugCommands(t *testing.T) {
	pkgs, err := debugCommands("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"github.com/u-root/u-root/cmds/core/gosh", "github.com/u-root/u-root/cmds/core/ls", "github.com/u-root/u-root/cmds/core/dmesg"} {
		if !slices.Contains(pkgs, want) {
			t.Errorf("debug commands lack %s: %v", want, pkgs)
		}
	}
	if _, err := debugCommands(t.TempDir()); err == nil {
		t.Error("a source tree without the debug module gave no error")
	}
}

// TestBootDebugShell builds hello with --debug, boots it, and uses the
// shell on the serial console: the commands are there and run.
func TestBootDebugShell(t *testing.T) {
	if testing.Short() {
		t.Skip("building images in -short mode")
	}
	dir := filepath.Join(t.TempDir(), "out")
	m, err := Build(context.Background(), Options{App: "hello", Board: "qemu-x86_64", OutDir: dir, SourceDir: sourceRoot, Debug: true, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Debug || !slices.Contains(m.InitramfsFiles, DebugShell) || !slices.Contains(m.InitramfsFiles, "bbin/bb") {
		t.Fatalf("manifest: debug %v, initramfs files %v", m.Debug, m.InitramfsFiles)
	}
	plain, _ := build(t, "hello", "qemu-x86_64")
	if b, err := os.ReadFile(filepath.Join(plain, "manifest.json")); err != nil || strings.Contains(string(b), "bbin/") {
		t.Fatalf("an image built without --debug has a shell: %v", err)
	}
	vm, _ := boot(t, dir, m, "", 7)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if _, err := vm.WaitLine(ctx, "debug image: shell"); err != nil {
		t.Fatal(err)
	}
	// The shell may take a moment to print its prompt; type until the
	// answer shows (a line typed before the shell reads is lost).
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := vm.Type("echo nymote-$((40+2)); ls /bbin | wc -l\r"); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := vm.WaitLine(wctx, "nymote-42")
		wcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shell did not answer: %v", err)
		}
	}
	if err := vm.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
}
