package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/update"
)

// signedImage writes a signed image folder (one file) declaring data
// format f (nil: none, an image from before formats).
func signedImage(t *testing.T, s *update.Signer, version string, f *app.DataFormat) string {
	t.Helper()
	dir := t.TempDir()
	b := []byte("initrd of " + version)
	if err := os.WriteFile(filepath.Join(dir, "initrd.cpio.zst"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	m := update.Manifest{App: "hello", AppVersion: version, Board: "microvm-x86_64", DataFormat: f,
		TrustedKeys: []string{update.EncodeKey(s.Public())},
		Files:       []update.File{{Name: "initrd.cpio.zst", Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}}}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, update.ManifestFile), mb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, update.SignatureFile), s.SignManifest(mb), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dataDisk writes an ext4 data disk at path whose format record says
// format.
func dataDisk(t *testing.T, path string, format int) {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		if _, serr := os.Stat("/sbin/mkfs.ext4"); serr != nil {
			t.Skip("mkfs.ext4 (e2fsprogs) not installed")
		}
		mkfs = "/sbin/mkfs.ext4"
	}
	root := t.TempDir()
	if err := update.WriteDiskFormat(root, update.DiskFormat{Format: format}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", root, path, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
}

// TestUpdateRollbackDataFormat: after an update whose image migrated the
// data disk to format 2 committed, nymote update rollback refuses to
// return to the format 1 image (naming both formats) and so does update
// install, before anything is written; status shows the formats; with the
// disk still in format 1 the rollback goes ahead.
func TestUpdateRollbackDataFormat(t *testing.T) {
	key := filepath.Join(t.TempDir(), "k")
	if _, err := update.CreateKey(key); err != nil {
		t.Fatal(err)
	}
	s, err := update.LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(t.TempDir(), "data.img")
	sl, err := update.OpenSlots(update.SlotsDir(disk))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sl.Install(signedImage(t, s, "v1", nil), update.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	f2 := &app.DataFormat{Version: 2, Reads: []int{1}, Migrations: []app.Migration{{From: 1, Name: "split-greeting"}}}
	dataDisk(t, disk, 1)
	mustRun(t, "", "update", "install", "--image", signedImage(t, s, "v2", f2), "--disk", disk)
	if b, err := sl.Boot(); err != nil || !b.Test {
		t.Fatalf("v2's test boot: %+v, %v", b, err)
	}
	if err := sl.Commit(update.SlotB); err != nil {
		t.Fatal(err)
	}
	// v2's first boot after its commit migrated the disk.
	dataDisk(t, disk, 2)
	st := mustRun(t, "", "update", "status", "--disk", disk)
	if !regexp.MustCompile(`slot a .* format 1 +previous`).MatchString(st) || !regexp.MustCompile(`slot b .* format 2 +committed`).MatchString(st) || !strings.Contains(st, "data format 2") {
		t.Errorf("status:\n%s", st)
	}
	state := func() string {
		b, _ := os.ReadFile(filepath.Join(sl.Dir, update.StateFile))
		return string(b)
	}
	before := state()
	code, _, errs := run(t, "", "update", "rollback", "--disk", disk)
	if code != 1 || !strings.Contains(errs, "slot a's image (hello v1") || !strings.Contains(errs, "writes data format 1") || !strings.Contains(errs, "in format 2") || !strings.Contains(errs, "refusing the rollback") {
		t.Errorf("rollback after the migration: exit %d, %q", code, errs)
	}
	code, _, errs = run(t, "", "update", "install", "--image", signedImage(t, s, "v1b", nil), "--disk", disk)
	if code != 1 || !strings.Contains(errs, "writes data format 1") {
		t.Errorf("install of a format 1 image: exit %d, %q", code, errs)
	}
	if after := state(); after != before {
		t.Errorf("the refusals changed the state:\n%s\nwas:\n%s", after, before)
	}
	// Had v2 not migrated yet, the rollback goes ahead.
	dataDisk(t, disk, 1)
	if out := mustRun(t, "", "update", "rollback", "--disk", disk); !strings.Contains(out, "slot a") {
		t.Errorf("rollback before the migration: %q", out)
	}
}
