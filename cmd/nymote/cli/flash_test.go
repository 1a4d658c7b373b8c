package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/images"
)

// TestFlashCommand writes an SD card image onto a file with nymote flash
// (the refusals are tested in package flash).
func TestFlashCommand(t *testing.T) {
	const uboot = "/usr/lib/u-boot/Cubieboard/u-boot-sunxi-with-spl.bin"
	if _, err := os.Stat(uboot); err != nil {
		t.Skipf("%s missing: apt-get install u-boot-sunxi:armhf (make test-deps)", uboot)
	}
	dir := t.TempDir()
	for _, f := range []string{"zImage", "board.dtb", "initrd"} {
		os.WriteFile(filepath.Join(dir, f), []byte("stand-in for "+f), 0o644)
	}
	card := filepath.Join(dir, "sdcard.img")
	if _, err := images.WriteSDCard(context.Background(), card, images.SDCardInput{
		UBoot: uboot, Kernel: filepath.Join(dir, "zImage"), DTB: filepath.Join(dir, "board.dtb"),
		Initrd: filepath.Join(dir, "initrd"), DataSize: 16 << 20, BootSize: 8 << 20,
	}); err != nil {
		if strings.Contains(err.Error(), "mkfs.ext4 not found") {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	target := filepath.Join(dir, "copy.img")
	out := mustRun(t, "", "flash", card, target)
	if !strings.Contains(out, "verified 100%") || !strings.Contains(out, "fresh random seed") {
		t.Errorf("nymote flash: got\n%s", out)
	}
	// An existing file: asked, and "no" writes nothing.
	code, out, errs := run(t, "no\n", "flash", card, target)
	if code != 1 || !strings.Contains(out, "Write? [y/N]") || !strings.Contains(errs, "not confirmed") {
		t.Errorf("answering no: exit %d, %q, %q", code, out, errs)
	}
	mustRun(t, "", "flash", "--yes", card, target)
	if code, _, errs := run(t, "", "flash", card); code != 2 || !strings.Contains(errs, "IMAGE DEVICE") {
		t.Errorf("one argument: exit %d, %q", code, errs)
	}
	if code, _, errs := run(t, "", "flash", filepath.Join(dir, "initrd"), target); code != 1 || !strings.Contains(errs, "not an SD card image") {
		t.Errorf("a file that is no image: exit %d, %q", code, errs)
	}
}
