package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/internal/slottest"
	"github.com/nymote/nymote/kernel"
	"github.com/nymote/nymote/launch"
)

// TestReproducible builds the same image twice into different folders:
// every artefact must be identical. The 32-bit ARM and Xen images are
// those the boot tests build (mail), so only the second build is extra.
func TestReproducible(t *testing.T) {
	for _, tc := range []struct{ app, board string }{
		{"hello", "qemu-x86_64"}, {"mail", "qemu-armv7"}, {"mail", "cubieboard"}, {"mail", "xen-pvh-x86_64"},
	} {
		t.Run(tc.board, func(t *testing.T) {
			dir1, m1 := build(t, tc.app, tc.board)
			dir2 := t.TempDir()
			m2, err := Build(context.Background(), Options{App: tc.app, Board: tc.board, OutDir: dir2, SourceDir: sourceRoot, Outputs: implementedOutputs(t, tc.board)})
			if err != nil {
				t.Fatal(err)
			}
			if len(m1.Files) == 0 || len(m1.Files) != len(m2.Files) {
				t.Fatalf("got %d and %d files", len(m1.Files), len(m2.Files))
			}
			for _, name := range append(fileNames(m1), ManifestFile) {
				a, err := os.ReadFile(filepath.Join(dir1, name))
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(dir2, name))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a, b) {
					t.Errorf("%s differs between two builds (%d and %d bytes)", name, len(a), len(b))
				}
			}
		})
	}
}

func fileNames(m *Manifest) []string {
	var ns []string
	for _, f := range m.Files {
		ns = append(ns, f.Name)
	}
	return ns
}

// TestManifest checks that the manifest describes the files on disk.
func TestManifest(t *testing.T) {
	dir, m := build(t, "hello", "qemu-x86_64")
	read, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if read.App != "hello" || read.Board != "qemu-x86_64" || read.GOARCH != "amd64" || !strings.HasPrefix(read.GoVersion, "go") ||
		read.Kernel.Release == "" || read.AppVersion == "" || read.Compression != "zstd" {
		t.Errorf("manifest fields: %+v", read)
	}
	for _, want := range []string{KernelFile, InitrdFile, CmdlineFile, QEMUScript} {
		if _, ok := m.File(want); !ok {
			t.Errorf("manifest has no %s", want)
		}
	}
	for _, f := range m.Files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if int64(len(b)) != f.Size || hex.EncodeToString(sum[:]) != f.SHA256 {
			t.Errorf("%s: manifest says %d bytes %s, file has %d bytes %x", f.Name, f.Size, f.SHA256, len(b), sum)
		}
	}
	if !strings.Contains(m.Cmdline, "console=ttyS0") {
		t.Errorf("cmdline %q has no console=ttyS0", m.Cmdline)
	}
}

// TestInitramfs reads the initramfs back: only what the runtime needs,
// with fixed metadata.
func TestInitramfs(t *testing.T) {
	dir, m := build(t, "hello", "qemu-x86_64")
	z, err := os.ReadFile(filepath.Join(dir, InitrdFile))
	if err != nil {
		t.Fatal(err)
	}
	// The kernel's decompressor allocates a workspace of the window's
	// size while memory is scarcest (see compressZstd).
	var h zstd.Header
	if err := h.Decode(z); err != nil {
		t.Fatal(err)
	}
	if h.WindowSize > zstdWindow {
		t.Errorf("zstd window %d bytes, want at most %d", h.WindowSize, zstdWindow)
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
	if int64(len(raw)) != m.InitramfsSize {
		t.Errorf("uncompressed %d bytes, manifest says %d", len(raw), m.InitramfsSize)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cpio.Record{}
	var names []string
	for _, r := range recs {
		if r.Name == cpio.Trailer {
			continue
		}
		got[r.Name] = r
		names = append(names, r.Name)
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d, want zeros", r.Name, r.MTime, r.UID, r.GID)
		}
	}
	want := []string{"data", "dev", "dev/console", "etc", "etc/nymote", "etc/nymote/image", "init", "proc", "sbin", "sbin/poweroff", "sys", "tmp"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("initramfs holds %v, want %v", names, want)
	}
	if p := got["sbin/poweroff"]; p.Mode&cpio.S_IFMT != cpio.S_IFLNK {
		t.Errorf("sbin/poweroff: mode %o, want a symbolic link to /init", p.Mode)
	}
	if c := got["dev/console"]; c.Mode&cpio.S_IFMT != cpio.S_IFCHR || c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("dev/console: mode %o %d,%d, want a char device 5,1", c.Mode, c.Rmajor, c.Rminor)
	}
	init := got["init"]
	if init.Mode&0o111 == 0 || int64(init.FileSize) != m.InitSize {
		t.Errorf("init: mode %o size %d, want executable, %d bytes", init.Mode, init.FileSize, m.InitSize)
	}
	b := make([]byte, 4)
	init.ReadAt(b, 0)
	if string(b) != "\x7fELF" {
		t.Errorf("init starts with %q, want an ELF file", b)
	}
}

