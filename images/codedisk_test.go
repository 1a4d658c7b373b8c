package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/nymote/nymote/boards"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/update"
)

// TestCodeDisk builds hello for microvm-x86_64, a board whose program goes
// on a code disk: the initramfs holds the stub as /init and not the
// program; the code disk is ext4 labelled nymote-code holding the program
// as /init, whose SHA-256 the manifest and the stub carry; QEMU attaches
// it read-only; and a second build gives the same code disk and stub.
// Built with InitramfsProgram, the same board keeps the program in the
// initramfs and has no code disk.
func TestCodeDisk(t *testing.T) {
	needTool(t, "mkfs.ext4", "e2fsprogs")
	needTool(t, "debugfs", "e2fsprogs")
	dir, m := build(t, "hello", "microvm-x86_64")
	if m.CodeDisk != CodeDiskFile || len(m.ProgramSHA256) != 64 || m.StubSize == 0 {
		t.Fatalf("manifest: code disk %q, program sha256 %q, stub %d bytes", m.CodeDisk, m.ProgramSHA256, m.StubSize)
	}
	if _, ok := m.File(CodeDiskFile); !ok {
		t.Fatalf("manifest files %v: no %s", fileNames(m), CodeDiskFile)
	}
	recs := initramfsRecords(t, dir)
	init, ok := recs["init"]
	if !ok || int64(init.FileSize) != m.StubSize || init.FileSize >= 4<<20 {
		t.Fatalf("initramfs /init: %d bytes, want the stub (%d bytes, under 4 MiB)", init.FileSize, m.StubSize)
	}
	stub, _ := io.ReadAll(io.NewSectionReader(init, 0, int64(init.FileSize)))
	if !bytes.Contains(stub, []byte(m.ProgramSHA256)) {
		t.Error("the stub does not carry the program's SHA-256")
	}
	if _, ok := recs["code"]; !ok {
		t.Error("initramfs has no /code mount point")
	}
	if p := recs["sbin/poweroff"]; p.Mode&cpio.S_IFMT != cpio.S_IFLNK {
		t.Errorf("sbin/poweroff: mode %o, want a link to /code/init", p.Mode)
	} else if target, _ := io.ReadAll(io.NewSectionReader(p, 0, int64(p.FileSize))); string(target) != "/code/init" {
		t.Errorf("sbin/poweroff links to %q, want /code/init", target)
	}

	img := filepath.Join(dir, CodeDiskFile)
	if got := ext4LabelOf(t, img); got != CodeDiskLabel {
		t.Errorf("code disk label %q, want %q", got, CodeDiskLabel)
	}
	prog := filepath.Join(t.TempDir(), "init")
	if out, err := exec.Command("debugfs", "-R", "dump -p /init "+prog, img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v: %s", err, out)
	}
	b, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != m.ProgramSHA256 || int64(len(b)) != m.InitSize {
		t.Errorf("the code disk's /init: %d bytes sha256 %x, manifest says %d bytes %s", len(b), sum, m.InitSize, m.ProgramSHA256)
	}
	if fi, _ := os.Stat(prog); fi.Mode()&0o111 == 0 {
		t.Errorf("the code disk's /init has mode %v, want executable", fi.Mode())
	}

	bd, _ := boards.Get("microvm-x86_64")
	qi, err := m.QEMUImage(dir, bd)
	if err != nil {
		t.Fatal(err)
	}
	args, err := launch.QEMUCommand(qi, launch.QEMU{Disk: "d.img"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "file=" + img + ",format=raw,id=code,readonly=on,if=none"; !slices.Contains(args, want) {
		t.Errorf("QEMU command %q: no read-only code disk %q", args, want)
	}

	// Reproducible: the same program gives the same code disk and stub.
	dir2 := t.TempDir()
	if _, err := Build(context.Background(), Options{App: "hello", Board: "microvm-x86_64", OutDir: dir2, SourceDir: sourceRoot}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CodeDiskFile, InitrdFile, ManifestFile} {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(dir2, name))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds (%d and %d bytes)", name, len(a), len(b))
		}
	}

	// Kept in the initramfs on request; a code disk of an earlier
	// build in the folder goes.
	m3, err := Build(context.Background(), Options{App: "hello", Board: "microvm-x86_64", OutDir: dir2, SourceDir: sourceRoot, InitramfsProgram: true})
	if err != nil {
		t.Fatal(err)
	}
	if m3.CodeDisk != "" || m3.StubSize != 0 {
		t.Errorf("InitramfsProgram: manifest code disk %q, stub %d bytes", m3.CodeDisk, m3.StubSize)
	}
	if _, err := os.Stat(filepath.Join(dir2, CodeDiskFile)); !os.IsNotExist(err) {
		t.Errorf("InitramfsProgram: %s left in the folder (%v)", CodeDiskFile, err)
	}
	if init := initramfsRecords(t, dir2)["init"]; int64(init.FileSize) != m3.InitSize {
		t.Errorf("InitramfsProgram: /init is %d bytes, want the program's %d", init.FileSize, m3.InitSize)
	}
}

// TestCodeDiskSize: the code disk leaves room for the file system's own
// blocks and is a whole number of MiB.
func TestCodeDiskSize(t *testing.T) {
	for _, n := range []int64{0, 1, 1 << 20, 25<<20 + 12345, 100 << 20} {
		s := codeDiskSize(n)
		if s%(1<<20) != 0 || s < n+n/10+1<<20 || s > n+n/10+2<<20 {
			t.Errorf("codeDiskSize(%d) = %d", n, s)
		}
	}
}

// initramfsRecords reads the image's initramfs.
func initramfsRecords(t *testing.T, dir string) map[string]cpio.Record {
	t.Helper()
	z, err := os.ReadFile(filepath.Join(dir, InitrdFile))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zstd.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]cpio.Record{}
	for _, r := range rs {
		recs[strings.TrimPrefix(r.Name, "/")] = r
	}
	return recs
}

