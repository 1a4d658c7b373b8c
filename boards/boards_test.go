package boards_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/kernel"
)

// TestTableInvariants checks what every board entry must satisfy.
func TestTableInvariants(t *testing.T) {
	consoles := map[string][]string{"amd64": {"ttyS0", "hvc0"}, "arm64": {"ttyAMA0"}, "arm": {"ttyAMA0", "ttyS0"}}
	qemuBinary := map[string]string{"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64", "arm": "qemu-system-arm"}
	known := map[boards.Output]bool{boards.OutputQEMU: true, boards.OutputFirecracker: true, boards.OutputSDCard: true, boards.OutputXen: true}
	names := boards.Names()
	if len(names) < 3 {
		t.Fatalf("got %d boards, want at least 3", len(names))
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			b, err := boards.Get(name)
			if err != nil {
				t.Fatal(err)
			}
			if b.Name != name {
				t.Errorf("entry %q has Name %q", name, b.Name)
			}
			if b.Description == "" {
				t.Error("no Description")
			}
			cs, ok := consoles[b.GOARCH]
			if !ok {
				t.Fatalf("GOARCH %q: want amd64, arm64 or arm", b.GOARCH)
			}
			if (b.GOARCH == "arm") != (b.GOARM != "") {
				t.Errorf("GOARM %q with GOARCH %q: GOARM is for (only) arm", b.GOARM, b.GOARCH)
			}
			if b.GOARCH == "arm" && b.GOARM != "7" {
				t.Errorf("GOARM %q: the armmp kernel is ARMv7, want 7", b.GOARM)
			}
			if b.DeviceTree != "" && (!strings.HasSuffix(b.DeviceTree, ".dtb") || strings.Contains(b.DeviceTree, "/")) {
				t.Errorf("DeviceTree %q: want a .dtb file name", b.DeviceTree)
			}
			if !contains(cs, b.Console) {
				t.Errorf("Console %q: want one of %v for %s", b.Console, cs, b.GOARCH)
			}
			if (b.Console == "hvc0") != contains(b.Outputs, boards.OutputXen) {
				t.Errorf("Console %q with outputs %v: Xen's console hvc0 is for (only) Xen boards", b.Console, b.Outputs)
			}
			src, err := kernel.Lookup(b.Kernel)
			if err != nil {
				t.Errorf("Kernel: %v", err)
			} else if src.GOARCH != b.GOARCH {
				t.Errorf("kernel %s is for %s, board is %s", b.Kernel, src.GOARCH, b.GOARCH)
			} else if src.Kind == kernel.Build && len(b.Modules) > 0 {
				t.Errorf("Modules %v: kernel %s is built without modules (CONFIG_MODULES=n)", b.Modules, b.Kernel)
			}
			for _, a := range b.Cmdline {
				if strings.HasPrefix(a, "console=") || strings.HasPrefix(a, "nymote.") || strings.HasPrefix(a, "init=") {
					t.Errorf("Cmdline has %q: console=, init= and nymote.* are added by the image build", a)
				}
			}
			if !strings.HasPrefix(b.DataDevice, "/dev/") {
				t.Errorf("DataDevice %q: want a /dev/ path", b.DataDevice)
			}
			if b.NIC == "" {
				t.Error("no NIC")
			}
			if len(b.Outputs) == 0 {
				t.Error("no Outputs")
			}
			if b.CodeDisk {
				if b.QEMU == nil || b.QEMU.Disk == "" || b.QEMU.DiskInterface != "" {
					t.Error("CodeDisk: the code disk is a second virtio disk that QEMU attaches; the board has none")
				}
				if len(b.Modules) > 0 {
					t.Errorf("CodeDisk with Modules %v: the stub that mounts the code disk loads no modules", b.Modules)
				}
				if len(b.Outputs) != 1 || b.Outputs[0] != boards.OutputQEMU {
					t.Errorf("CodeDisk with outputs %v: only QEMU's launch attaches a code disk so far", b.Outputs)
				}
			}
			seen := map[boards.Output]bool{}
			for _, o := range b.Outputs {
				if !known[o] {
					t.Errorf("unknown output %q", o)
				}
				if seen[o] {
					t.Errorf("output %q listed twice", o)
				}
				seen[o] = true
			}
			if seen[boards.OutputQEMU] && b.QEMU == nil {
				t.Error("qemu output without QEMU settings")
			}
			if b.QEMU != nil && !seen[boards.OutputQEMU] && !(seen[boards.OutputXen] && b.QEMU.Kernel == "vmlinux") {
				t.Error("QEMU settings without a qemu output (or a xen output booted through the PVH entry)")
			}
			if seen[boards.OutputSDCard] {
				if b.DeviceTree == "" || !strings.HasPrefix(b.UBoot, "/usr/lib/u-boot/") || !strings.HasSuffix(b.UBoot, "u-boot-sunxi-with-spl.bin") {
					t.Errorf("sdcard output with DeviceTree %q and UBoot %q: want a device tree and a u-boot-sunxi image", b.DeviceTree, b.UBoot)
				}
			} else if b.UBoot != "" {
				t.Errorf("UBoot %q without an sdcard output", b.UBoot)
			}
			if q := b.QEMU; q != nil {
				if q.Binary != qemuBinary[b.GOARCH] {
					t.Errorf("QEMU binary %q, want %q for %s", q.Binary, qemuBinary[b.GOARCH], b.GOARCH)
				}
				if q.Machine == "" || (q.Disk == "") == (q.DiskInterface == "") {
					t.Errorf("QEMU settings incomplete: want a machine and one of Disk and DiskInterface: %+v", *q)
				}
				if q.RNG == "" && b.DeviceTree == "" {
					t.Error("QEMU without an RNG and without a device tree to carry a seed: the appliance would wait for entropy")
				}
				if q.Kernel != "" && q.Kernel != "vmlinux" {
					t.Errorf("QEMU Kernel %q: want \"\" or vmlinux", q.Kernel)
				}
				if q.MinMemoryMiB < 32 || q.MinMemoryMiB > 1024 {
					t.Errorf("MinMemoryMiB %d: want 32..1024", q.MinMemoryMiB)
				}
			}
		})
	}
}

