package launch

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/boards"
)

// argAfter returns the value after the first option opt in args.
func argAfter(args []string, opt string) string {
	if i := slices.Index(args, opt); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// TestQEMUCommand checks the command lines of every board QEMU boots: the
// accelerator, the memory default and the fixed memory of a machine that
// insists, the kernel files, the device tree, the user network with its
// forwards and the static addresses of the netstack, the data disk on the
// board's interface, and QMP.
func TestQEMUCommand(t *testing.T) {
	fw := []Forward{{Host: "127.0.0.1:1143", Guest: 143}, {Host: "127.0.0.1:1025", Guest: 25}, {Host: "127.0.0.1:51820", Guest: 51820, UDP: true}}
	n := 0
	for _, b := range boards.All() {
		if b.QEMU == nil {
			if QEMUOutputs(b) != nil {
				t.Errorf("%s: QEMUOutputs of a board QEMU does not boot", b.Name)
			}
			if _, err := QEMUCommand(Image{Board: b, Dir: "/img", Kernel: "k", Initrd: "i"}, QEMU{}); err == nil || !strings.Contains(err.Error(), "does not boot under QEMU") {
				t.Errorf("%s: got %v, want an error", b.Name, err)
			}
			continue
		}
		n++
		t.Run(b.Name, func(t *testing.T) {
			if outs := QEMUOutputs(b); len(outs) != 1 || !slices.Contains(b.Outputs, outs[0]) {
				t.Errorf("QEMUOutputs = %v; the board has %v", outs, b.Outputs)
			}
			img := Image{Dir: "/img", Board: b, Kernel: "vmlinuz", Initrd: "initrd.cpio.zst", Cmdline: "console=X nymote.app=1"}
			tcg, err := QEMUCommand(img, QEMU{Disk: "/d/data.img", Forwards: fw, GuestNet: "netstack", QMP: "/q/qmp.sock", ExtraCmdline: []string{"x=1"}})
			if err != nil {
				t.Fatal(err)
			}
			if tcg[0] != b.QEMU.Binary || argAfter(tcg, "-machine") != b.QEMU.Machine || argAfter(tcg, "-accel") != "tcg" {
				t.Errorf("TCG: %q", tcg)
			}
			if b.QEMU.CPU != "" && argAfter(tcg, "-cpu") != b.QEMU.CPU {
				t.Errorf("TCG -cpu %q, want %q", argAfter(tcg, "-cpu"), b.QEMU.CPU)
			}
			wantMem := "256"
			if b.QEMU.FixedMemoryMiB != 0 {
				wantMem = strconv.Itoa(b.QEMU.FixedMemoryMiB)
			}
			if got := argAfter(tcg, "-m"); got != wantMem {
				t.Errorf("-m %s, want %s", got, wantMem)
			}
			if argAfter(tcg, "-kernel") != "/img/vmlinuz" || argAfter(tcg, "-initrd") != "/img/initrd.cpio.zst" {
				t.Errorf("kernel files: %q", tcg)
			}
			app := argAfter(tcg, "-append")
			for _, want := range []string{"console=X nymote.app=1", "nymote.net=netstack nymote.ip=10.0.2.15/24 nymote.gw=10.0.2.2 nymote.dns=10.0.2.3", "x=1"} {
				if !strings.Contains(app, want) {
					t.Errorf("-append %q lacks %q", app, want)
				}
			}
			if !strings.HasPrefix(app, img.Cmdline) || !strings.HasSuffix(app, " x=1") {
				t.Errorf("-append %q: want the image's command line first and the extra options last", app)
			}
			if dtb := argAfter(tcg, "-dtb"); (b.DeviceTree != "") != (dtb == filepath.Join("/img", b.DeviceTree)) || (b.DeviceTree == "") != (dtb == "") {
				t.Errorf("-dtb %q for device tree %q", dtb, b.DeviceTree)
			}
			line := strings.Join(tcg, " ")
			for _, want := range []string{"user,", "hostfwd=tcp:127.0.0.1:1143-:143,hostfwd=tcp:127.0.0.1:1025-:25,hostfwd=udp:127.0.0.1:51820-:51820", "file=/d/data.img,format=raw", "-qmp unix:/q/qmp.sock,server=on,wait=off"} {
				if !strings.Contains(line, want) {
					t.Errorf("%q lacks %q", line, want)
				}
			}
			if b.QEMU.DiskInterface != "" && !strings.Contains(line, ",if="+b.QEMU.DiskInterface) ||
				b.QEMU.DiskInterface == "" && !strings.Contains(line, "-device "+b.QEMU.Disk+",drive=data") {
				t.Errorf("data disk not on the board's interface: %q", line)
			}
			if b.QEMU.NIC == "" && argAfter(tcg, "-nic") == "" || b.QEMU.NIC != "" && argAfter(tcg, "-device") == "" {
				t.Errorf("no network card: %q", line)
			}

			kvm, err := QEMUCommand(img, QEMU{KVM: true, MemoryMiB: 512, CPUs: 2, GuestNet: "kernel"})
			if err != nil {
				t.Fatal(err)
			}
			if argAfter(kvm, "-accel") != "kvm" || argAfter(kvm, "-cpu") != "host" || argAfter(kvm, "-smp") != "2" {
				t.Errorf("KVM: %q", kvm)
			}
			if b.QEMU.FixedMemoryMiB == 0 && argAfter(kvm, "-m") != "512" {
				t.Errorf("-m %s, want 512", argAfter(kvm, "-m"))
			}
			if app := argAfter(kvm, "-append"); !strings.HasSuffix(app, " nymote.net=kernel") || strings.Contains(app, "nymote.ip=") {
				t.Errorf("kernel network: -append %q", app)
			}
			if slices.Contains(kvm, "-qmp") || slices.Contains(kvm, "-drive") {
				t.Errorf("QMP or a disk without asking: %q", kvm)
			}
			if _, err := QEMUCommand(Image{Dir: "/img", Board: b}, QEMU{}); err == nil {
				t.Error("an image without kernel files: no error")
			}
		})
	}
	if n == 0 {
		t.Fatal("no board boots under QEMU")
	}
}

// TestUseKVM: on and off need no probe; a mode other than auto, on and
// off is refused, naming it.
func TestUseKVM(t *testing.T) {
	b, _ := boards.Get("qemu-x86_64")
	img := Image{Dir: t.TempDir(), Board: b, Kernel: "vmlinuz", Initrd: "initrd"}
	ctx := context.Background()
	if kvm, err := UseKVM(ctx, img, KVMOn, time.Second); !kvm || err != nil {
		t.Errorf("on: %v, %v", kvm, err)
	}
	if kvm, err := UseKVM(ctx, img, KVMOff, time.Second); kvm || err != nil {
		t.Errorf("off: %v, %v", kvm, err)
	}
	// The image folder is empty: the probe boot fails, and auto falls
	// back to TCG.
	if kvm, err := UseKVM(ctx, img, KVMAuto, 5*time.Second); kvm || err != nil {
		t.Errorf("auto without a bootable image: %v, %v", kvm, err)
	}
	if _, err := UseKVM(ctx, img, "yes", time.Second); err == nil || !strings.Contains(err.Error(), `"yes"`) {
		t.Errorf("mode yes: got %v", err)
	}
}
