package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/internal/bootseed"
	"github.com/nymote/nymote/internal/fat"
	"github.com/nymote/nymote/kernel"
)

// armmpKernel fetches Debian's armmp kernel package (what
// linux-image-armmp:armhf depends on) with apt-get download and unpacks it
// into a cache folder, once; it returns the unpacked root and the kernel
// release. It skips when the package cannot be downloaded.
//
// Until package kernel has a Debian armmp source, the SD boot test fetches
// the kernel itself.
func armmpKernel(t *testing.T) (root, release string) {
	t.Helper()
	out, err := exec.Command("apt-cache", "depends", "linux-image-armmp:armhf").Output()
	if err != nil {
		t.Skipf("apt-cache depends linux-image-armmp:armhf: %v (dpkg --add-architecture armhf; apt-get update)", err)
	}
	pkg := ""
	for _, l := range strings.Split(string(out), "\n") {
		if d, ok := strings.CutPrefix(strings.TrimSpace(l), "Depends: "); ok && strings.HasPrefix(d, "linux-image-") {
			pkg = d
			break
		}
	}
	release = strings.TrimSuffix(strings.TrimPrefix(pkg, "linux-image-"), ":armhf")
	if pkg == "" || release == "" {
		t.Fatalf("linux-image-armmp:armhf depends on no kernel package:\n%s", out)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	root = filepath.Join(cache, "nymote-test", "linux-image-"+release)
	if _, err := os.Stat(filepath.Join(root, "boot", "vmlinuz-"+release)); err == nil {
		return root, release
	}
	tmp := t.TempDir()
	os.Chmod(tmp, 0o755) // apt-get downloads as _apt when it can
	cmd := exec.Command("apt-get", "download", "-q", pkg)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("apt-get download %s: %v\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download %s: got %v", pkg, debs)
	}
	os.RemoveAll(root + ".new")
	if err := os.MkdirAll(root+".new", 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root+".new").CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	if err := os.Rename(root+".new", root); err != nil {
		t.Fatal(err)
	}
	return root, release
}

// cubieboardModules are the A10's modules for the appliance: the SD card
// (to refresh the random seed) and the EMAC, in the order the EMAC needs.
var cubieboardModules = []string{"sunxi-mmc", "libphy", "fwnode_mdio", "fixed_phy", "of_mdio", "mdio-sun4i", "sun4i-emac"}

// TestSDCardBootCubieboard boots the hello appliance from an SD card image
// under qemu-system-arm 10 on -M cubieboard: the A10's boot ROM loads
// U-Boot's SPL from the card, U-Boot reads uboot.env and boot.scr from the
// boot partition and hands the card's random seed to the kernel, which
// boots the appliance; the appliance answers over a forwarded port and
// replaces the seed on the card.
func TestSDCardBootCubieboard(t *testing.T) {
	if testing.Short() {
		t.Skip("booting under QEMU in -short mode")
	}
	ctx := context.Background()
	q, err := FindSDQEMU(ctx)
	if err != nil {
		t.Skip(err)
	}
	needUBoot(t, ubootCubieboard)
	needTool(t, "mkfs.ext4", "e2fsprogs")
	root, release := armmpKernel(t)
	dir := t.TempDir()

	// The initramfs, by the image pipeline's own phases, for a stand-in
	// of the cubieboard board.
	app, err := LookupApp("hello")
	if err != nil {
		t.Fatal(err)
	}
	board := boards.Board{Name: "cubieboard-sd-test", GOARCH: "arm", GOARM: "7", Console: "ttyS0", Modules: cubieboardModules}
	p := &plan{opts: Options{App: app.Name, Board: board.Name, OutDir: dir, Ephemeral: true}, app: app, board: board, sourceDir: sourceRoot, goCmd: "go"}
	bin, err := compile(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	k := &kernel.Kernel{Source: kernel.Source{Name: "debian-armmp", GOARCH: "arm", Release: release}, Dir: root}
	rd, err := initramfs(ctx, p, k, bin)
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, InitrdFile)
	if err := os.WriteFile(initrd, rd.compressed, 0o644); err != nil {
		t.Fatal(err)
	}

	image := filepath.Join(dir, SDCardFile)
	l, err := WriteSDCard(ctx, image, SDCardInput{
		UBoot:   ubootCubieboard,
		Kernel:  filepath.Join(root, "boot", "vmlinuz-"+release),
		DTB:     filepath.Join(root, "usr", "lib", "linux-image-"+release, "sun4i-a10-cubieboard.dtb"),
		Initrd:  initrd,
		Cmdline: "console=ttyS0,115200 panic=-1 quiet nymote.ephemeral=1 nymote.net=kernel nymote.oncrash=poweroff",
		// The data partition is not used by an ephemeral appliance.
		DataSize: 16 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Flashed onto a file, as onto a card: with a seed.
	card := filepath.Join(dir, "card.img")
	seed := bytes.Repeat([]byte{0x17}, bootseed.SeedBytes)
	if err := Flash(ctx, image, card, FlashOptions{Rand: bytes.NewReader(seed)}); err != nil {
		t.Fatal(err)
	}
	if err := PowerOfTwo(card); err != nil {
		t.Fatal(err)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	vm, err := StartSDCard(q, SDRun{Card: card, Forwards: []Forward{{Host: addr, Guest: 7}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vm.Kill()
		if t.Failed() {
			t.Logf("console:\n%s", vm.Console())
		}
	})
	wctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	if _, err := vm.WaitLine(wctx, "nymote: hello hello listening on"); err != nil {
		t.Fatal(err)
	}
	if got, want := greet(t, addr), "hello from nymote (boot 1)"; got != want {
		t.Errorf("got greeting %q, want %q", got, want)
	}
	if _, err := vm.WaitLine(wctx, "replaced for the next boot"); err != nil {
		t.Error(err)
	}
	console := vm.Console()
	for _, want := range []string{"Loading Environment from FAT... OK", "nymote: random seed handed to the kernel", "Starting kernel"} {
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
	var spl, kern time.Duration
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "U-Boot SPL") && spl == 0 {
			spl = l.At
		}
		if strings.Contains(l.Text, "Starting kernel") {
			kern = l.At
		}
	}
	t.Logf("U-Boot (SPL start to kernel start): %s", (kern - spl).Round(time.Millisecond))
	vm.Kill()

	// The appliance replaced the seed it booted with.
	f, err := os.Open(card)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	at, _, err := fat.Locate(f, l.BootStart, bootseed.FileName)
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
}
