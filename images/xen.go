package images

import (
	"context"
	"fmt"
	"strings"

	"github.com/nymote/nymote/kernel"
	"github.com/nymote/nymote/launch"
)

// xenMemoryMiB is the guest memory the xl configuration asks for.
const xenMemoryMiB = 256

// writeXen writes the Xen PVH artefacts: the uncompressed vmlinux ELF
// (whose PVH entry note Xen boots through), the initramfs, the command
// line and an xl configuration naming them.
func writeXen(ctx context.Context, p *plan, k *kernel.Kernel, rd *ramdisk) ([]string, error) {
	vmlinux, err := writeVmlinux(p, k, "xen")
	if err != nil {
		return nil, err
	}
	if _, err := kernel.PVHEntry(vmlinux); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	if err := writeCommon(p, rd); err != nil {
		return nil, err
	}
	cfg := xlConfig(p)
	if _, err := launch.ParseXLConfig(cfg); err != nil {
		return nil, fmt.Errorf("the generated %s does not parse: %w", XenConfigFile, err)
	}
	if err := writeFile(p.opts.OutDir, XenConfigFile, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return []string{VmlinuxFile, InitrdFile, CmdlineFile, XenConfigFile}, nil
}

// xlConfig is the xl configuration of the image (see xl.cfg(5)). Paths
// are relative: xl reads the kernel and ramdisk from the folder it runs in
// (the image's), so the file is the same wherever the image is built.
func xlConfig(p *plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# xl configuration of the Nymote %s appliance (Xen PVH guest), see xl.cfg(5).\n", p.app.Name)
	b.WriteString("# Put the data disk (nymote disk create -o data.img) in this folder, then run here:\n")
	fmt.Fprintf(&b, "#   xl create %s          (console: xl console nymote-%s; stop: xl shutdown nymote-%s)\n", XenConfigFile, p.app.Name, p.app.Name)
	b.WriteString("# xl loads kernel and ramdisk from the current folder; if your disk back-end runs\n")
	b.WriteString("# elsewhere, give the data disk's absolute path in target=.\n")
	fmt.Fprintf(&b, "name = %s\n", xlString("nymote-"+p.app.Name))
	b.WriteString("type = \"pvh\"\n")
	fmt.Fprintf(&b, "kernel = %s\n", xlString(VmlinuxFile))
	fmt.Fprintf(&b, "ramdisk = %s\n", xlString(InitrdFile))
	fmt.Fprintf(&b, "extra = %s\n", xlString(joinCmdline(p.cmdline)))
	fmt.Fprintf(&b, "memory = %d\n", xenMemoryMiB)
	b.WriteString("vcpus = 1\n")
	b.WriteString("vif = [ \"bridge=xenbr0\" ]\n")
	dev := strings.TrimPrefix(p.board.DataDevice, "/dev/")
	fmt.Fprintf(&b, "disk = [ %s ]\n", xlString("format=raw, vdev="+dev+", access=rw, target=data.img"))
	b.WriteString("on_poweroff = \"destroy\"\non_reboot = \"restart\"\non_crash = \"destroy\"\n")
	return b.String()
}

// xlString quotes s as an xl configuration string (the command line and
// names hold no quotes: prepare refuses them).
func xlString(s string) string { return `"` + s + `"` }