// TestOutputs builds for every board and checks each board's artefacts.
func TestOutputs(t *testing.T) {
	for _, b := range boards.All() {
		t.Run(b.Name, func(t *testing.T) {
			dir, m := build(t, "hello", b.Name)
			for _, o := range b.Outputs {
				switch o {
				case boards.OutputQEMU:
					args, err := launch.QEMUCommand(qemuImage(t, dir, m), launch.QEMU{Disk: "d.img", Forwards: []launch.Forward{{Host: "127.0.0.1:1007", Guest: 7}}})
					if err != nil {
						t.Fatal(err)
					}
					line := strings.Join(args, " ")
					wants := []string{b.QEMU.Binary, "-machine " + b.QEMU.Machine, "hostfwd=tcp:127.0.0.1:1007-:7", "console=" + b.Console, b.QEMU.RNG, "file=d.img"}
					if b.DeviceTree != "" {
						wants = append(wants, "-dtb "+filepath.Join(dir, b.DeviceTree))
						if _, ok := m.File(b.DeviceTree); !ok {
							t.Errorf("manifest has no %s", b.DeviceTree)
						}
					}
					if b.QEMU.DiskInterface != "" {
						wants = append(wants, "if="+b.QEMU.DiskInterface)
					}
					if b.QEMU.NIC == "" {
						wants = append(wants, "-nic user,hostfwd=")
					}
					for _, want := range wants {
						if !strings.Contains(line, want) {
							t.Errorf("QEMU command %q lacks %q", line, want)
						}
					}
					script, _ := os.ReadFile(filepath.Join(dir, QEMUScript))
					if !strings.HasPrefix(string(script), "#!/bin/sh") || !strings.Contains(string(script), b.QEMU.Binary) {
						t.Errorf("%s: %q", QEMUScript, script)
					}
				case boards.OutputFirecracker:
					ef, err := elf.Open(filepath.Join(dir, VmlinuxFile))
					if err != nil {
						t.Fatalf("vmlinux: %v", err)
					}
					if ef.Machine != elf.EM_X86_64 {
						t.Errorf("vmlinux machine %v", ef.Machine)
					}
					ef.Close()
					var cfg firecrackerConfig
					raw, _ := os.ReadFile(filepath.Join(dir, FirecrackerFile))
					if err := json.Unmarshal(raw, &cfg); err != nil {
						t.Fatal(err)
					}
					if cfg.BootSource.KernelImagePath != VmlinuxFile || cfg.BootSource.InitrdPath != InitrdFile || !strings.Contains(cfg.BootSource.BootArgs, "reboot=k") {
						t.Errorf("firecracker config: %+v", cfg.BootSource)
					}
				case boards.OutputXen:
					checkXen(t, dir, m)
				case boards.OutputSDCard:
					checkSDCard(t, dir, m, b)
				}
			}
		})
	}
}

// checkSDCard checks a board's SD card image as the pipeline writes it:
// U-Boot at 8 KiB is the package's file, a bootable FAT boot partition,
// two FAT slots and a Linux partition; slot a holds the board's kernel,
// device tree and the image's initramfs, and its nymote.scr boots them
// with the image's command line; the same slot files are beside the card
// (an update carries them); the initramfs has the board's modules.
func checkSDCard(t *testing.T, dir string, m *Manifest, b boards.Board) {
	t.Helper()
	card := filepath.Join(dir, SDCardFile)
	for _, f := range []string{SDCardFile, KernelFile, b.DeviceTree, InitrdFile, SDSlotScriptFile} {
		if _, ok := m.File(f); !ok {
			t.Errorf("manifest has no %s", f)
		}
	}
	needUBoot(t, b.UBoot)
	needTool(t, "sfdisk", "fdisk")
	needTool(t, "mtype", "mtools")
	img, err := os.ReadFile(card)
	if err != nil {
		t.Fatal(err)
	}
	ub, err := os.ReadFile(b.UBoot)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img[8<<10:8<<10+len(ub)], ub) {
		t.Errorf("U-Boot at 8 KiB differs from %s", b.UBoot)
	}
	dump := run(t, "sfdisk", "--dump", card)
	for _, want := range []string{"label: dos", "start=        2048, size=       16384, type=e, bootable", "start=       18432, size=      131072, type=e\n", "type=83"} {
		if !strings.Contains(dump, want) {
			t.Errorf("sfdisk --dump lacks %q:\n%s", want, dump)
		}
	}
	boot := section(t, card, 1<<20, 8<<20)
	list := run(t, "mdir", "-i", boot, "-b", "::")
	for _, want := range []string{"boot.scr", "uboot.env", "uboot.def", "seed.txt"} {
		if !strings.Contains(list, "::/"+want) {
			t.Errorf("boot partition lacks %s:\n%s", want, list)
		}
	}
	slot := section(t, card, 9<<20, 64<<20)
	list = run(t, "mdir", "-i", slot, "-b", "::")
	for _, want := range []string{KernelFile, b.DeviceTree, InitrdFile, SDSlotScriptFile, "nymote.txt"} {
		if !strings.Contains(list, "::/"+want) {
			t.Errorf("slot a lacks %s:\n%s", want, list)
		}
		if want == "nymote.txt" {
			continue
		}
		got, _ := exec.Command("mtype", "-i", slot, "::"+want).Output()
		if beside, _ := os.ReadFile(filepath.Join(dir, want)); !bytes.Equal(got, beside) {
			t.Errorf("%s in slot a differs from the image's file", want)
		}
	}
	scr, err := exec.Command("mtype", "-i", slot, "::"+SDSlotScriptFile).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`setenv bootargs "` + m.Cmdline, " " + b.DeviceTree, "bootz "} {
		if !bytes.Contains(scr, []byte(want)) {
			t.Errorf("nymote.scr lacks %q:\n%s", want, scr)
		}
	}
	mods := strings.Join(m.InitramfsFiles, "\n")
	for _, mod := range b.Modules {
		if !strings.Contains(mods, "/"+mod+".ko") && !strings.Contains(mods, "/"+strings.ReplaceAll(mod, "_", "-")+".ko") && !strings.Contains(mods, "/"+strings.ReplaceAll(mod, "-", "_")+".ko") {
			t.Errorf("initramfs lacks module %s", mod)
		}
	}
}

