// Package boards is Nymote's table of the machines an appliance image can be
// built for, as data: each Board names its architecture, kernel, console,
// kernel command line, the kernel modules it needs, how it boots and, for
// virtual boards, how QEMU emulates it. The images package turns a Board into
// artefacts; tests check the table's invariants.
//
// Look a board up with Get; list them with Names.
package boards

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Output names a kind of artefact an image build writes for a board. The
// images package has one writer per Output.
type Output string

// The outputs a board can ask for.
const (
	// OutputQEMU is the kernel, the initramfs and a QEMU launch script.
	OutputQEMU Output = "qemu"
	// OutputFirecracker is an uncompressed vmlinux ELF, the initramfs and
	// a Firecracker VM configuration (JSON).
	OutputFirecracker Output = "firecracker"
)

// QEMU says how QEMU emulates a virtual board (for nymote run and the boot
// tests).
type QEMU struct {
	// Binary is the qemu-system program, such as qemu-system-x86_64.
	Binary string
	// Machine is the -machine value, such as "q35" or "virt".
	Machine string
	// CPU is the -cpu value under TCG; "" leaves QEMU's default. Under KVM
	// nymote run uses "host".
	CPU string
	// NIC, Disk and RNG are the -device models of the network card, the
	// data disk's controller and the entropy source.
	NIC, Disk, RNG string
	// MinMemoryMiB is the smallest -m at which the board's appliances
	// boot and serve with its pinned kernel (bench/README.md).
	MinMemoryMiB int
}

// Board is one machine an appliance can be built for.
type Board struct {
	// Name is the board's name on the command line (--board).
	Name string
	// Description says what the board is, for --help and errors.
	Description string
	// GOARCH is the Go architecture of the appliance's /init; GOARM is its
	// GOARM for 32-bit ARM and "" elsewhere.
	GOARCH, GOARM string
	// Kernel names the kernel source in package kernel.
	Kernel string
	// Console is the kernel console device, such as ttyS0.
	Console string
	// Cmdline is the kernel command line, before console= and the
	// appliance's own nymote.* options.
	Cmdline []string
	// Modules are the kernel modules /init loads (with their
	// dependencies); empty when the kernel has the drivers built in.
	Modules []string
	// DataDevice is the block device of the data disk inside the
	// appliance, such as /dev/vda.
	DataDevice string
	// NIC is the network interface the netstack runs on, such as eth0.
	NIC string
	// Outputs are the artefacts a build writes for the board (at least
	// one).
	Outputs []Output
	// QEMU is set for boards that QEMU can boot (for nymote run and the
	// boot tests); nil for the others.
	QEMU *QEMU
}

// String returns the board's name.
func (b Board) String() string { return b.Name }

var table = map[string]Board{
	"qemu-x86_64": {
		Name:        "qemu-x86_64",
		Description: "x86-64 virtual machine under QEMU (q35, virtio-net, virtio-blk, virtio-rng)",
		GOARCH:      "amd64",
		Kernel:      "gokrazy-amd64",
		Console:     "ttyS0",
		// panic=-1: reboot at once on a kernel panic (QEMU runs with
		// -no-reboot, so it exits); quiet keeps the serial console
		// (slow under TCG) short; random.trust_cpu lets RDRAND seed the
		// pool so that Go's getrandom does not block.
		Cmdline:    []string{"panic=-1", "quiet", "random.trust_cpu=on", "pci=nommconf"},
		DataDevice: "/dev/vda",
		NIC:        "eth0",
		Outputs:    []Output{OutputQEMU},
		QEMU: &QEMU{
			Binary: "qemu-system-x86_64", Machine: "q35", CPU: "max",
			NIC: "virtio-net-pci", Disk: "virtio-blk-pci", RNG: "virtio-rng-pci",
			// The gokrazy kernel decompresses to 54 MiB; at 80 MiB it
			// panics before /init.
			MinMemoryMiB: 96,
		},
	},
	// Not boot-tested here (no Firecracker on the development machine).
	// Firecracker describes its virtio-mmio devices on the kernel command
	// line (virtio_mmio.device=...), which needs
	// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES: the gokrazy kernel lacks it, so
	// this board needs a Firecracker that describes devices in ACPI, or
	// the minimal kernel of kernel/addenda.
	"firecracker-x86_64": {
		Name:        "firecracker-x86_64",
		Description: "x86-64 Firecracker microVM (virtio-mmio net and block; power off with SendCtrlAltDel)",
		GOARCH:      "amd64",
		Kernel:      "gokrazy-amd64",
		Console:     "ttyS0",
		// reboot=k: Firecracker ends the VM on a keyboard-controller
		// reset, its documented way to stop; i8042.* skip probing.
		Cmdline:    []string{"panic=-1", "quiet", "random.trust_cpu=on", "reboot=k", "pci=off", "i8042.noaux", "i8042.nomux", "i8042.dumbkbd"},
		DataDevice: "/dev/vda",
		NIC:        "eth0",
		Outputs:    []Output{OutputFirecracker},
	},
	"qemu-arm64": {
		Name:        "qemu-arm64",
		Description: "arm64 virtual machine under QEMU (virt, virtio-net, virtio-blk, virtio-rng; power key on gpio-keys)",
		GOARCH:      "arm64",
		Kernel:      "gokrazy-arm64",
		Console:     "ttyAMA0",
		Cmdline:     []string{"panic=-1", "quiet", "random.trust_cpu=on"},
		DataDevice:  "/dev/vda",
		NIC:         "eth0",
		Outputs:     []Output{OutputQEMU},
		QEMU: &QEMU{
			Binary: "qemu-system-aarch64", Machine: "virt", CPU: "cortex-a57",
			NIC: "virtio-net-pci", Disk: "virtio-blk-pci", RNG: "virtio-rng-pci",
			// mail needs 128 MiB with the 57 MiB gokrazy Image (hello:
			// 96 MiB).
			MinMemoryMiB: 128,
		},
	},
}

// Names returns the names of all boards, sorted.
func Names() []string {
	names := make([]string, 0, len(table))
	for n := range table {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ErrUnknown is wrapped by Get's error for a name not in the table.
var ErrUnknown = fmt.Errorf("unknown board")

// Get returns the board called name.
func Get(name string) (Board, error) {
	b, ok := table[name]
	if !ok {
		return Board{}, fmt.Errorf("boards: %w %q (known boards: %s)", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	b.Cmdline = slices.Clone(b.Cmdline)
	b.Modules = slices.Clone(b.Modules)
	b.Outputs = slices.Clone(b.Outputs)
	if b.QEMU != nil {
		q := *b.QEMU
		b.QEMU = &q
	}
	return b, nil
}

// All returns every board, sorted by name.
func All() []Board {
	var bs []Board
	for _, n := range Names() {
		b, _ := Get(n)
		bs = append(bs, b)
	}
	return bs
}
