package images

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/boards"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/store"
)

// TestBootFirecrackerLike boots the firecracker-x86_64 mail image the way
// Firecracker would, as near as QEMU comes without Firecracker (and KVM):
// QEMU's microvm machine without ACPI or PCI, the image's vmlinux and the
// boot_args of its Firecracker configuration, virtio-mmio devices that
// QEMU lists on the kernel command line as Firecracker does
// (virtio_mmio.device=...), and an i8042 keyboard controller. (QEMU enters
// vmlinux through its PVH note, Firecracker through the 64-bit boot
// protocol.) A real IMAP client logs in and APPENDs; then the test sends
// Ctrl-Alt-Del, as Firecracker's SendCtrlAltDel does: the appliance stops
// cleanly and ends the VM by a reset (reboot=k, nymote.poweroff=reset;
// QEMU's -no-reboot exits on it), leaving a clean file system and a store
// that passes git fsck.
func TestBootFirecrackerLike(t *testing.T) {
	needMailAppliance(t)
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	needTool(t, "mkfs.ext4", "e2fsprogs")
	needTool(t, "python3", "python3")
	dir, _ := build(t, "mail", "firecracker-x86_64")
	var cfg firecrackerConfig
	raw, err := os.ReadFile(filepath.Join(dir, FirecrackerFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"reboot=k", "pci=off", "nymote.poweroff=reset"} {
		if !strings.Contains(cfg.BootSource.BootArgs, want) {
			t.Errorf("boot_args %q lack %s", cfg.BootSource.BootArgs, want)
		}
	}
	disk := aliceDisk(t, 256<<20)
	addr := testutil.FreeAddr(t)
	tmp := t.TempDir()
	qmp := filepath.Join(tmp, "qmp.sock")
	// Firecracker gives the guest no DHCP server: the address is static,
	// as a Firecracker user would set it in boot_args.
	cmdline := cfg.BootSource.BootArgs + " nymote.net=" + guestNet + " nymote.ip=10.0.2.15/24 nymote.gw=10.0.2.2"
	if b, err := boards.Get("firecracker-x86_64"); err == nil {
		cmdline = strings.Join(append([]string{cmdline}, launch.TCGCmdline(b, false)...), " ")
	}
	vm, err := launch.StartCommand([]string{"qemu-system-x86_64",
		"-machine", "microvm,acpi=off,x-option-roms=off", "-accel", "tcg", "-cpu", "max",
		"-m", fmt.Sprint(cfg.MachineConfig.MemSizeMiB), "-smp", fmt.Sprint(cfg.MachineConfig.VCPUCount),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
		"-kernel", filepath.Join(dir, cfg.BootSource.KernelImagePath),
		"-initrd", filepath.Join(dir, cfg.BootSource.InitrdPath),
		"-append", cmdline,
		"-device", "i8042",
		"-netdev", "user,id=net0,hostfwd=tcp:" + addr + "-:993", "-device", "virtio-net-device,netdev=net0",
		"-drive", "file=" + disk + ",format=raw,id=data,cache=writeback,if=none", "-device", "virtio-blk-device,drive=data",
		"-qmp", "unix:" + qmp + ",server=on,wait=off"}, qmp, nil)
	if err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, vm)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if _, err := vm.WaitLine(ctx, "nymote: mail imaps listening on"); err != nil {
		t.Fatal(err)
	}
	if out, err := imapSession(addr, true, "from a microVM"); err != nil {
		t.Fatalf("IMAP: %v\n%s", err, out)
	}
	if l, err := vm.WaitLine(ctx, " ready at "); err == nil {
		t.Log(l.Text)
	}
	if err := vm.QMP(ctx, `{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"ctrl"},{"type":"qcode","data":"alt"},{"type":"qcode","data":"delete"}]}}`); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := vm.Wait(wctx); err != nil && !vm.Exited() {
		t.Fatalf("the VM did not end after Ctrl-Alt-Del: %v", err)
	}
	for _, want := range []string{"power off requested by signal interrupt", "powering off (by a reset, nymote.poweroff=reset)"} {
		if !strings.Contains(vm.Console(), want) {
			t.Errorf("console lacks %q", want)
		}
	}
	// Stopped cleanly: e2fsck finds nothing to do.
	e2fsck, err := datadisk.LookTool("e2fsck")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(e2fsck, "-fn", disk).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn after the stop: %v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := datadisk.Export(context.Background(), disk, out); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("git", "--git-dir", filepath.Join(out, store.RepoDir), "fsck", "--strict").CombinedOutput(); err != nil {
		t.Errorf("git fsck on the exported store: %v\n%s", err, b)
	}
}