func TestGetIsACopy(t *testing.T) {
	b, _ := boards.Get("qemu-x86_64")
	b.Cmdline[0] = "changed"
	b.QEMU.Machine = "changed"
	again, _ := boards.Get("qemu-x86_64")
	if again.Cmdline[0] == "changed" || again.QEMU.Machine == "changed" {
		t.Error("Get returned the table's own slices or QEMU settings")
	}
}

func TestUnknown(t *testing.T) {
	_, err := boards.Get("pdp-11")
	if !errors.Is(err, boards.ErrUnknown) {
		t.Fatalf("got %v, want ErrUnknown", err)
	}
	if !strings.Contains(err.Error(), "qemu-x86_64") {
		t.Errorf("error %q does not list the known boards", err)
	}
}

// TestBoardKernels fetches each board's kernel and checks that it has
// the board's modules (with their dependencies) and device tree.
func TestBoardKernels(t *testing.T) {
	if testing.Short() {
		t.Skip("fetching kernels in -short mode")
	}
	fetched := map[string]*kernel.Kernel{}
	for _, b := range boards.All() {
		t.Run(b.Name, func(t *testing.T) {
			k := fetched[b.Kernel]
			if k == nil {
				src, err := kernel.Lookup(b.Kernel)
				if err != nil {
					t.Fatal(err)
				}
				if k, err = kernel.Fetch(context.Background(), src, kernel.FetchOptions{}); err != nil {
					t.Fatal(err)
				}
				fetched[b.Kernel] = k
			}
			mods, err := kernel.ResolveModules(k.ModulesDir(), b.Modules)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Modules) > 0 && len(mods) < len(b.Modules) {
				t.Errorf("resolved %d modules for the %d named", len(mods), len(b.Modules))
			}
			if b.DeviceTree != "" {
				if _, err := os.Stat(k.DTBPath(b.DeviceTree)); err != nil {
					t.Errorf("device tree: %v", err)
				}
			}
		})
	}
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
