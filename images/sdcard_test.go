package images

import (
	"bytes"
	"context"
	bin "encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/internal/bootseed"
)

// Debian's U-Boot for the Cubieboard family (package u-boot-sunxi:armhf).
const (
	ubootCubieboard  = "/usr/lib/u-boot/Cubieboard/u-boot-sunxi-with-spl.bin"
	ubootCubieboard2 = "/usr/lib/u-boot/Cubieboard2/u-boot-sunxi-with-spl.bin"
)

func needUBoot(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s missing: dpkg --add-architecture armhf; apt-get install u-boot-sunxi:armhf (make test-deps)", path)
	}
}

// fakeBootFiles writes stand-ins for a kernel, a device tree and an
// initramfs (the layout tests do not boot them).
func fakeBootFiles(t *testing.T) (kernel, dtb, initrd string) {
	t.Helper()
	dir := t.TempDir()
	kernel = filepath.Join(dir, "vmlinuz")
	dtb = filepath.Join(dir, "sun7i-a20-cubieboard2.dtb")
	initrd = filepath.Join(dir, "initrd.img")
	for _, f := range []struct {
		path string
		n    int
	}{{kernel, 5 << 20}, {dtb, 30 << 10}, {initrd, 3<<20 + 17}} {
		b := make([]byte, f.n)
		for i := range b {
			b[i] = byte(i*31 + len(f.path))
		}
		if err := os.WriteFile(f.path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return kernel, dtb, initrd
}

// section copies n bytes at off of the file at path into a new file.
func section(t *testing.T, path string, off, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(t.TempDir(), "part.img")
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := copySparse(context.Background(), o, 0, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	if err := o.Truncate(n); err != nil {
		t.Fatal(err)
	}
	return out
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestSDCardLayout writes a Cubieboard2 SD card image and checks it with
// Debian's tools: the partition table (sfdisk), U-Boot at 8 KiB, the boot
// partition and slot a (fsck.fat, mtools), boot.scr and nymote.scr
// (dumpimage, and the same bytes as mkimage), uboot.env (fw_printenv), an
// empty slot b and the data partition (e2fsck).
func TestSDCardLayout(t *testing.T) {
	needUBoot(t, ubootCubieboard2)
	for _, tool := range [][2]string{{"sfdisk", "fdisk"}, {"fsck.fat", "dosfstools"}, {"mtype", "mtools"}, {"dumpimage", "u-boot-tools"}, {"mkimage", "u-boot-tools"}, {"fw_printenv", "libubootenv-tool"}, {"e2fsck", "e2fsprogs"}, {"mkfs.ext4", "e2fsprogs"}} {
		needTool(t, tool[0], tool[1])
	}
	kernel, dtb, initrd := fakeBootFiles(t)
	card := filepath.Join(t.TempDir(), SDCardFile)
	l, err := WriteSDCard(context.Background(), card, SDCardInput{
		UBoot: ubootCubieboard2, Kernel: kernel, DTB: dtb, Initrd: initrd,
		Cmdline: "console=ttyS0,115200 panic=-1", DataSize: 32 << 20, App: "mail", Board: "cubieboard2",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := (SDCardLayout{BootStart: 1 << 20, BootSize: 8 << 20, SlotStart: [2]int64{9 << 20, 73 << 20}, SlotSize: 64 << 20, DataStart: 137 << 20, DataSize: 32 << 20}); l != want {
		t.Errorf("layout: got %+v, want %+v", l, want)
	}

	dump := run(t, "sfdisk", "--dump", card)
	for _, want := range []string{
		"label: dos",
		"label-id: 0x6e796d6f",
		"start=        2048, size=       16384, type=e, bootable",
		"start=       18432, size=      131072, type=e\n",
		"start=      149504, size=      131072, type=e\n",
		"start=      280576, size=       65536, type=83",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("sfdisk --dump lacks %q:\n%s", want, dump)
		}
	}

	img, err := os.ReadFile(card)
	if err != nil {
		t.Fatal(err)
	}
	ub, err := os.ReadFile(ubootCubieboard2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img[8<<10:8<<10+len(ub)], ub) {
		t.Error("U-Boot at 8 KiB differs from the package's file")
	}

	boot := section(t, card, l.BootStart, l.BootSize)
	run(t, "fsck.fat", "-n", boot)
	if lbl := run(t, "mlabel", "-i", boot, "-s", "::"); !strings.Contains(lbl, SDCardBootLabel) {
		t.Errorf("boot partition label: got %q, want %s", lbl, SDCardBootLabel)
	}
	if ls := run(t, "mdir", "-b", "-i", boot, "::"); len(strings.Fields(ls)) != 4 {
		t.Errorf("boot partition: want boot.scr, uboot.env, uboot.def and seed.txt only, got:\n%s", ls)
	}
	slotA := section(t, card, l.SlotStart[0], l.SlotSize)
	run(t, "fsck.fat", "-n", slotA)
	if lbl := run(t, "mlabel", "-i", slotA, "-s", "::"); !strings.Contains(lbl, "NYMOTE-A") {
		t.Errorf("slot a's label: got %q, want NYMOTE-A", lbl)
	}
	for name, src := range map[string]string{"vmlinuz": kernel, "sun7i-a20-cubieboard2.dtb": dtb, InitrdFile: initrd} {
		want, _ := os.ReadFile(src)
		got, err := exec.Command("mtype", "-i", slotA, "::"+name).Output()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s in slot a: %d bytes (%v), want %d bytes of %s", name, len(got), err, len(want), src)
		}
	}
	if info, _ := exec.Command("mtype", "-i", slotA, "::nymote.txt").Output(); !strings.HasPrefix(string(info), "app=mail\nboard=cubieboard2\ninitrd_sha256=") || !strings.Contains(string(info), "\ndata_format=1\n") {
		t.Errorf("slot a's nymote.txt: %q", info)
	}
	if b := img[l.SlotStart[1] : l.SlotStart[1]+l.SlotSize]; !bytes.Equal(b, make([]byte, len(b))) {
		t.Error("slot b is not empty on a new card")
	}
	seed, _ := exec.Command("mtype", "-i", boot, "::"+bootseed.FileName).Output()
	if s, err := bootseed.Parse(seed); err != nil || s != nil {
		t.Errorf("the image's seed file: got seed %x, %v; want an empty seed file (images carry no seed)", s, err)
	}

	checkScript := func(part, name, title string, wants []string) {
		t.Helper()
		scr, err := exec.Command("mtype", "-i", part, "::"+name).Output()
		if err != nil {
			t.Fatal(err)
		}
		scrFile := filepath.Join(t.TempDir(), name)
		os.WriteFile(scrFile, scr, 0o644)
		info := run(t, "dumpimage", "-l", scrFile)
		if !strings.Contains(info, "ARM Linux Script") {
			t.Errorf("dumpimage -l %s: not an ARM Linux script:\n%s", name, info)
		}
		script := string(scr[72:])
		for _, want := range wants {
			if !strings.Contains(script, want) {
				t.Errorf("%s lacks %q:\n%s", name, want, script)
			}
		}
		// The same bytes as mkimage writes from the same script.
		src := filepath.Join(t.TempDir(), "boot.cmd")
		os.WriteFile(src, []byte(script), 0o644)
		mk := filepath.Join(t.TempDir(), "mk.scr")
		cmd := exec.Command("mkimage", "-A", "arm", "-O", "linux", "-T", "script", "-C", "none", "-n", title, "-d", src, mk)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=315532800")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mkimage: %v\n%s", err, out)
		}
		if want, _ := os.ReadFile(mk); !bytes.Equal(scr, want) {
			t.Errorf("%s differs from mkimage's:\n% x\n% x", name, scr[:72], want[:min(72, len(want))])
		}
	}
	checkScript(boot, "boot.scr", "nymote boot script", []string{
		"setenv nymote_tried ${nymote_next}",
		"if saveenv; then setenv nymote_boot ${nymote_next};",
		"if load ${devtype} ${devnum}:${nymote_part} ${nymote_scr} nymote.scr; then source ${nymote_scr}; fi",
	})
	checkScript(slotA, "nymote.scr", "nymote slot script", []string{
		`setenv bootargs "console=ttyS0,115200 panic=-1 nymote.seed=/dev/mmcblk0p1 nymote.sdslot=${nymote_boot}"`,
		"load ${devtype} ${devnum}:${nymote_part} ${fdt_addr_r} sun7i-a20-cubieboard2.dtb",
		"load ${devtype} ${devnum}:${distro_bootpart} ${pxefile_addr_r} seed.txt",
		"fdt set /chosen rng-seed ${nymote_seed}",
		"bootz ${kernel_addr_r} ${ramdisk_addr_r}:${nymote_initrd_size} ${fdt_addr_r}",
	})

	env, err := exec.Command("mtype", "-i", boot, "::uboot.env").Output()
	if err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(t.TempDir(), "uboot.env")
	os.WriteFile(envFile, env, 0o644)
	cfg := filepath.Join(t.TempDir(), "fw_env.config")
	os.WriteFile(cfg, []byte(fmt.Sprintf("%s 0x0 %#x\n", envFile, ubootEnvSize)), 0o644)
	printed := run(t, "fw_printenv", "-c", cfg)
	for _, want := range []string{"\nbootdelay=0\n", "\nboot_targets=fel mmc0\n", "\nfdtfile=sun7i-a20-cubieboard2.dtb\n", "\nkernel_addr_r=", "\nbootcmd=run distro_bootcmd\n"} {
		if !strings.Contains("\n"+printed, want) {
			t.Errorf("fw_printenv lacks %q:\n%s", strings.TrimSpace(want), printed)
		}
	}
	if strings.Contains(printed, "preboot=") {
		t.Errorf("uboot.env keeps preboot (the USB scan):\n%s", printed)
	}

	data := section(t, card, l.DataStart, l.DataSize)
	run(t, "e2fsck", "-fn", data)
	if out := run(t, "dumpe2fs", "-h", data); !strings.Contains(out, "Filesystem volume name:   nymote-data") {
		t.Errorf("data partition is not labelled nymote-data:\n%s", out)
	}
}

// TestSDCardReproducible writes the same card twice: the bytes are equal.
func TestSDCardReproducible(t *testing.T) {
	needUBoot(t, ubootCubieboard)
	needTool(t, "mkfs.ext4", "e2fsprogs")
	kernel, dtb, initrd := fakeBootFiles(t)
	var sums [][]byte
	for i := 0; i < 2; i++ {
		card := filepath.Join(t.TempDir(), SDCardFile)
		if _, err := WriteSDCard(context.Background(), card, SDCardInput{UBoot: ubootCubieboard, Kernel: kernel, DTB: dtb, Initrd: initrd, Cmdline: "quiet", DataSize: 16 << 20}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(card)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, b)
	}
	if !bytes.Equal(sums[0], sums[1]) {
		for i := range sums[0] {
			if sums[0][i] != sums[1][i] {
				t.Fatalf("two builds differ, first at byte %d", i)
			}
		}
	}
}

// TestSDCardDataDisk puts a data disk made by disk.Create on a card: the
// data partition holds its bytes.
func TestSDCardDataDisk(t *testing.T) {
	needUBoot(t, ubootCubieboard)
	needTool(t, "mkfs.ext4", "e2fsprogs")
	kernel, dtb, initrd := fakeBootFiles(t)
	dataDir := t.TempDir()
	os.WriteFile(filepath.Join(dataDir, "hello-boots"), []byte("41\n"), 0o600)
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := datadisk.Create(context.Background(), dataDir, disk, 20<<20+300); err != nil {
		t.Fatal(err)
	}
	card := filepath.Join(t.TempDir(), SDCardFile)
	l, err := WriteSDCard(context.Background(), card, SDCardInput{UBoot: ubootCubieboard, Kernel: kernel, DTB: dtb, Initrd: initrd, DataDisk: disk, BootSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(card); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("an image holding a data disk: mode %v (%v), want 0600", fi.Mode(), err)
	}
	want, _ := os.ReadFile(disk)
	img, _ := os.ReadFile(card)
	if l.DataSize != 20<<20+512 || int64(len(img)) != l.DataStart+l.DataSize {
		t.Errorf("layout %+v, image %d bytes; want a data partition of %d bytes at the end", l, len(img), 20<<20+512)
	}
	if got := img[l.DataStart : l.DataStart+int64(len(want))]; !bytes.Equal(got, want) {
		t.Error("the data partition differs from the data disk")
	}
}

func TestSDCardErrors(t *testing.T) {
	needUBoot(t, ubootCubieboard)
	kernel, dtb, initrd := fakeBootFiles(t)
	notExt4 := filepath.Join(t.TempDir(), "data.img")
	os.WriteFile(notExt4, make([]byte, 4<<20), 0o644)
	big := filepath.Join(t.TempDir(), "big.bin")
	os.WriteFile(big, make([]byte, 1<<20), 0o644)
	good := SDCardInput{UBoot: ubootCubieboard, Kernel: kernel, DTB: dtb, Initrd: initrd, DataDisk: notExt4}
	for _, tc := range []struct {
		name   string
		change func(*SDCardInput)
		want   string
	}{
		{"no U-Boot", func(in *SDCardInput) { in.UBoot = "" }, "no UBoot file given"},
		{"missing kernel", func(in *SDCardInput) { in.Kernel = "/nonexistent/zImage" }, "/nonexistent/zImage"},
		{"quote in cmdline", func(in *SDCardInput) { in.Cmdline = `a="b"` }, "kernel command line"},
		{"odd boot size", func(in *SDCardInput) { in.BootSize = 3<<20 + 5 }, "whole number of MiB"},
		{"U-Boot too large", func(in *SDCardInput) { in.UBoot = big }, "between 8 KiB and the first partition"},
		{"not U-Boot", func(in *SDCardInput) { in.UBoot = dtb }, "no default environment"},
		{"not ext4", func(in *SDCardInput) {}, "no ext4 file system"},
		{"empty data too small", func(in *SDCardInput) { in.DataDisk = ""; in.DataSize = 1 << 20 }, "at least 16 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := good
			tc.change(&in)
			_, err := WriteSDCard(context.Background(), filepath.Join(t.TempDir(), "card.img"), in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestUBootEnv checks the environment's CRC and changes without tools.
func TestUBootEnv(t *testing.T) {
	needUBoot(t, ubootCubieboard)
	ub, err := os.ReadFile(ubootCubieboard)
	if err != nil {
		t.Fatal(err)
	}
	env, err := ubootEnv(ub)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != ubootEnvSize {
		t.Fatalf("got %d bytes, want %d", len(env), ubootEnvSize)
	}
	if got, want := bin.LittleEndian.Uint32(env), crc32.ChecksumIEEE(env[4:]); got != want {
		t.Errorf("CRC: got %#x, want %#x", got, want)
	}
	vars := strings.Split(strings.TrimRight(string(env[4:]), "\x00"), "\x00")
	if vars[0] != "bootcmd=run distro_bootcmd" {
		t.Errorf("first variable: got %q, want bootcmd=run distro_bootcmd", vars[0])
	}
	has := map[string]bool{}
	for _, v := range vars {
		has[v] = true
	}
	for _, want := range []string{"bootdelay=0", "fdtfile=sun4i-a10-cubieboard.dtb", "boot_targets=fel mmc0", "scriptaddr=0x43100000"} {
		if !has[want] {
			t.Errorf("environment lacks %s", want)
		}
	}
}
