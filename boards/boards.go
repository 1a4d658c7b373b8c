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
	// OutputSDCard is an SD card image for a board that boots with
	// U-Boot: U-Boot with its SPL, a boot partition (kernel, device
	// tree, initramfs, boot script) and the data partition.
	OutputSDCard Output = "sdcard"
	// OutputXen is an uncompressed vmlinux ELF with the PVH entry note,
	// the initramfs and an xl configuration (type = "pvh").
	OutputXen Output = "xen"
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
	// data disk's controller and the entropy source. NIC "" means the
	// machine's built-in network card (-nic); Disk "" means DiskInterface
	// instead; RNG "" means the machine has none, and each boot gets a
	// fresh seed in the device tree's /chosen/rng-seed (the board then
	// has a DeviceTree).
	NIC, Disk, RNG string
	// DiskInterface is the -drive if= value of a data disk that is not a
	// -device, such as "sd" for the SD card slot of an emulated board.
	DiskInterface string
	// Kernel is the artefact QEMU boots with -kernel; "" means the
	// image's kernel (vmlinuz). "vmlinux" boots an x86 kernel through its
	// PVH entry, as Xen does.
	Kernel string
	// Cmdline are kernel command line options added for QEMU boots, such
	// as console=ttyS0 for a board whose own console is Xen's hvc0.
	Cmdline []string
	// NoPowerButton says that QMP system_powerdown reaches nothing the
	// appliance sees (no ACPI, no gpio-keys): stopping the VM cuts its
	// power.
	NoPowerButton bool
	// MinMemoryMiB is the smallest -m at which the board's appliances
	// boot and serve with its pinned kernel (bench/README.md).
	MinMemoryMiB int
	// FixedMemoryMiB is the memory size the machine insists on (QEMU's
	// cubieboard takes only 512 MiB or 1 GiB); 0 lets -m choose.
	FixedMemoryMiB int
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
	// DeviceTree is the device tree file (.dtb) of the board, from the
	// kernel's package; "" when the firmware or QEMU provides one.
	DeviceTree string
	// UBoot is the U-Boot image with its SPL, as Debian's u-boot-sunxi
	// package installs it, for an SD card output; "" for boards that do
	// not boot with U-Boot.
	UBoot string
	// Console is the kernel console device, such as ttyS0.
	Console string
	// Cmdline is the kernel command line, before console= and the
	// appliance's own nymote.* options.
	Cmdline []string
	// Modules are the kernel modules /init loads (with their
	// dependencies); empty when the kernel has the drivers built in.
	Modules []string
	// DataDevice is the block device of the data disk inside the
	// appliance, such as /dev/vda. The runtime looks for the ext4 file
	// system labelled nymote-data first, and falls back to DataDevice.
	DataDevice string
	// NIC is the network interface the netstack runs on, such as eth0.
	NIC string
	// Outputs are the artefacts a build writes for the board (at least
	// one).
	Outputs []Output
	// PowerOffByReset says that the machine's VMM ends the VM on a reset
	// and has no power-off device (Firecracker): the appliance powers off
	// by rebooting (nymote.poweroff=reset on its command line).
	PowerOffByReset bool
	// QEMU is set for boards that QEMU can boot (for nymote run and the
	// boot tests); nil for the others.
	QEMU *QEMU
	// CodeDisk puts the appliance's program on a read-only code disk
	// (code.img: ext4, labelled nymote-code) that the launcher attaches
	// as a second virtio disk, with a small stub as the initramfs's
	// /init that checks and execs it: the program's pages are then page
	// cache the kernel can evict, not initramfs memory it never can.
	// Only for boards whose kernel has virtio-blk and ext4 built in (the
	// stub loads no modules) and whose launcher attaches the disk (QEMU,
	// QEMU.Disk set); the others keep the program in the initramfs.
	CodeDisk bool
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
		// pool so that Go's getrandom does not block. ipv6.disable=1:
		// the netstack owns IPv6 (as it owns IPv4) and the kernel's own
		// stack stays unconfigured; without this the kernel sets IPv6
		// up on the NIC only for netstack.OpenPacket to turn it off
		// again, 7 ms of host CPU of a boot under TCG.
		Cmdline:    []string{"panic=-1", "quiet", "random.trust_cpu=on", "pci=nommconf", "ipv6.disable=1"},
		DataDevice: "/dev/vda",
		NIC:        "eth0",
		Outputs:    []Output{OutputQEMU},
		QEMU: &QEMU{
			Binary: "qemu-system-x86_64", Machine: "q35", CPU: "max",
			NIC: "virtio-net-pci", Disk: "virtio-blk-pci", RNG: "virtio-rng-pci",
			// The gokrazy kernel decompresses to 54 MiB and keeps 60 MiB
			// reserved at boot (its image is 42 MiB); mail serves at 88
			// MiB, at 84 it unpacks the initramfs but cannot run /init.
			MinMemoryMiB: 88,
		},
	},
	// QEMU's microvm machine, modelled on Firecracker: no PCI, virtio-mmio
	// devices (described to the kernel in ACPI tables), a GED power
	// button, and our own minimal kernel (kernel/addenda), built here on
	// first use. The smallest and fastest-booting x86-64 board.
	"microvm-x86_64": {
		Name:        "microvm-x86_64",
		Description: "x86-64 microVM under QEMU (microvm: virtio-mmio net, block and rng, ACPI power button; Nymote's minimal kernel)",
		GOARCH:      "amd64",
		Kernel:      "nymote-amd64",
		Console:     "ttyS0",
		// As qemu-x86_64, less pci=nommconf (no PCI).
		Cmdline:    []string{"panic=-1", "quiet", "random.trust_cpu=on", "ipv6.disable=1"},
		DataDevice: "/dev/vda",
		NIC:        "eth0",
		Outputs:    []Output{OutputQEMU},
		QEMU: &QEMU{
			// x-option-roms=off: no option ROM scan in the firmware.
			Binary: "qemu-system-x86_64", Machine: "microvm,acpi=on,x-option-roms=off", CPU: "max",
			NIC: "virtio-net-device", Disk: "virtio-blk-device", RNG: "virtio-rng-device",
			MinMemoryMiB: 64,
		},
		CodeDisk: true,
	},
	// Not boot-tested here (no Firecracker and no KVM on the development
	// machine); microvm-x86_64 boots the same kernel on the same kind of
	// machine under QEMU. Firecracker describes its virtio-mmio devices
	// on the kernel command line (virtio_mmio.device=...), which needs
	// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES: gokrazy's kernel lacks it, our
	// own has it.
	"firecracker-x86_64": {
		Name:        "firecracker-x86_64",
		Description: "x86-64 Firecracker microVM (virtio-mmio net and block; power off with SendCtrlAltDel; Nymote's minimal kernel)",
		GOARCH:      "amd64",
		Kernel:      "nymote-amd64",
		Console:     "ttyS0",
		// reboot=k: Firecracker ends the VM on a keyboard-controller
		// reset, its documented way to stop; i8042.* skip probing.
		Cmdline:         []string{"panic=-1", "quiet", "random.trust_cpu=on", "reboot=k", "pci=off", "i8042.noaux", "i8042.nomux", "i8042.dumbkbd"},
		DataDevice:      "/dev/vda",
		NIC:             "eth0",
		Outputs:         []Output{OutputFirecracker},
		PowerOffByReset: true,
	},
	"qemu-arm64": {
		Name:        "qemu-arm64",
		Description: "arm64 virtual machine under QEMU (virt, virtio-net, virtio-blk, virtio-rng; power key on gpio-keys; Nymote's minimal kernel)",
		GOARCH:      "arm64",
		// Our own kernel (kernel/addenda), cross-compiled here on first
		// use: a 5.2 MiB Image where gokrazy's is 57 MiB.
		Kernel:     "nymote-arm64",
		Console:    "ttyAMA0",
		Cmdline:    []string{"panic=-1", "quiet", "random.trust_cpu=on"},
		DataDevice: "/dev/vda",
		NIC:        "eth0",
		Outputs:    []Output{OutputQEMU},
		QEMU: &QEMU{
			Binary: "qemu-system-aarch64", Machine: "virt", CPU: "cortex-a57",
			NIC: "virtio-net-pci", Disk: "virtio-blk-pci", RNG: "virtio-rng-pci",
			// With gokrazy's 57 MiB Image mail needed 128 MiB (hello
			// 96); with ours, see bench/README.md.
			MinMemoryMiB: 64,
		},
		CodeDisk: true,
	},
	// Debian's armmp kernel is built for ARMv7 with many boards' drivers
	// as modules: each 32-bit ARM board lists those it needs, ext4 (a
	// module here) and crc32c_generic, which ext4 asks the crypto API for
	// (it would run modprobe, which an appliance does not have).
	"qemu-armv7": {
		Name:        "qemu-armv7",
		Description: "32-bit ARMv7 virtual machine under QEMU (virt, cortex-a15, virtio-net, virtio-blk, virtio-rng; Debian's armmp kernel)",
		GOARCH:      "arm", GOARM: "7",
		Kernel:     "debian-armmp",
		Console:    "ttyAMA0",
		Cmdline:    []string{"panic=-1", "quiet"},
		Modules:    []string{"virtio_pci", "virtio_net", "virtio_blk", "virtio_rng", "evdev", "crc32c_generic", "ext4"},
		DataDevice: "/dev/vda",
		NIC:        "eth0",
		Outputs:    []Output{OutputQEMU},
		QEMU: &QEMU{
			// highmem=off: with LPAE in the CPU, QEMU puts the PCIe
			// ECAM above 4 GiB, where the armmp kernel (no LPAE)
			// cannot reach it.
			Binary: "qemu-system-arm", Machine: "virt,highmem=off", CPU: "cortex-a15",
			NIC: "virtio-net-pci", Disk: "virtio-blk-pci", RNG: "virtio-rng-pci",
			MinMemoryMiB: 128,
		},
	},
	// The A10's EMAC needs its modules in this order: the PHY library,
	// the MDIO bus driver, then the MAC.
	"cubieboard": {
		Name:        "cubieboard",
		Description: "Cubieboard (Allwinner A10, 32-bit ARMv7): SD card with U-Boot; under QEMU -M cubieboard by direct kernel boot",
		GOARCH:      "arm", GOARM: "7",
		Kernel:     "debian-armmp",
		DeviceTree: "sun4i-a10-cubieboard.dtb",
		UBoot:      "/usr/lib/u-boot/Cubieboard/u-boot-sunxi-with-spl.bin",
		Console:    "ttyS0",
		Cmdline:    []string{"panic=-1", "quiet"},
		Modules: []string{"libphy", "fwnode_mdio", "fixed_phy", "of_mdio", "mdio-sun4i", "sun4i-emac", "sunxi-mmc", "crc32c_generic", "ext4",
			// The SoC's watchdog: how Linux reboots the board.
			"sunxi_wdt"},
		DataDevice: "/dev/mmcblk0p4",
		NIC:        "eth0",
		Outputs:    []Output{OutputQEMU, OutputSDCard},
		QEMU: &QEMU{
			// The machine's EMAC, SD card slot and no RNG: each boot
			// gets a seed in the device tree instead.
			Binary: "qemu-system-arm", Machine: "cubieboard",
			DiskInterface: "sd", NoPowerButton: true,
			MinMemoryMiB: 512, FixedMemoryMiB: 512,
		},
	},
	// Not emulated by QEMU: built as an SD card image only.
	"cubieboard2": {
		Name:        "cubieboard2",
		Description: "Cubieboard2 (Allwinner A20, 32-bit ARMv7, GMAC): SD card with U-Boot",
		GOARCH:      "arm", GOARM: "7",
		Kernel:     "debian-armmp",
		DeviceTree: "sun7i-a20-cubieboard2.dtb",
		UBoot:      "/usr/lib/u-boot/Cubieboard2/u-boot-sunxi-with-spl.bin",
		Console:    "ttyS0",
		Cmdline:    []string{"panic=-1", "quiet"},
		Modules: []string{"libphy", "fwnode_mdio", "fixed_phy", "of_mdio", "phylink", "pcs_xpcs", "stmmac", "stmmac-platform", "dwmac-sunxi",
			"sunxi-mmc", "crc32c_generic", "ext4", "sunxi_wdt"},
		DataDevice: "/dev/mmcblk0p4",
		NIC:        "eth0",
		Outputs:    []Output{OutputSDCard},
	},
	// Xen PVH guest with Debian's cloud kernel (XEN_PVH, front-end
	// drivers as modules). The same kernel boots under QEMU through its
	// PVH entry with virtio devices, for tests and nymote run, so the
	// virtio and ACPI power button modules are in the image too.
	"xen-pvh-x86_64": {
		Name:        "xen-pvh-x86_64",
		Description: "x86-64 Xen PVH guest (xl create; xen-netfront, xen-blkfront); boots under QEMU through the PVH entry",
		GOARCH:      "amd64",
		Kernel:      "debian-cloud-amd64",
		Console:     "hvc0",
		Cmdline:     []string{"panic=-1", "quiet", "random.trust_cpu=on"},
		Modules:     []string{"xen-netfront", "xen-blkfront", "virtio_pci", "virtio_net", "virtio_blk", "virtio_rng", "button", "evdev"},
		DataDevice:  "/dev/xvda",
		NIC:         "eth0",
		Outputs:     []Output{OutputXen},
		QEMU: &QEMU{
			Binary: "qemu-system-x86_64", Machine: "q35", CPU: "max",
			NIC: "virtio-net-pci", Disk: "virtio-blk-pci", RNG: "virtio-rng-pci",
			Kernel: "vmlinux", Cmdline: []string{"console=ttyS0"},
			// Debian's kernel keeps 48 MiB reserved at boot (its image
			// is 32 MiB); at 80 MiB it runs out while unpacking the
			// initramfs, at 64 before.
			MinMemoryMiB: 88,
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
		q.Cmdline = slices.Clone(q.Cmdline)
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
