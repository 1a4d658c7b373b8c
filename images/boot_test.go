package images

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/boards"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/launch"
)

// guestNet is the network the boot tests give the appliance: the netstack
// when it is part of the build, else the guest kernel's own stack (a
// test-only path).
var guestNet = map[bool]string{true: "netstack", false: "kernel"}[app.NetstackBuiltIn]

// bootTimeout bounds one boot under TCG on a slow, shared machine.
const bootTimeout = 3 * time.Minute

// boot starts the image in dir with disk (may be "") and forwards a free
// host port to guestPort; it returns the VM and the host address.
func boot(t *testing.T, dir string, m *Manifest, disk string, guestPort int, cmdline ...string) (*launch.VM, string) {
	t.Helper()
	b, _ := boards.Get(m.Board)
	needTool(t, b.QEMU.Binary, "qemu-system-x86 qemu-system-arm")
	addr := testutil.FreeAddr(t)
	vm, err := launch.StartQEMU(context.Background(), qemuImage(t, dir, m), launch.QEMU{
		Disk: disk, MemoryMiB: 256,
		Forwards:     []launch.Forward{{Host: addr, Guest: guestPort}},
		ExtraCmdline: append([]string{"nymote.net=" + guestNet}, cmdline...),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, vm)
	return vm, addr
}

// greet connects to the hello appliance and returns its greeting after
// checking that it echoes.
func greet(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the greeting: %v", err)
	}
	fmt.Fprintf(c, "ping\n")
	echo, err := r.ReadString('\n')
	if err != nil || strings.TrimSpace(echo) != "ping" {
		t.Fatalf("echo: got %q, %v; want ping", echo, err)
	}
	return strings.TrimSpace(greeting)
}

// timeline logs when the console lines of a boot arrived.
func timeline(t *testing.T, vm *launch.VM, marks ...string) {
	t.Helper()
	var parts []string
	for _, l := range vm.Lines() {
		for _, m := range marks {
			if strings.Contains(l.Text, m) {
				parts = append(parts, fmt.Sprintf("%s %s", m, l.At.Round(time.Millisecond)))
			}
		}
	}
	t.Logf("timeline since QEMU start: %s", strings.Join(parts, ", "))
}

// TestBootHello boots the hello appliance under QEMU (TCG) twice from the
// same data disk, powering off through QMP in between: the boot count kept
// on the disk must survive, and the disk must read back on the host.
func TestBootHello(t *testing.T) {
	dir, m := build(t, "hello", "qemu-x86_64")
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	needTool(t, "mkfs.ext4", "e2fsprogs")
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := datadisk.Create(context.Background(), t.TempDir(), disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 2; n++ {
		vm, addr := boot(t, dir, m, disk, 7)
		ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
		if _, err := vm.WaitLine(ctx, "nymote: hello hello listening on"); err != nil {
			cancel()
			t.Fatal(err)
		}
		if got, want := greet(t, addr), fmt.Sprintf("hello from nymote (boot %d)", n); got != want {
			t.Errorf("boot %d: got greeting %q, want %q", n, got, want)
		}
		if err := vm.PowerOff(ctx); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		for _, want := range []string{"power off requested by power button", "nymote: powering off"} {
			if !strings.Contains(vm.Console(), want) {
				t.Errorf("boot %d: console lacks %q", n, want)
			}
		}
		timeline(t, vm, "init started", "listening on", "ready", "powering off")
		if l, err := vm.WaitLine(context.Background(), " ready at "); err == nil {
			t.Logf("boot %d: %s", n, l.Text)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := datadisk.Export(context.Background(), disk, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "hello-boots"))
	if err != nil || strings.TrimSpace(string(b)) != "2" {
		t.Errorf("exported hello-boots: got %q, %v; want 2", b, err)
	}
}

// TestBootWithoutDataDisk: an appliance without a (usable) data disk says
// why on the console and powers off instead of serving.
func TestBootWithoutDataDisk(t *testing.T) {
	dir, m := build(t, "hello", "qemu-x86_64")
	garbage := filepath.Join(t.TempDir(), "garbage.img")
	if err := os.WriteFile(garbage, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, disk, want string }{
		{"missing", "", "no data disk: /dev/vda does not exist"},
		{"corrupt", garbage, "cannot mount /dev/vda as ext4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm, _ := boot(t, dir, m, tc.disk, 7)
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			defer cancel()
			if _, err := vm.WaitLine(ctx, tc.want); err != nil {
				t.Fatal(err)
			}
			if err := vm.Wait(ctx); err != nil {
				t.Fatalf("QEMU did not exit after the appliance refused to serve: %v", err)
			}
			c := vm.Console()
			if !strings.Contains(c, "refusing to serve") || strings.Contains(c, "listening on") {
				t.Errorf("console: want a refusal and no listener")
			}
		})
	}
}

// TestBootCrash: when the service fails, the runtime says why and reboots
// (QEMU, run with -no-reboot, then exits) or powers off, per nymote.oncrash.
func TestBootCrash(t *testing.T) {
	dir, m := build(t, "hello", "qemu-x86_64")
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := datadisk.Create(context.Background(), t.TempDir(), disk, 32<<20); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ oncrash, want string }{{"reboot", "rebooting"}, {"poweroff", "powering off"}} {
		t.Run(tc.oncrash, func(t *testing.T) {
			vm, _ := boot(t, dir, m, disk, 7, "nymote.crash=now", "nymote.oncrash="+tc.oncrash)
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			defer cancel()
			if _, err := vm.WaitLine(ctx, "hello failed: hello: crashing as asked (crash=now); "+tc.want); err != nil {
				t.Fatal(err)
			}
			if err := vm.Wait(ctx); err != nil {
				t.Fatalf("QEMU did not exit after the crash: %v", err)
			}
			if !strings.Contains(vm.Console(), "nymote: "+tc.want+" at ") {
				t.Errorf("console lacks the final %q line", tc.want)
			}
		})
	}
}

// TestBootARM64 boots the same appliance for qemu-arm64 under
// qemu-system-aarch64 and powers it off with the virt power key.
func TestBootARM64(t *testing.T) {
	dir, m := build(t, "hello", "qemu-arm64")
	needTool(t, "qemu-system-aarch64", "qemu-system-arm")
	needTool(t, "mkfs.ext4", "e2fsprogs")
	disk := filepath.Join(t.TempDir(), "data.img")
	if err := datadisk.Create(context.Background(), t.TempDir(), disk, 32<<20); err != nil {
		t.Fatal(err)
	}
	vm, addr := boot(t, dir, m, disk, 7)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if _, err := vm.WaitLine(ctx, "nymote: hello hello listening on"); err != nil {
		t.Fatal(err)
	}
	if got := greet(t, addr); got != "hello from nymote (boot 1)" {
		t.Errorf("got greeting %q", got)
	}
	if err := vm.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(vm.Console(), "power off requested by power button") {
		t.Error("console: the power key was not seen")
	}
	timeline(t, vm, "init started", "listening on", "powering off")
}
