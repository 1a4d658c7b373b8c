package images

import (
	"fmt"
	"strings"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/launch"
)

// QEMUImage returns the image in dir that m describes as package launch
// boots it under QEMU; b is the image's board, resolved by the caller (an
// image of another board is refused).
func (m *Manifest) QEMUImage(dir string, b boards.Board) (launch.Image, error) {
	if m.Board != b.Name {
		return launch.Image{}, fmt.Errorf("images: the image in %s is for board %s, not %s", dir, m.Board, b.Name)
	}
	if b.QEMU == nil {
		return launch.Image{}, fmt.Errorf("images: board %s does not boot under QEMU", b.Name)
	}
	kernelFile := qemuKernel(b)
	if _, ok := m.File(kernelFile); !ok {
		return launch.Image{}, fmt.Errorf("images: the image in %s has no kernel for QEMU (%s; build it with the %s output)", dir, kernelFile, launch.QEMUOutputs(b)[0])
	}
	img := launch.Image{Dir: dir, Board: b, Kernel: kernelFile, Initrd: InitrdFile, Cmdline: m.Cmdline}
	if m.CodeDisk != "" {
		if _, ok := m.File(m.CodeDisk); !ok {
			return launch.Image{}, fmt.Errorf("images: the image in %s names code disk %s, which its files do not list", dir, m.CodeDisk)
		}
		img.CodeDisk = m.CodeDisk
	}
	return img, nil
}

// qemuKernel is the artefact QEMU loads as the kernel of board b: the
// compressed kernel, or the one the board's QEMU entry names (vmlinux, for
// a board QEMU boots through the PVH entry).
func qemuKernel(b boards.Board) string {
	if b.QEMU != nil && b.QEMU.Kernel != "" {
		return b.QEMU.Kernel
	}
	return KernelFile
}

// qemuScript is a shell script that boots the image from its folder.
func qemuScript(p *plan) string {
	img := launch.Image{Dir: "@DIR@", Board: p.board, Kernel: qemuKernel(p.board), Initrd: InitrdFile, Cmdline: joinCmdline(p.cmdline)}
	if p.codeDisk() {
		img.CodeDisk = CodeDiskFile
	}
	var fw []launch.Forward
	for _, port := range p.app.Ports {
		fw = append(fw, launch.Forward{Host: fmt.Sprintf("127.0.0.1:%d", app.HostPort(port.Port, app.HostPortOffset)), Guest: port.Port})
	}
	args, err := launch.QEMUCommand(img, launch.QEMU{Disk: "@DISK@", Forwards: fw, MemoryMiB: 256})
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
