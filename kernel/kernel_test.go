package kernel

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

func TestLookup(t *testing.T) {
	for _, name := range []string{"gokrazy-amd64", "gokrazy-arm64"} {
		s, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Name != name || s.Module == "" || s.Version == "" || !strings.HasPrefix(s.Sum, "h1:") || len(s.ImageSHA256) != 64 {
			t.Errorf("%s: incomplete pin: %+v", name, s)
		}
	}
	if _, err := Lookup("nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("got %v, want ErrUnknown", err)
	}
}

// TestFetchFails checks that a download that cannot happen says so.
func TestFetchFails(t *testing.T) {
	src, _ := Lookup("gokrazy-amd64")
	_, err := Fetch(context.Background(), src, FetchOptions{Env: []string{"GOPROXY=off", "GOMODCACHE=" + t.TempDir()}})
	if err == nil {
		t.Fatal("Fetch with GOPROXY=off and an empty module cache succeeded")
	}
	for _, want := range []string{"downloading " + src.Module, "GOPROXY"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	src.Sum = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	if k, err := Fetch(context.Background(), src, FetchOptions{Env: []string{"GOFLAGS=-mod=mod"}}); err == nil {
		t.Fatalf("Fetch with a wrong pinned sum returned %s", k.Dir)
	} else if !errors.Is(err, ErrMismatch) && !strings.Contains(err.Error(), "downloading") {
		t.Errorf("got %v, want ErrMismatch", err)
	}
}

// fetch returns a pinned kernel, skipping in -short mode (it may download).
func fetch(t *testing.T, name string) *Kernel {
	t.Helper()
	if testing.Short() {
		t.Skip("fetching kernels in -short mode")
	}
	src, _ := Lookup(name)
	var progress bytes.Buffer
	k, err := Fetch(context.Background(), src, FetchOptions{Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "ready") {
		t.Errorf("progress %q: want a ready line", progress.String())
	}
	return k
}

// TestKernelConfig checks, in the pinned kernels' own configuration, what
// the appliance runtime relies on being built in.
func TestKernelConfig(t *testing.T) {
	need := []string{
		"CONFIG_DEVTMPFS", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_NET", "CONFIG_VIRTIO_PCI",
		"CONFIG_HW_RANDOM_VIRTIO", "CONFIG_EXT4_FS", "CONFIG_PACKET", "CONFIG_INPUT_EVDEV",
		"CONFIG_RD_ZSTD", "CONFIG_BLK_DEV_INITRD",
	}
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"gokrazy-amd64", []string{"CONFIG_ACPI_BUTTON", "CONFIG_RTC_DRV_CMOS", "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_VIRTIO_MMIO"}},
		{"gokrazy-arm64", []string{"CONFIG_KEYBOARD_GPIO", "CONFIG_GPIO_PL061", "CONFIG_RTC_DRV_PL031", "CONFIG_SERIAL_AMBA_PL011_CONSOLE", "CONFIG_PCI_HOST_GENERIC"}},
		// Our own: also what Firecracker and QEMU's microvm need (virtio
		// devices on the command line or in ACPI, the PVH entry), and
		// the flock the store takes.
		{"nymote-amd64", []string{"CONFIG_ACPI_BUTTON", "CONFIG_RTC_DRV_CMOS", "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_VIRTIO_MMIO",
			"CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES", "CONFIG_PVH", "CONFIG_FILE_LOCKING"}},
		{"nymote-arm64", []string{"CONFIG_KEYBOARD_GPIO", "CONFIG_GPIO_PL061", "CONFIG_RTC_DRV_PL031", "CONFIG_SERIAL_AMBA_PL011_CONSOLE",
			"CONFIG_PCI_HOST_GENERIC", "CONFIG_FILE_LOCKING"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if src, _ := Lookup(tc.name); src.Kind == Build {
				needBuildTools(t, src.GOARCH)
			}
			k := fetch(t, tc.name)
			img, err := os.ReadFile(k.ImagePath())
			if err != nil {
				t.Fatal(err)
			}
			if k.ImageFormat == BzImage {
				img, err = Vmlinux(img)
				if err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := Config(img)
			if err != nil {
				t.Fatal(err)
			}
			for _, opt := range append(need, tc.extra...) {
				if cfg[opt] != "y" {
					t.Errorf("%s=%q, want y (built in)", opt, cfg[opt])
				}
			}
			if k.Kind == Build {
				// No modules; the build's config file is the one inside.
				if cfg["CONFIG_MODULES"] != "" {
					t.Errorf("CONFIG_MODULES=%q, want none", cfg["CONFIG_MODULES"])
				}
				b, err := os.ReadFile(k.ConfigFile())
				if err != nil || !bytes.Contains(b, []byte("\nCONFIG_VIRTIO_MMIO=y\n")) {
					t.Errorf("config file %s: %v", k.ConfigFile(), err)
				}
				if !strings.HasPrefix(k.Release, "6.1.") {
					t.Errorf("release %q, want 6.1.*", k.Release)
				}
			} else if _, err := os.Stat(k.ModulesDir()); err != nil {
				t.Errorf("modules folder: %v", err)
			}
		})
	}
}

func TestVmlinuxRejects(t *testing.T) {
	if _, err := Vmlinux(make([]byte, 4096)); err == nil {
		t.Error("Vmlinux accepted zeros")
	}
	if _, err := Config([]byte("no config here")); err == nil {
		t.Error("Config accepted a kernel without IKCONFIG")
	}
}

// writeKO writes a minimal ELF64 file whose only section is .modinfo.
func writeKO(t *testing.T, path string, modinfo string) {
	t.Helper()
	shstr := "\x00.modinfo\x00.shstrtab\x00"
	var b bytes.Buffer
	le := binary.LittleEndian
	hdr := make([]byte, 64)
	copy(hdr, "\x7fELF\x02\x01\x01")
	le.PutUint16(hdr[16:], 1)  // ET_REL
	le.PutUint16(hdr[18:], 62) // x86-64
	le.PutUint32(hdr[20:], 1)
	dataOff := 64
	strOff := dataOff + len(modinfo)
	shOff := strOff + len(shstr)
	le.PutUint64(hdr[40:], uint64(shOff))
	le.PutUint16(hdr[52:], 64)
	le.PutUint16(hdr[58:], 64)
	le.PutUint16(hdr[60:], 3)
	le.PutUint16(hdr[62:], 2)
	b.Write(hdr)
	b.WriteString(modinfo)
	b.WriteString(shstr)
	sh := func(name, typ uint32, off, size int) {
		s := make([]byte, 64)
		le.PutUint32(s[0:], name)
		le.PutUint32(s[4:], typ)
		le.PutUint64(s[24:], uint64(off))
		le.PutUint64(s[32:], uint64(size))
		le.PutUint64(s[48:], 1)
		b.Write(s)
	}
	sh(0, 0, 0, 0)
	sh(1, 1, dataOff, len(modinfo))
	sh(10, 3, strOff, len(shstr))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResolveModules(t *testing.T) {
	dir := t.TempDir()
	writeKO(t, filepath.Join(dir, "kernel/net/virtio_net.ko"), "license=GPL\x00depends=net_failover,virtio_ring\x00name=virtio_net\x00")
	writeKO(t, filepath.Join(dir, "kernel/net/net_failover.ko"), "depends=failover\x00")
	writeKO(t, filepath.Join(dir, "kernel/net/failover.ko"), "depends=\x00")
	writeKO(t, filepath.Join(dir, "kernel/a/loop-a.ko"), "depends=loop_b\x00")
	writeKO(t, filepath.Join(dir, "kernel/a/loop-b.ko"), "depends=loop_a\x00")
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/virtio/virtio_ring.ko\n"), 0o644)

	tests := []struct {
		name    string
		mods    []string
		want    []string
		wantErr string
	}{
		{"none", nil, nil, ""},
		{"deps first", []string{"virtio-net"}, []string{"failover", "net_failover", "virtio_net"}, ""},
		{"builtin", []string{"virtio_ring"}, nil, ""},
		{"twice", []string{"failover", "virtio_net"}, []string{"failover", "net_failover", "virtio_net"}, ""},
		{"missing", []string{"e1000"}, nil, "not found"},
		{"cycle", []string{"loop_a"}, nil, "cycle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mods, err := ResolveModules(dir, tc.mods)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range mods {
				got = append(got, m.Name)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	mods, _ := ResolveModules(dir, []string{"virtio_net"})
	dep := string(ModulesDep(mods))
	if want := "kernel/net/virtio_net.ko: kernel/net/net_failover.ko\n"; !strings.Contains(dep, want) {
		t.Errorf("modules.dep %q: want the line %q", dep, want)
	}
}

// needApt skips unless apt knows the Debian kernel source src.
func needApt(t *testing.T, src Source) {
	t.Helper()
	if testing.Short() {
		t.Skip("fetching kernels in -short mode")
	}
	if _, err := aptShow(context.Background(), FetchOptions{}, src.Series+":"+src.DebArch); err != nil {
		t.Skipf("apt does not know %s (not a Debian machine, or armhf not added: make test-deps): %v", src.Series, err)
	}
}

// TestDebianFetch fetches the pinned Debian kernels and checks, in their
// configuration, what the boards rely on.
func TestDebianFetch(t *testing.T) {
	for _, tc := range []struct {
		name string
		want map[string]string
	}{
		{"debian-armmp", map[string]string{"CONFIG_RD_ZSTD": "y", "CONFIG_PACKET": "y", "CONFIG_RANDOM_TRUST_BOOTLOADER": "y",
			"CONFIG_SERIAL_8250_DW": "y", "CONFIG_SERIAL_AMBA_PL011_CONSOLE": "y", "CONFIG_MMC_BLOCK": "y", "CONFIG_PCI_HOST_GENERIC": "y"}},
		{"debian-cloud-amd64", map[string]string{"CONFIG_RD_ZSTD": "y", "CONFIG_PACKET": "y", "CONFIG_XEN_PVH": "y", "CONFIG_PVH": "y",
			"CONFIG_HVC_XEN": "y", "CONFIG_EXT4_FS": "y", "CONFIG_XEN_NETDEV_FRONTEND": "m", "CONFIG_XEN_BLKDEV_FRONTEND": "m"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, _ := Lookup(tc.name)
			needApt(t, src)
			var progress bytes.Buffer
			k, err := Fetch(context.Background(), src, FetchOptions{Progress: &progress})
			if err != nil {
				t.Fatal(err)
			}
			if !k.Pinned || k.Package != src.Package || k.PackageSHA256 != src.PackageSHA256 {
				t.Errorf("got %s %s pinned=%v, want the pin %s", k.Package, k.Version, k.Pinned, src.Package)
			}
			if !strings.Contains(progress.String(), "ready") {
				t.Errorf("progress %q: want a ready line", progress.String())
			}
			b, err := os.ReadFile(k.ConfigFile())
			if err != nil {
				t.Fatal(err)
			}
			for opt, v := range tc.want {
				if !strings.Contains(string(b), "\n"+opt+"="+v+"\n") {
					t.Errorf("%s: want %s=%s", k.ConfigFile(), opt, v)
				}
			}
			if _, err := os.Stat(k.ModulesDir()); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestDebianPinGone: when the pinned version has left the archive, Fetch
// takes the series' current package (not pinned) or, when strict,
// refuses; a wrong pinned sha256 is refused before any download.
func TestDebianPinGone(t *testing.T) {
	src, _ := Lookup("debian-armmp")
	needApt(t, src)
	ctx := context.Background()
	gone := src
	gone.Package, gone.Version = "linux-image-6.1.0-1-armmp", "6.1.0-1"
	if _, err := Fetch(ctx, gone, FetchOptions{Strict: true}); err == nil || !strings.Contains(err.Error(), "no longer in the archive") {
		t.Errorf("strict: got %v, want a refusal", err)
	}
	var progress bytes.Buffer
	k, err := Fetch(ctx, gone, FetchOptions{Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if k.Pinned || k.Package == gone.Package || len(k.PackageSHA256) != 64 || !strings.HasPrefix(k.Release, "6.1.") {
		t.Errorf("fallback: got %s %s %s pinned=%v", k.Package, k.Version, k.Release, k.Pinned)
	}
	if !strings.Contains(progress.String(), "no longer in the archive") {
		t.Errorf("progress %q does not say the pin is gone", progress.String())
	}
	if _, err := os.Stat(k.ImagePath()); err != nil {
		t.Error(err)
	}
	bad := src
	bad.PackageSHA256 = strings.Repeat("0", 64)
	if _, err := Fetch(ctx, bad, FetchOptions{CacheDir: t.TempDir()}); !errors.Is(err, ErrMismatch) {
		t.Errorf("wrong sha256: got %v, want ErrMismatch", err)
	}
}

func TestSeriesPackage(t *testing.T) {
	src, _ := Lookup("debian-armmp")
	for _, tc := range []struct{ depends, want, wantErr string }{
		{"linux-image-6.1.0-51-armmp (= 6.1.180-1)", "linux-image-6.1.0-51-armmp:armhf=6.1.180-1", ""},
		{"linux-image-6.12.9-armmp (= 6.12.9-1)", "", "another upstream series"},
		{"kmod", "", "depends on no linux-image"},
	} {
		got, err := seriesPackage(debInfo{Depends: tc.depends}, src)
		if got != tc.want || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%q: got %q, %v; want %q, %q", tc.depends, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestUnpackDeb unpacks a package made here: an ar archive with a
// data.tar.xz holding a kernel, a compressed module and files to skip.
func TestUnpackDeb(t *testing.T) {
	var ko bytes.Buffer
	xw, _ := xz.NewWriter(&ko)
	xw.Write([]byte("module bytes"))
	xw.Close()
	var data bytes.Buffer
	xw, _ = xz.NewWriter(&data)
	tw := tar.NewWriter(xw)
	for _, f := range []struct{ name, body string }{
		{"./boot/vmlinuz-6.1.0-9-test", "kernel"},
		{"./lib/modules/6.1.0-9-test/kernel/a.ko.xz", ko.String()},
		{"./usr/share/doc/x", "skipped"},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	xw.Close()
	var deb bytes.Buffer
	deb.WriteString("!<arch>\n")
	member := func(name string, b []byte) {
		fmt.Fprintf(&deb, "%-16s%-12s%-6s%-6s%-8s%-10d`\n", name, "0", "0", "0", "100644", len(b))
		deb.Write(b)
		if len(b)%2 == 1 {
			deb.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar.xz", []byte("x"))
	member("data.tar.xz", data.Bytes())
	path := filepath.Join(t.TempDir(), "k.deb")
	os.WriteFile(path, deb.Bytes(), 0o644)
	dir := t.TempDir()
	if err := unpackDeb(path, dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"boot/vmlinuz-6.1.0-9-test": "kernel", "lib/modules/6.1.0-9-test/kernel/a.ko": "module bytes"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s: got %q, %v; want %q", name, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/share/doc/x")); err == nil {
		t.Error("unpacked a file outside the kernel's parts")
	}
	os.WriteFile(path, []byte("not a deb"), 0o644)
	if err := unpackDeb(path, t.TempDir()); err == nil {
		t.Error("unpacked a file that is not a .deb")
	}
}

// TestVmlinuxLZ4 extracts the vmlinux ELF from Debian's cloud kernel (an
// LZ4-compressed bzImage) and finds its PVH entry note.
func TestVmlinuxLZ4(t *testing.T) {
	src, _ := Lookup("debian-cloud-amd64")
	needApt(t, src)
	k, err := Fetch(context.Background(), src, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bz, err := os.ReadFile(k.ImagePath())
	if err != nil {
		t.Fatal(err)
	}
	v, err := Vmlinux(bz)
	if err != nil {
		t.Fatal(err)
	}
	if entry, err := PVHEntry(v); err != nil || entry == 0 {
		t.Errorf("PVH entry: %#x, %v", entry, err)
	}
	if _, err := PVHEntry(bz); err == nil {
		t.Error("PVHEntry accepted a bzImage")
	}
}
