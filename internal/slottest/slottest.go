// Package slottest makes, for tests of the launchers' boots from image
// slots (launch, jitsu, cmd/nymote/cli), signed image folders laid out as
// nymote build writes a Firecracker or Xen image, and hands them to the
// slots as a running appliance does; and it reads xl configurations with
// Xen's own parser (XLUCheck). It imports package update only.
package slottest

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nymote/nymote/update"
)

// Image writes a signed image folder in a new temporary folder: vmlinux
// ("vmlinux RELEASE") and initrd.cpio.zst ("initramfs RELEASE"),
// firecracker.json and xl.cfg naming them (data disk data.img, TAP device
// nymote0, bridge xenbr0, 128 and 256 MiB) with the command line
// "panic=-1 quiet nymote.release=RELEASE" (and nymote.crash=now for a
// broken image, whose service exits at start), and manifest.json (app
// hello, board firecracker-x86_64, the signer's key trusted, port hello
// 80) listing them, signed.
func Image(t testing.TB, release string, broken bool, s *update.Signer) string {
	t.Helper()
	dir := t.TempDir()
	cmdline := "panic=-1 quiet nymote.release=" + release
	if broken {
		cmdline += " nymote.crash=now"
	}
	files := map[string]string{
		"vmlinux":         "vmlinux " + release + "\n",
		"initrd.cpio.zst": "initramfs " + release + "\n",
		"firecracker.json": `{"boot-source": {"kernel_image_path": "vmlinux", "initrd_path": "initrd.cpio.zst", "boot_args": "` + cmdline + `"},
 "drives": [{"drive_id": "data", "path_on_host": "data.img", "is_root_device": false, "is_read_only": false}],
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "nymote0"}]}
`,
		"xl.cfg": "# the image's own\nname = \"nymote-hello\"\ntype = \"pvh\"\nkernel = \"vmlinux\"\nramdisk = \"initrd.cpio.zst\"\nextra = \"" + cmdline +
			"\"\nmemory = 256\nvcpus = 1\nvif = [ \"bridge=xenbr0\" ]\ndisk = [ \"format=raw, vdev=xvda, access=rw, target=data.img\" ]\non_reboot = \"restart\"\n",
	}
	type port struct {
		Name string
		Port int
	}
	m := struct {
		update.Manifest
		Cmdline string `json:"cmdline"`
		Ports   []port `json:"ports"`
	}{update.Manifest{App: "hello", AppVersion: release, Board: "firecracker-x86_64", TrustedKeys: []string{update.EncodeKey(s.Public())}},
		cmdline, []port{{"hello", 80}}}
	for _, n := range []string{"firecracker.json", "initrd.cpio.zst", "vmlinux", "xl.cfg"} {
		b := []byte(files[n])
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		m.Files = append(m.Files, update.File{Name: n, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, update.ManifestFile), mb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, update.SignatureFile), s.SignManifest(mb), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Signer creates a signing key in a temporary folder and loads it.
func Signer(t testing.TB) *update.Signer {
	t.Helper()
	key := filepath.Join(t.TempDir(), "k")
	if _, err := update.CreateKey(key); err != nil {
		t.Fatal(err)
	}
	s, err := update.LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Receive does what a running host-booted appliance does with an update
// sent to it: the image's bundle verified against the keys the committed
// image trusts (update.ReadBundle), then handed to its sink, the update
// disk beside the slots (update.WriteUpdateDisk), which the launcher picks
// up at the next boot.
func Receive(t testing.TB, s *update.Slots, image string) {
	t.Helper()
	var buf bytes.Buffer
	if err := update.WriteBundle(&buf, image); err != nil {
		t.Fatal(err)
	}
	trusted, err := s.Trusted()
	if err != nil {
		t.Fatal(err)
	}
	im, err := update.ReadBundle(&buf, trusted, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := update.WriteUpdateDisk(s.UpdateDisk(), im); err != nil {
		t.Fatal(err)
	}
}

//go:embed xlucheck.c.txt
var xlucheck []byte

// XLUCheck builds xlucheck.c.txt, a C program, (with gcc, against Xen's
// libxlutil and libxenlight from Debian's libxen-dev) and returns a
// function that reads an xl configuration file with it, as xl create
// does: its output lists kernel, ramdisk, extra, on_reboot and each disk
// as Xen parses it ("disk VDEV TARGET FORMAT rw|ro"); an error means xl
// would refuse the file. Without gcc or libxen-dev it returns nil and
// why (xl itself does not run without Xen).
func XLUCheck(t testing.TB) (check func(config string) (string, error), why string) {
	t.Helper()
	if _, err := os.Stat("/usr/include/libxlutil.h"); err != nil {
		return nil, "no libxlutil.h: apt-get install libxen-dev"
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return nil, "no gcc"
	}
	tmp := t.TempDir()
	src, bin := filepath.Join(tmp, "xlucheck.c"), filepath.Join(tmp, "xlucheck")
	if err := os.WriteFile(src, xlucheck, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-o", bin, src, "-lxlutil", "-lxenlight").CombinedOutput(); err != nil {
		t.Fatalf("building xlucheck: %v\n%s", err, out)
	}
	return func(config string) (string, error) {
		out, err := exec.Command(bin, config).CombinedOutput()
		return string(out), err
	}, ""
}
