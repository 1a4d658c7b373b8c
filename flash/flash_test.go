package flash

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/internal/bootseed"
	"github.com/nymote/nymote/internal/fat"
)

// ubootCubieboard is Debian's U-Boot for the Cubieboard (package
// u-boot-sunxi:armhf).
const ubootCubieboard = "/usr/lib/u-boot/Cubieboard/u-boot-sunxi-with-spl.bin"

// fakeBootFiles writes stand-ins for a kernel, a device tree and an
// initramfs (flashing does not boot them).
func fakeBootFiles(t *testing.T) (kernel, dtb, initrd string) {
	t.Helper()
	dir := t.TempDir()
	kernel = filepath.Join(dir, "vmlinuz")
	dtb = filepath.Join(dir, "sun7i-a20-cubieboard2.dtb")
	initrd = filepath.Join(dir, "initrd.img")
	for _, f := range []struct {
		path string
		n    int
	}{{kernel, 1 << 20}, {dtb, 30 << 10}, {initrd, 1<<20 + 17}} {
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

// testCard writes a small SD card image (fake kernel, empty data
// partition) and returns its path and layout.
func testCard(t *testing.T) (string, images.SDCardLayout) {
	t.Helper()
	if _, err := os.Stat(ubootCubieboard); err != nil {
		t.Skipf("%s missing: dpkg --add-architecture armhf; apt-get install u-boot-sunxi:armhf (make test-deps)", ubootCubieboard)
	}
	if _, err := datadisk.LookTool("mkfs.ext4"); err != nil {
		t.Skip(err)
	}
	kernel, dtb, initrd := fakeBootFiles(t)
	card := filepath.Join(t.TempDir(), images.SDCardFile)
	l, err := images.WriteSDCard(context.Background(), card, images.SDCardInput{UBoot: ubootCubieboard, Kernel: kernel, DTB: dtb, Initrd: initrd, DataSize: 16 << 20, BootSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return card, l
}

// checkFlashed checks that target holds the image with the seed given.
func checkFlashed(t *testing.T, card, target string, l images.SDCardLayout, seed []byte) {
	t.Helper()
	want, err := os.ReadFile(card)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	at, _, err := fat.Locate(f, l.BootStart, bootseed.FileName)
	if err != nil {
		t.Fatal(err)
	}
	gotSeed, err := bootseed.Parse(got[at : at+bootseed.FileSize])
	if err != nil || !bytes.Equal(gotSeed, seed) {
		t.Errorf("seed on %s: got %x, %v; want %x", target, gotSeed, err, seed)
	}
	// Apart from the seed, the bytes are the image's.
	copy(got[at:at+bootseed.FileSize], want[at:at+bootseed.FileSize])
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the image", target)
	}
}

func TestFlashFile(t *testing.T) {
	card, l := testCard(t)
	seed := bytes.Repeat([]byte{0x5a}, bootseed.SeedBytes)
	target := filepath.Join(t.TempDir(), "card-copy.img")
	var out bytes.Buffer
	if err := Write(context.Background(), card, target, Options{Out: &out, Rand: bytes.NewReader(seed)}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	checkFlashed(t, card, target, l, seed)
	for _, want := range []string{"(a new file)", "written 100%", "verified 100%", "with a fresh random seed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// An existing file is overwritten only when confirmed.
	os.WriteFile(target, []byte("precious"), 0o644)
	err := Write(context.Background(), card, target, Options{In: strings.NewReader("n\n"), Rand: bytes.NewReader(seed)})
	if !errors.Is(err, ErrDeclined) {
		t.Errorf("answer n: got %v, want ErrDeclined", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Errorf("declined, the file changed all the same")
	}
	seed2 := bytes.Repeat([]byte{0xa5}, bootseed.SeedBytes)
	if err := Write(context.Background(), card, target, Options{In: strings.NewReader("y\n"), Rand: bytes.NewReader(seed2)}); err != nil {
		t.Fatal(err)
	}
	checkFlashed(t, card, target, l, seed2)
}

// systemDisk returns the disk holding / (such as /dev/vda), or skips.
func systemDisk(t *testing.T) string {
	t.Helper()
	ms, err := readMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.point == "/" {
			if ds := diskOf(m.dev); len(ds) > 0 {
				if _, err := os.Stat("/dev/" + ds[0]); err == nil {
					return "/dev/" + ds[0]
				}
			}
		}
	}
	t.Skip("/ is not on a block device here (a container's overlay?)")
	return ""
}

// TestFlashRefuses checks the refusals that need no root: a wrong image
// and the system disk (refused before anything is opened for writing; the
// answer "no" is a second guard).
func TestFlashRefuses(t *testing.T) {
	card, _ := testCard(t)
	notImage := filepath.Join(t.TempDir(), "data.img")
	os.WriteFile(notImage, bytes.Repeat([]byte{1}, 1<<20), 0o644)
	target := filepath.Join(t.TempDir(), "out.img")
	for _, tc := range []struct {
		name          string
		image, target string
		want          error
		wantText      string
	}{
		{"missing image", "/nonexistent/card.img", target, os.ErrNotExist, "/nonexistent/card.img"},
		{"not an SD image", notImage, target, ErrNotSDImage, "data.img"},
		{"image is a folder", t.TempDir(), target, ErrNotSDImage, "not a regular file"},
		{"onto itself", card, card, nil, "is the image itself"},
		{"target folder missing", card, "/nonexistent/dir/card.img", os.ErrNotExist, "/nonexistent/dir"},
		{"character device", card, "/dev/null", nil, "neither a disk nor a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(context.Background(), tc.image, tc.target, Options{In: strings.NewReader("no\n")})
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("got %v, want %v with %q", err, tc.want, tc.wantText)
			}
		})
	}
	t.Run("system disk", func(t *testing.T) {
		disk := systemDisk(t)
		for _, force := range []bool{false, true} {
			err := Write(context.Background(), card, disk, Options{Force: force, In: strings.NewReader("no\n")})
			if !errors.Is(err, ErrSystemDisk) {
				t.Errorf("%s (force %v): got %v, want ErrSystemDisk", disk, force, err)
			}
		}
	})
}

// loopDevice attaches a new file of size bytes (holding data at its start)
// to a loop device with partition scanning, or skips when not root.
func loopDevice(t *testing.T, data []byte, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed: apt-get install mount")
	}
	backing := filepath.Join(t.TempDir(), "backing.img")
	if err := os.WriteFile(backing, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", backing).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s (no loop devices here?)", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestFlashLoop writes a card image onto a loop device (root): refused
// while a partition is mounted, refused as not removable without --force,
// then written, verified and seeded; a loop device smaller than the image
// is refused.
func TestFlashLoop(t *testing.T) {
	card, l := testCard(t)
	img, err := os.ReadFile(card)
	if err != nil {
		t.Fatal(err)
	}
	seed := bytes.Repeat([]byte{0x42}, bootseed.SeedBytes)

	t.Run("too small", func(t *testing.T) {
		dev := loopDevice(t, nil, 8<<20)
		err := Write(context.Background(), card, dev, Options{Force: true, Yes: true})
		if !errors.Is(err, ErrTooSmall) {
			t.Errorf("got %v, want ErrTooSmall", err)
		}
	})

	dev := loopDevice(t, img, int64(len(img))+(4<<20))
	t.Run("mounted", func(t *testing.T) {
		part := dev + "p4" // the data partition (ext4)
		if _, err := os.Stat(part); err != nil {
			exec.Command("partx", "-a", dev).Run()
		}
		if _, err := os.Stat(part); err != nil {
			t.Skipf("%s did not appear (no partition scanning of loop devices here)", part)
		}
		mnt := t.TempDir()
		if out, err := exec.Command("mount", "-o", "ro", part, mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount %s: %v: %s", part, err, out)
		}
		defer exec.Command("umount", mnt).Run()
		err := Write(context.Background(), card, dev, Options{Force: true, Yes: true})
		if !errors.Is(err, ErrMounted) {
			t.Errorf("got %v, want ErrMounted", err)
		}
	})
	t.Run("not removable", func(t *testing.T) {
		err := Write(context.Background(), card, dev, Options{Yes: true})
		if !errors.Is(err, ErrNotRemovable) {
			t.Errorf("got %v, want ErrNotRemovable", err)
		}
	})
	t.Run("not confirmed", func(t *testing.T) {
		err := Write(context.Background(), card, dev, Options{Force: true, In: strings.NewReader("\n")})
		if !errors.Is(err, ErrDeclined) {
			t.Errorf("got %v, want ErrDeclined", err)
		}
	})
	var out bytes.Buffer
	if err := Write(context.Background(), card, dev, Options{Force: true, Yes: true, Out: &out, Rand: bytes.NewReader(seed)}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("nymote flash onto %s:\n%s", dev, out.String())
	if !strings.Contains(out.String(), "partitions "+filepath.Base(dev)+"p1") {
		t.Errorf("the output does not show the partitions that are overwritten:\n%s", out.String())
	}
	checkFlashed(t, card, dev, l, seed)
}
