package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiskCommands puts a store with a user on a data disk and reads it
// back: the exported store passes git fsck and still has the user.
func TestDiskCommands(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		if _, err := os.Stat("/usr/sbin/mkfs.ext4"); err != nil {
			t.Skip("mkfs.ext4 not installed: apt-get install e2fsprogs")
		}
	}
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	mustRun(t, "secret pw\n", "user", "add", "alice", "--password-stdin", "--data", data)
	img := filepath.Join(t.TempDir(), "data.img")
	out := mustRun(t, "", "disk", "create", "--data", data, "-o", img, "--size", "64M")
	if !strings.Contains(out, "1 users") {
		t.Errorf("disk create: %q", out)
	}
	exported := filepath.Join(t.TempDir(), "export")
	mustRun(t, "", "disk", "export", img, exported)
	if b, err := exec.Command("git", "--git-dir", filepath.Join(exported, "store.git"), "fsck", "--strict").CombinedOutput(); err != nil {
		t.Errorf("git fsck on the exported store: %v\n%s", err, b)
	}
	if out := mustRun(t, "", "user", "list", "--data", exported); !strings.Contains(out, "alice") {
		t.Errorf("user list of the exported store: %q", out)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no store", []string{"disk", "create", "--data", t.TempDir(), "-o", filepath.Join(t.TempDir(), "x.img")}, 1, "nymote store init"},
		{"bad size", []string{"disk", "create", "--data", data, "-o", "x.img", "--size", "lots"}, 2, "--size"},
		{"no output", []string{"disk", "create", "--data", data}, 2, "--output is required"},
		{"existing disk", []string{"disk", "create", "--data", data, "-o", img}, 1, "exists"},
		{"missing disk", []string{"disk", "export", filepath.Join(t.TempDir(), "none.img"), t.TempDir() + "/x"}, 1, "no such file"},
		{"unknown app", []string{"build", "fax", "-o", t.TempDir()}, 1, `unknown app "fax"`},
		{"unknown board", []string{"build", "hello", "--board", "vax", "-o", t.TempDir()}, 1, `unknown board "vax"`},
		{"run without disk", []string{"run", "hello"}, 2, "--disk is required"},
		{"run with a missing disk", []string{"run", "hello", "--disk", filepath.Join(t.TempDir(), "none.img")}, 1, "nymote disk create"},
		{"run on firecracker", []string{"run", "hello", "--board", "firecracker-x86_64", "--disk", img}, 2, "does not boot under QEMU"},
		{"bad set", []string{"build", "hello", "--set", "novalue", "-o", t.TempDir()}, 2, "KEY=VALUE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := run(t, "", tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("nymote %s: exit %d, %q; want exit %d with %q", strings.Join(tc.args, " "), code, errs, tc.code, tc.want)
			}
		})
	}
}
