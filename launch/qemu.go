package launch

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nymote/nymote/boards"
)

// Image is a built image as QEMU boots it. Package images makes one from
// an image's manifest (images.Manifest.QEMUImage).
type Image struct {
	// Dir is the folder of the image's artefacts.
	Dir string
	// Board is the image's board, resolved by the caller.
	Board boards.Board
	// Kernel is the kernel QEMU loads (-kernel) and Initrd the
	// initramfs: file names in Dir. The board's device tree, if it has
	// one, is Board.DeviceTree in Dir.
	Kernel, Initrd string
	// Cmdline is the image's kernel command line.
	Cmdline string
	// CodeDisk is the image's code disk (a file name in Dir), which
	// holds its program: QEMU attaches it read-only after the data and
	// update disks; "" when the program is in the initramfs.
	CodeDisk string
}

// Forward forwards a TCP port on the host to one in the appliance (a
// UDP port with UDP set).
type Forward struct {
	// Host is the host address, such as 127.0.0.1:1143.
	Host string
	// Guest is the appliance's port, such as 143.
	Guest int
	// UDP forwards UDP instead of TCP (Signpost's WireGuard port).
	UDP bool
}

// proto is the hostfwd protocol of f.
func (f Forward) proto() string {
	if f.UDP {
		return "udp"
	}
	return "tcp"
}

// DefaultMemoryMiB is the guest's memory when none is asked for.
const DefaultMemoryMiB = 256

// QEMU's user network has fixed addresses: the guest's, the host's (where
// connections through a port forward come from, as the guest sees them)
// and the DNS server's.
const (
	UserNetGuest = "10.0.2.15/24"
	UserNetHost  = "10.0.2.2"
	UserNetDNS   = "10.0.2.3"
)

// QEMU configures a QEMU launch of a built image.
type QEMU struct {
	// Disk is the data disk image (raw, ext4); "" attaches none.
	Disk string
	// UpdateDisk is an update disk (package update: the appliance writes
	// a received image there; the host installs it into a slot) attached
	// after the data disk, the runtime told to look for it
	// (nymote.updatedisk=auto); "" attaches none. Boards whose data disk
	// is an SD card slot have no second slot for it.
	UpdateDisk string
	// TestBoot marks the boot as a new image's test boot (update.Boot's
	// Test): the runtime is told so (nymote.trial=1) and serves the data
	// as it is, migrating it only at a boot after the commit.
	TestBoot bool
	// KVM uses hardware acceleration (-accel kvm -cpu host); false means
	// TCG with the board's CPU model.
	KVM bool
	// MemoryMiB is the guest's memory; 0 means DefaultMemoryMiB.
	MemoryMiB int
	// CPUs is the number of vCPUs; 0 means 1.
	CPUs int
	// Forwards are the port forwards of QEMU's user network.
	Forwards []Forward
	// GuestNet is the appliance's network (nymote.net): "netstack", which
	// is given the user network's fixed addresses on the command line
	// (a static configuration saves the DHCP exchange at boot), or
	// "kernel" (the guest kernel's own stack); "" leaves it to the image.
	GuestNet string
	// QMP is a unix socket path for QMP (power off); "" means none
	// (StartQEMU then makes one).
	QMP string
	// ExtraCmdline are added to the image's kernel command line.
	ExtraCmdline []string
	// DeviceTree is the device tree QEMU hands the kernel, for boards
	// that have one; "" means the image's. StartQEMU gives each boot a
	// copy with a fresh /chosen/rng-seed.
	DeviceTree string
}

// QEMUOutputs returns the outputs of board b that a QEMU boot needs (for
// images.Options.Outputs): the qemu output, or the xen output for a board
// QEMU boots through the PVH entry; nil when QEMU cannot boot the board.
func QEMUOutputs(b boards.Board) []boards.Output {
	switch {
	case b.QEMU == nil:
		return nil
	case slices.Contains(b.Outputs, boards.OutputQEMU):
		return []boards.Output{boards.OutputQEMU}
	}
	return []boards.Output{boards.OutputXen}
}

// GuestNetCmdline returns the kernel command line options for the
// appliance's network on QEMU's user network (see QEMU.GuestNet).
func GuestNetCmdline(guestNet string) []string {
	switch guestNet {
	case "":
		return nil
	case "netstack":
		return []string{"nymote.net=netstack", "nymote.ip=" + UserNetGuest, "nymote.gw=" + UserNetHost, "nymote.dns=" + UserNetDNS}
	}
	return []string{"nymote.net=" + guestNet}
}

