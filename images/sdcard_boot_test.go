package images

import (
	"bytes"
	"context"
	endian "encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/boards"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/flash"
	"github.com/nymote/nymote/internal/bootseed"
	"github.com/nymote/nymote/internal/fat"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/store"
)

// sdPartitions reads the start and size, in bytes, of the boot partition
// (1) and the data partition (4) of an SD card image.
func sdPartitions(t *testing.T, image string) (boot, data [2]int64) {
	t.Helper()
	f, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	part := func(i int) [2]int64 {
		e := mbr[446+16*i:]
		return [2]int64{int64(endian.LittleEndian.Uint32(e[8:])) * 512, int64(endian.LittleEndian.Uint32(e[12:])) * 512}
	}
	return part(0), part(3)
}

// TestSDCardBootCubieboard boots the mail appliance from the SD card image
// that nymote build writes for the cubieboard, under qemu-system-arm 10 on
// -M cubieboard: the A10's boot ROM loads U-Boot's SPL from the card,
// U-Boot reads uboot.env and boot.scr from the boot partition and hands the
// card's random seed to the kernel, which boots the appliance from the
// initramfs; the appliance mounts the card's data partition, answers a real
// IMAP client over a forwarded port and replaces the seed on the card. The
// power is then cut (the board has no power button); the data partition's
// store passes git fsck after the journal is replayed.
func TestSDCardBootCubieboard(t *testing.T) {
	if testing.Short() {
		t.Skip("booting under QEMU in -short mode")
	}
	needMailAppliance(t)
	ctx := context.Background()
	q, err := launch.FindSDQEMU(ctx)
	if err != nil {
		t.Skip(err)
	}
	needUBoot(t, ubootCubieboard)
	needTool(t, "mkfs.ext4", "e2fsprogs")
	needTool(t, "python3", "python3")
	dir := t.TempDir()

	disk := aliceDisk(t, 64<<20)
	if _, err := Build(ctx, Options{App: "mail", Board: "cubieboard", OutDir: dir, SourceDir: sourceRoot,
		Outputs: []boards.Output{boards.OutputSDCard}, SDData: disk}); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(dir, SDCardFile)
	bootPart, dataPart := sdPartitions(t, image)
	// Flashed onto a file, as onto a card: with a seed.
	card := filepath.Join(dir, "card.img")
	seed := bytes.Repeat([]byte{0x17}, bootseed.SeedBytes)
	if err := flash.Write(ctx, image, card, flash.Options{Rand: bytes.NewReader(seed)}); err != nil {
		t.Fatal(err)
	}
	if err := launch.PowerOfTwo(card); err != nil {
		t.Fatal(err)
	}

	addr := testutil.FreeAddr(t)
	vm, err := launch.StartSDCard(q, launch.SDRun{Card: card, Forwards: []launch.Forward{{Host: addr, Guest: 993}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, vm)
	wctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	if _, err := vm.WaitLine(wctx, "nymote: mail imaps listening on"); err != nil {
		t.Fatal(err)
	}
	if out, err := imapSession(addr, true, "from an SD card"); err != nil {
		t.Fatalf("IMAP: %v\n%s", err, out)
	}
	if _, err := vm.WaitLine(wctx, "replaced for the next boot"); err != nil {
		t.Error(err)
	}
	console := vm.Console()
	for _, want := range []string{"Loading Environment from FAT... OK", "nymote: booting slot a (partition 2)", "nymote: random seed handed to the kernel", "Starting kernel", "booted from slot a (committed)"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	for _, bad := range []string{"Hit any key to stop autoboot:  2", "starting USB", "waiting for the kernel's entropy pool"} {
		if strings.Contains(console, bad) {
			t.Errorf("console has %q", bad)
		}
	}
	timeline(t, vm, "U-Boot SPL", "Starting kernel", "init started", "listening on")
	if l, err := vm.WaitLine(ctx, " ready at "); err == nil {
		t.Logf("%s", l.Text)
	}
	t.Logf("U-Boot (SPL start to kernel start): %s", vm.UBootTime().Round(time.Millisecond))
	vm.Kill()

	// The appliance replaced the seed it booted with.
	f, err := os.Open(card)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	at, _, err := fat.Locate(f, bootPart[0], bootseed.FileName)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, bootseed.FileSize)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	if got, err := bootseed.Parse(b); err != nil || got == nil || bytes.Equal(got, seed) {
		t.Errorf("seed on the card after the boot: got %x, %v; want a fresh one", got, err)
	}

	// The data partition, as a disk of its own: the journal replayed (the
	// power was cut), then the store checked by git.
	part := filepath.Join(t.TempDir(), "data.img")
	pf, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(pf, io.NewSectionReader(f, dataPart[0], dataPart[1])); err != nil {
		t.Fatal(err)
	}
	pf.Close()
	e2fsck, err := datadisk.LookTool("e2fsck")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(e2fsck, "-fy", part).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck after the power cut: %v\n%s", err, out)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := datadisk.Export(ctx, part, out); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("git", "--git-dir", filepath.Join(out, store.RepoDir), "fsck", "--strict").CombinedOutput(); err != nil {
		t.Errorf("git fsck on the card's store: %v\n%s", err, b)
	}
}