// checkXen checks the Xen output: a vmlinux with the PVH entry, and an xl
// configuration that parses, says PVH, and names the image's files.
func checkXen(t *testing.T, dir string, m *Manifest) {
	t.Helper()
	v, err := os.ReadFile(filepath.Join(dir, VmlinuxFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kernel.PVHEntry(v); err != nil {
		t.Error(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, XenConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := launch.ParseXLConfig(string(raw))
	if err != nil {
		t.Fatalf("%s: %v", XenConfigFile, err)
	}
	if cfg["type"].Atom != "pvh" || cfg["extra"].Atom != m.Cmdline || cfg["memory"].Atom == "" {
		t.Errorf("%s: type %q, extra %q, memory %q; want pvh, %q and a size", XenConfigFile, cfg["type"].Atom, cfg["extra"].Atom, cfg["memory"].Atom, m.Cmdline)
	}
	for _, key := range []string{"kernel", "ramdisk"} {
		name := cfg[key].Atom
		if _, ok := m.File(name); !ok {
			t.Errorf("%s: %s = %q is not a file of the image", XenConfigFile, key, name)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %s: %v", XenConfigFile, key, err)
		}
	}
	if d := cfg["disk"].List; len(d) != 1 || !strings.Contains(d[0], "vdev=xvda") || !strings.HasSuffix(d[0], "target=data.img") {
		t.Errorf("%s: disk = %q, want one xvda disk with target last", XenConfigFile, d)
	}
	if v := cfg["vif"].List; len(v) != 1 {
		t.Errorf("%s: vif = %q, want one", XenConfigFile, v)
	}
	// Xen's own parser (libxlutil, as xl create reads the file).
	xlucheck, why := slottest.XLUCheck(t)
	if xlucheck == nil {
		t.Logf("%s not read with libxlutil: %s", XenConfigFile, why)
		return
	}
	out, err := xlucheck(filepath.Join(dir, XenConfigFile))
	want := "kernel " + VmlinuxFile + "\nramdisk " + InitrdFile + "\nextra " + m.Cmdline + "\non_reboot restart\ndisk xvda data.img raw rw\n"
	if err != nil || out != want {
		t.Errorf("%s as libxlutil reads it: %v\n%s\nwant:\n%s", XenConfigFile, err, out, want)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"unknown app", Options{App: "fax", Board: "qemu-x86_64"}, `unknown app "fax" (known apps: calendar, contacts, hello, mail)`},
		{"unknown board", Options{App: "hello", Board: "vax"}, `unknown board "vax"`},
		{"no output", Options{App: "hello", Board: "qemu-x86_64"}, "no output folder"},
		{"bad cmdline", Options{App: "hello", Board: "qemu-x86_64", Cmdline: []string{"a b"}}, "white space"},
		{"output the board lacks", Options{App: "hello", Board: "qemu-x86_64", Outputs: []boards.Output{boards.OutputXen}}, `board qemu-x86_64 has no "xen" output`},
		{"not the source", Options{App: "hello", Board: "qemu-x86_64", SourceDir: os.TempDir()}, "not the github.com/nymote/nymote module"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.OutDir == "" && tc.name != "no output" {
				tc.opts.OutDir = t.TempDir()
			}
			if tc.opts.SourceDir == "" {
				tc.opts.SourceDir = sourceRoot
			}
			_, err := Build(ctx, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	t.Run("kernel download fails", func(t *testing.T) {
		_, err := Build(ctx, Options{App: "hello", Board: "qemu-x86_64", OutDir: t.TempDir(), SourceDir: sourceRoot,
			KernelEnv: []string{"GOPROXY=off", "GOMODCACHE=" + t.TempDir()}})
		if err == nil || !strings.Contains(err.Error(), "downloading github.com/gokrazy/kernel.amd64") {
			t.Fatalf("got %v, want a download error", err)
		}
	})
}