// QEMUCommand returns the QEMU command line (program first) that boots img
// with r. The console is on QEMU's standard output; QEMU exits when the
// guest powers off or reboots (-no-reboot).
func QEMUCommand(img Image, r QEMU) ([]string, error) {
	b := img.Board
	q := b.QEMU
	if q == nil {
		return nil, fmt.Errorf("launch: board %s does not boot under QEMU", b.Name)
	}
	if img.Kernel == "" || img.Initrd == "" {
		return nil, fmt.Errorf("launch: the image in %s names no kernel or initramfs for QEMU", img.Dir)
	}
	mem := r.MemoryMiB
	if mem == 0 {
		mem = DefaultMemoryMiB
	}
	if q.FixedMemoryMiB != 0 {
		mem = q.FixedMemoryMiB
	}
	cpus := r.CPUs
	if cpus == 0 {
		cpus = 1
	}
	args := []string{q.Binary, "-machine", q.Machine}
	if r.KVM {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg")
		if q.CPU != "" {
			args = append(args, "-cpu", q.CPU)
		}
	}
	cmdline := []string{img.Cmdline}
	cmdline = append(cmdline, q.Cmdline...)
	cmdline = append(cmdline, GuestNetCmdline(r.GuestNet)...)
	cmdline = append(cmdline, r.ExtraCmdline...)
	if r.UpdateDisk != "" {
		cmdline = append(cmdline, "nymote.updatedisk=auto")
	}
	if r.TestBoot {
		cmdline = append(cmdline, TestBootCmdline)
	}
	args = append(args,
		"-m", fmt.Sprint(mem), "-smp", fmt.Sprint(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", filepath.Join(img.Dir, img.Kernel),
		"-initrd", filepath.Join(img.Dir, img.Initrd),
		"-append", strings.Join(cmdline, " "),
	)
	if b.DeviceTree != "" {
		dtb := r.DeviceTree
		if dtb == "" {
			dtb = filepath.Join(img.Dir, b.DeviceTree)
		}
		args = append(args, "-dtb", dtb)
	}
	if q.RNG != "" {
		args = append(args, "-device", q.RNG)
	}
	netdev := "user,id=net0" + hostForwards(r.Forwards)
	if q.NIC != "" {
		args = append(args, "-netdev", netdev, "-device", q.NIC+",netdev=net0")
	} else {
		// The machine's own network card.
		args = append(args, "-nic", strings.Replace(netdev, ",id=net0", "", 1))
	}
	if r.Disk != "" {
		drive := "file=" + r.Disk + ",format=raw,id=data,cache=writeback"
		if q.DiskInterface != "" {
			args = append(args, "-drive", drive+",if="+q.DiskInterface)
		} else {
			args = append(args, "-drive", drive+",if=none", "-device", q.Disk+",drive=data")
		}
	}
	if r.UpdateDisk != "" {
		if q.DiskInterface != "" {
			return nil, fmt.Errorf("launch: board %s has one disk slot (%s), taken by the data disk: no update disk", b.Name, q.DiskInterface)
		}
		args = append(args, "-drive", "file="+r.UpdateDisk+",format=raw,id=update,cache=writeback,if=none", "-device", q.Disk+",drive=update")
	}
	if img.CodeDisk != "" {
		if q.DiskInterface != "" || q.Disk == "" {
			return nil, fmt.Errorf("launch: board %s attaches no second disk: no code disk (the image's program must be in its initramfs)", b.Name)
		}
		args = append(args, "-drive", "file="+filepath.Join(img.Dir, img.CodeDisk)+",format=raw,id=code,readonly=on,if=none", "-device", q.Disk+",drive=code")
	}
	if r.QMP != "" {
		args = append(args, "-qmp", "unix:"+r.QMP+",server=on,wait=off")
	}
	return args, nil
}

// hostForwards is the hostfwd options of QEMU's user network for fw.
func hostForwards(fw []Forward) string {
	var s strings.Builder
	for _, f := range fw {
		fmt.Fprintf(&s, ",hostfwd=%s:%s-:%d", f.proto(), f.Host, f.Guest)
	}
	return s.String()
}
