package appliance

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nymote/nymote/internal/ext4label"
)

// TestExt4Label reads the label of file systems made by mkfs.ext4, as
// nymote disk create makes them.
func TestExt4Label(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		if mkfs, err = exec.LookPath("/sbin/mkfs.ext4"); err != nil {
			t.Skip("mkfs.ext4 not installed: apt-get install e2fsprogs")
		}
	}
	dir := t.TempDir()
	for _, tc := range []struct{ label, want string }{{"nymote-data", "nymote-data"}, {"", ""}, {"sixteen-chars-ab", "sixteen-chars-ab"}, {codeLabel, codeLabel}} {
		img := filepath.Join(dir, "fs-"+tc.label+".img")
		if err := os.WriteFile(img, make([]byte, 8<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"-q", "-F", img}
		if tc.label != "" {
			args = append([]string{"-L", tc.label}, args...)
		}
		if out, err := exec.Command(mkfs, args...).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v: %s", err, out)
		}
		if got := ext4label.Read(img); got != tc.want {
			t.Errorf("label %q: got %q, want %q", tc.label, got, tc.want)
		}
	}
	garbage := filepath.Join(dir, "garbage.img")
	os.WriteFile(garbage, make([]byte, 4096), 0o600)
	if got := ext4label.Read(garbage); got != "" {
		t.Errorf("zeros: got label %q", got)
	}
	if dev, ok := findDataDisk(garbage, 0); dev != garbage || !ok {
		t.Errorf("findDataDisk with an existing fallback: got %s, %v", dev, ok)
	}
	if _, ok := findDataDisk(filepath.Join(dir, "missing"), 0); ok {
		t.Error("findDataDisk found a missing fallback")
	}
	// An image's code disk as the board's data device (no data disk
	// attached) is not a data disk.
	if dev, ok := findDataDisk(filepath.Join(dir, "fs-"+codeLabel+".img"), 0); ok {
		t.Errorf("findDataDisk took the code disk %s for a data disk", dev)
	}
}
