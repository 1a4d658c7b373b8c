package images

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/boards"
)

// Forward forwards a TCP port on the host to one in the appliance.
type Forward struct {
	// Host is the host address, such as 127.0.0.1:1143.
	Host string
	// Guest is the appliance's port, such as 143.
	Guest int
}

// QEMURun configures a QEMU launch of a built image.
type QEMURun struct {
	// Dir is the folder of the image's artefacts.
	Dir string
	// Disk is the data disk image (raw, ext4); "" attaches none.
	Disk string
	// KVM uses hardware acceleration (-accel kvm -cpu host); false means
	// TCG with the board's CPU model.
	KVM bool
	// MemoryMiB is the guest's memory; 0 means 256.
	MemoryMiB int
	// CPUs is the number of vCPUs; 0 means 1.
	CPUs int
	// Forwards are the port forwards of QEMU's user network.
	Forwards []Forward
	// QMP is a unix socket path for QMP (power off); "" means none.
	QMP string
	// ExtraCmdline are added to the image's kernel command line.
	ExtraCmdline []string
	// DeviceTree is the device tree QEMU hands the kernel, for boards
	// that have one; "" means the image's. StartQEMU gives each boot a
	// copy with a fresh /chosen/rng-seed.
	DeviceTree string
}

// QEMUOutputs returns the outputs of board b that a QEMU boot needs (for
// Options.Outputs): the qemu output, or the xen output for a board QEMU
// boots through the PVH entry; nil when QEMU cannot boot the board.
func QEMUOutputs(b boards.Board) []boards.Output {
	switch {
	case b.QEMU == nil:
		return nil
	case slices.Contains(b.Outputs, boards.OutputQEMU):
		return []boards.Output{boards.OutputQEMU}
	}
	return []boards.Output{boards.OutputXen}
}

// QEMUCommand returns the QEMU command line (program first) that boots the
// image described by m with r. The console is on QEMU's standard output;
// QEMU exits when the guest powers off or reboots (-no-reboot).
func QEMUCommand(m *Manifest, r QEMURun) ([]string, error) {
	b, err := boards.Get(m.Board)
	if err != nil {
		return nil, err
	}
	q := b.QEMU
	if q == nil {
		return nil, fmt.Errorf("images: board %s does not boot under QEMU", b.Name)
	}
	kernelFile := KernelFile
	if q.Kernel != "" {
		kernelFile = q.Kernel
	}
	if _, ok := m.File(kernelFile); !ok {
		return nil, errors.New("images: the image has no kernel for QEMU (" + kernelFile + ")")
	}
	mem := r.MemoryMiB
	if mem == 0 {
		mem = 256
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
	cmdline := strings.Join(append(append([]string{m.Cmdline}, q.Cmdline...), r.ExtraCmdline...), " ")
	args = append(args,
		"-m", fmt.Sprint(mem), "-smp", fmt.Sprint(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", filepath.Join(r.Dir, kernelFile),
		"-initrd", filepath.Join(r.Dir, InitrdFile),
		"-append", cmdline,
	)
	if b.DeviceTree != "" {
		dtb := r.DeviceTree
		if dtb == "" {
			dtb = filepath.Join(r.Dir, b.DeviceTree)
		}
		args = append(args, "-dtb", dtb)
	}
	if q.RNG != "" {
		args = append(args, "-device", q.RNG)
	}
	netdev := "user,id=net0"
	for _, f := range r.Forwards {
		netdev += fmt.Sprintf(",hostfwd=tcp:%s-:%d", f.Host, f.Guest)
	}
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
	if r.QMP != "" {
		args = append(args, "-qmp", "unix:"+r.QMP+",server=on,wait=off")
	}
	return args, nil
}

// qemuScript is a shell script that boots the image from its folder.
func qemuScript(p *plan) string {
	m := &Manifest{Board: p.board.Name, Cmdline: joinCmdline(p.cmdline), Files: []File{{Name: KernelFile}, {Name: VmlinuxFile}}}
	var fw []Forward
	for _, port := range p.app.Ports {
		fw = append(fw, Forward{Host: fmt.Sprintf("127.0.0.1:%d", app.HostPort(port.Port, app.HostPortOffset)), Guest: port.Port})
	}
	args, err := QEMUCommand(m, QEMURun{Dir: "@DIR@", Disk: "@DISK@", Forwards: fw, MemoryMiB: 256})
	if err != nil {
		return "#!/bin/sh\necho " + shellQuote(err.Error()) + " >&2\nexit 1\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# Boots the %s appliance for %s under QEMU (TCG), console on this terminal.\n", p.app.Name, p.board.Name)
	fmt.Fprintf(&b, "# Usage: %s DATA.img [QEMU OPTIONS]   (make DATA.img with: nymote disk create)\n", QEMUScript)
	b.WriteString("# nymote run does the same with KVM when it works, and powers off cleanly on Ctrl-C.\n")
	if p.board.QEMU != nil && p.board.QEMU.RNG == "" {
		b.WriteString("# The machine has no RNG: nymote run gives each boot a fresh seed in a copy of the\n")
		b.WriteString("# device tree; this script does not, so the kernel gathers entropy itself at boot\n")
		b.WriteString("# (the console's ready line shows how long /init waited for it).\n")
	}
	b.WriteString("set -e\nDIR=$(dirname \"$0\")\nDISK=${1:?usage: $0 DATA.img [QEMU OPTIONS]}\nshift\nexec")
	for i, a := range args {
		// One option and its value per line.
		if i == 0 || strings.HasPrefix(a, "-") {
			b.WriteString(" \\\n  ")
		} else {
			b.WriteString(" ")
		}
		if strings.Contains(a, "@DIR@") || strings.Contains(a, "@DISK@") {
			a = strings.ReplaceAll(strings.ReplaceAll(a, "@DIR@", "${DIR}"), "@DISK@", "${DISK}")
			b.WriteString(`"` + a + `"`)
		} else {
			b.WriteString(shellQuote(a))
		}
	}
	b.WriteString(" \\\n  \"$@\"\n")
	return b.String()
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,:/@+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
