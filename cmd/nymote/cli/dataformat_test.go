package cli

import (
	"bytes"
	"context"
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
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/internal/sdboot"
	"github.com/nymote/nymote/internal/slottest"
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
	s := slottest.Signer(t)
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

// TestUpdateMigrationBoot (opt-in: NYMOTE_MIGRATE_BOOT=1; two image
// builds and four boots of hello on microvm-x86_64 under TCG, about 3
// minutes) runs a data migration through the whole update path: v1
// (format 1) serves; v2, built with the tag nymote_migrationtest (format
// 2, reads 1, carries app.HelloTestMigration, a commit in the store) is
// sent over the update port, test-boots on the data as it is, reports
// good and is committed; the appliance reboots to migrate, migrates with
// a line per step and serves v2. Then the data disk is in format 2, its
// store has the migration's commit and passes git fsck, and nymote update
// rollback refuses to return to v1.
func TestUpdateMigrationBoot(t *testing.T) {
	if os.Getenv("NYMOTE_MIGRATE_BOOT") != "1" {
		t.Skip("opt-in: NYMOTE_MIGRATE_BOOT=1")
	}
	needBootTools(t)
	tmp := t.TempDir()
	key := filepath.Join(tmp, "nymote.key")
	mustRun(t, "", "key", "create", key)
	v1 := buildSigned(t, key, filepath.Join(tmp, "v1"), "release=v1")
	sg, err := update.LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	v2 := filepath.Join(tmp, "v2")
	if _, err := images.Build(context.Background(), images.Options{App: "hello", Board: updateBoard, OutDir: v2,
		Cmdline: []string{"nymote.release=v2"}, Signer: sg, BuildTags: []string{"nymote_migrationtest"}}); err != nil {
		t.Fatal(err)
	}
	// The host's table says format 1; the image's code (built with the
	// tag) says 2: its manifest says what its code does.
	m := readManifest(t, v2)
	m["data_format"] = map[string]any{"version": 2, "reads": []int{1},
		"migrations": []map[string]any{{"from": 1, "name": app.HelloTestMigration}}}
	resign(t, v2, key, m, nil)

	disk := helloDisk(t, tmp)
	r := startRunner(t, v1, disk)
	r.waitFor(&r.out, "hello good: serving", 1)
	if res := <-r.send(v2); !strings.Contains(res, "exit 0") {
		t.Fatalf("update to v2: %s", res)
	}
	r.waitFor(&r.out, "test boot: serving the data as it is, in data format 1 (this image writes format 2", 1)
	r.waitFor(&r.errs, "slot b reported good: committed", 1)
	r.waitFor(&r.out, "nymote: "+app.MigrateRebootLine+": stopping hello", 1)
	r.waitFor(&r.out, "data migration "+app.HelloTestMigration+": format 1 to 2", 1)
	r.waitFor(&r.out, "data migration "+app.HelloTestMigration+" done: the data is in format 2", 1)
	r.waitFor(&r.out, "hello good: serving", 3)
	if c := strings.Count(r.out.String(), "data migration "+app.HelloTestMigration+": format 1 to 2"); c != 1 {
		t.Errorf("the migration ran %d times", c)
	}
	// It migrated after the commit, on a boot that was not a test.
	out := r.out.String()
	if i, j := strings.Index(out, app.MigrateRebootLine), strings.Index(out, "data migration "+app.HelloTestMigration+":"); i < 0 || j < i {
		t.Errorf("the migration did not follow the reboot after the commit")
	}
	if g := greet(t, r.port); !strings.HasPrefix(g, "hello from nymote v2") {
		t.Errorf("after the migration the appliance greets %q", g)
	}
	r.cancel()
	if code := <-r.done; code != 0 {
		t.Errorf("nymote run: exit %d", code)
	}
	st := mustRun(t, "", "update", "status", "--disk", disk)
	if !strings.Contains(st, "data disk "+disk+": data format 2") || !regexp.MustCompile(`slot b .* format 2 +committed`).MatchString(st) {
		t.Errorf("status:\n%s", st)
	}
	if code, _, errs := run(t, "", "update", "rollback", "--disk", disk); code != 1 || !strings.Contains(errs, "writes data format 1") || !strings.Contains(errs, "in format 2") {
		t.Errorf("rollback to v1 after the migration: exit %d, %q", code, errs)
	}
	exported := filepath.Join(t.TempDir(), "export")
	mustRun(t, "", "disk", "export", disk, exported)
	gitDir := filepath.Join(exported, "store.git")
	if b, err := exec.Command("git", "--git-dir", gitDir, "fsck", "--strict").CombinedOutput(); err != nil {
		t.Errorf("git fsck after the migration: %v\n%s", err, b)
	}
	if b, err := exec.Command("git", "--git-dir", gitDir, "log", "-1", "--format=%s").Output(); err != nil || strings.TrimSpace(string(b)) != "data migration "+app.HelloTestMigration+": format 1 to 2" {
		t.Errorf("newest commit %q, %v", b, err)
	}
	if b, err := exec.Command("git", "--git-dir", gitDir, "show", "HEAD:hello/format").Output(); err != nil || string(b) != "2\n" {
		t.Errorf("hello/format %q, %v", b, err)
	}
}

// TestUpdateRollbackCardDataFormat: on an SD card whose slot b (format 2)
// is committed and whose data partition is in format 2, nymote update
// rollback --card refuses to return to slot a (format 1, as flashed),
// before anything is written.
func TestUpdateRollbackCardDataFormat(t *testing.T) {
	uboot := "/usr/lib/u-boot/Cubieboard/u-boot-sunxi-with-spl.bin"
	if _, err := os.Stat(uboot); err != nil {
		t.Skipf("no %s (u-boot-sunxi)", uboot)
	}
	if _, err := exec.LookPath("debugfs"); err != nil {
		if _, serr := os.Stat("/sbin/debugfs"); serr != nil {
			t.Skip("no debugfs (e2fsprogs)")
		}
	}
	dir := t.TempDir()
	bootFiles := map[string][]byte{sdboot.KernelFile: bytes.Repeat([]byte("k"), 64<<10), "board.dtb": []byte("dtb"),
		sdboot.InitrdFile: bytes.Repeat([]byte("i"), 64<<10)}
	for n, b := range bootFiles {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	disk := filepath.Join(dir, "data.img")
	dataDisk(t, disk, 2)
	card := filepath.Join(dir, "sdcard.img")
	l, err := images.WriteSDCard(context.Background(), card, images.SDCardInput{UBoot: uboot, Kernel: filepath.Join(dir, sdboot.KernelFile),
		DTB: filepath.Join(dir, "board.dtb"), Initrd: filepath.Join(dir, sdboot.InitrdFile), Cmdline: "quiet", DataDisk: disk, App: "hello", Board: "cubieboard"})
	if err != nil {
		t.Fatal(err)
	}
	// Slot b: an image of format 2, installed and committed.
	c, err := sdboot.OpenCard(card, true)
	if err != nil {
		t.Fatal(err)
	}
	bootFiles[sdboot.SlotScriptFile] = []byte("script")
	files, err := sdboot.SlotFiles(bootFiles, "board.dtb", sdboot.Info{App: "hello", Board: "cubieboard", Version: "v2", DataFormat: 2})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(card, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Card().Install("a", "b", f, l.SlotStart[1], l.SlotSize, uint32(l.SlotStart[1]/512), files); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := c.Card().Commit("b"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	before := mustRun(t, "", "update", "status", "--card", card)
	code, _, errs := run(t, "", "update", "rollback", "--card", card)
	if code != 1 || !strings.Contains(errs, "slot a's image (hello for cubieboard") || !strings.Contains(errs, "writes data format 1") || !strings.Contains(errs, "in format 2") || !strings.Contains(errs, "refusing the rollback") {
		t.Errorf("rollback --card after the migration: exit %d, %q", code, errs)
	}
	if after := mustRun(t, "", "update", "status", "--card", card); after != before {
		t.Errorf("status changed by the refusal:\n%s\nwas:\n%s", after, before)
	}
}