// ext4LabelOf reads the label of the ext4 file system in img.
func ext4LabelOf(t *testing.T, img string) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := make([]byte, 0x88)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		t.Fatal(err)
	}
	if sb[0x38] != 0x53 || sb[0x39] != 0xef {
		return ""
	}
	return string(bytes.TrimRight(sb[0x78:0x88], "\x00"))
}

// TestCodeDiskSlots: the update slots beside a data disk carry each
// image's code disk with its initramfs, so that a test boot runs the new
// image's program under the new image's stub, and a rollback the old
// program under the old stub. The new image is hello built with another
// program (the build tag of its test data migration).
func TestCodeDiskSlots(t *testing.T) {
	needTool(t, "mkfs.ext4", "e2fsprogs")
	v1, m1 := build(t, "hello", "microvm-x86_64")
	v2 := t.TempDir()
	m2, err := Build(context.Background(), Options{App: "hello", Board: "microvm-x86_64", OutDir: v2, SourceDir: sourceRoot, BuildTags: []string{"nymote_migrationtest"}})
	if err != nil {
		t.Fatal(err)
	}
	if m1.ProgramSHA256 == m2.ProgramSHA256 {
		t.Fatal("the two images have the same program")
	}
	s, err := update.OpenSlots(filepath.Join(t.TempDir(), "data.img.slots"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{v1, v2} {
		if _, err := s.Given(dir, update.InstallOptions{AllowUnsigned: true}); err != nil {
			t.Fatal(err)
		}
	}
	bd, _ := boards.Get("microvm-x86_64")
	// The test boot of v2, then (not committed) the rollback to v1.
	for i, want := range []*Manifest{m2, m1} {
		bt, err := s.Boot()
		if err != nil {
			t.Fatal(err)
		}
		if bt.Test != (i == 0) {
			t.Fatalf("boot %d: test %v", i, bt.Test)
		}
		sm, err := ReadManifest(bt.Dir)
		if err != nil {
			t.Fatal(err)
		}
		img, err := sm.QEMUImage(bt.Dir, bd)
		if err != nil {
			t.Fatal(err)
		}
		args, err := launch.QEMUCommand(img, launch.QEMU{Disk: "data.img"})
		if err != nil {
			t.Fatal(err)
		}
		code := filepath.Join(bt.Dir, CodeDiskFile)
		if !slices.Contains(args, "file="+code+",format=raw,id=code,readonly=on,if=none") {
			t.Errorf("boot %d (slot %s): QEMU attaches no code disk from the slot: %q", i, bt.Slot, args)
		}
		wf, _ := want.File(CodeDiskFile)
		if got := fileSHA256(t, code); got != wf.SHA256 {
			t.Errorf("boot %d (slot %s): code disk sha256 %s, want the image's %s", i, bt.Slot, got, wf.SHA256)
		}
		stub := initramfsRecords(t, bt.Dir)["init"]
		b, _ := io.ReadAll(io.NewSectionReader(stub, 0, int64(stub.FileSize)))
		if !bytes.Contains(b, []byte(want.ProgramSHA256)) {
			t.Errorf("boot %d (slot %s): the stub does not carry the program's SHA-256 %s", i, bt.Slot, want.ProgramSHA256)
		}
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestBootCodeDisk boots hello on microvm-x86_64 (TCG, three short boots)
// where its code disk is wrong or missing: a code disk holding another
// program is refused by the stub, which says so and powers off; without a
// code disk the stub says what to attach and powers off; with its code
// disk and no data disk, the program runs and refuses to take the code
// disk (the board's /dev/vda then) for a data disk. The boots with a
// right code disk and a data disk are TestBootMail's and the slot tests'.
func TestBootCodeDisk(t *testing.T) {
	needTool(t, "mkfs.ext4", "e2fsprogs")
	dir, m := build(t, "hello", "microvm-x86_64")
	swapped := t.TempDir()
	for _, f := range []string{KernelFile, InitrdFile} {
		if err := os.Symlink(filepath.Join(dir, f), filepath.Join(swapped, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeCodeDisk(context.Background(), &plan{opts: Options{OutDir: swapped}}, []byte("#!/bin/sh\necho not the program\n")); err != nil {
		t.Fatal(err)
	}
	img := qemuImage(t, dir, m)
	noCode := img
	noCode.CodeDisk = ""
	other := img
	other.Dir = swapped
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := datadisk.Create(context.Background(), t.TempDir(), disk, 32<<20); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		img  launch.Image
		disk string
		want string
	}{
		{"swapped", other, disk, "nymote: code disk: the code disk /dev/vd"},
		{"missing", noCode, disk, "nymote: code disk: no block device holds the code disk"},
		{"no data disk", img, "", "is the image's code disk (attach a data disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needTool(t, "qemu-system-x86_64", "qemu-system-x86")
			vm, err := launch.StartQEMU(context.Background(), tc.img, launch.QEMU{Disk: tc.disk, MemoryMiB: 128, ExtraCmdline: []string{"nymote.net=" + guestNet}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			killAtCleanup(t, vm)
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			defer cancel()
			l, err := vm.WaitLine(ctx, tc.want)
			if err != nil {
				t.Fatalf("%v\nconsole:\n%s", err, vm.Console())
			}
			t.Log(strings.TrimSpace(l.Text))
			if err := vm.Wait(ctx); err != nil {
				t.Fatalf("QEMU did not exit after the refusal: %v", err)
			}
			if c := vm.Console(); strings.Contains(c, "listening on") {
				t.Errorf("the appliance served:\n%s", c)
			}
		})
	}
}
