package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/kernel"
	"github.com/nymote/nymote/launch"
)

// Artefact file names.
const (
	InitrdFile      = "initrd.cpio.zst"
	KernelFile      = "vmlinuz"
	VmlinuxFile     = "vmlinux"
	CmdlineFile     = "cmdline.txt"
	QEMUScript      = "run-qemu.sh"
	FirecrackerFile = launch.FirecrackerConfigFile
	XenConfigFile   = launch.XLConfigFile
	ManifestFile    = "manifest.json"
)

// output writes one kind of artefact set from the initramfs; it returns
// the names of the files it wrote in the output folder.
type output func(ctx context.Context, p *plan, k *kernel.Kernel, rd *ramdisk) ([]string, error)

// outputs is the registry of output writers, by board output.
var outputs = map[boards.Output]output{
	boards.OutputQEMU:        writeQEMU,
	boards.OutputFirecracker: writeFirecracker,
	boards.OutputXen:         writeXen,
	boards.OutputSDCard:      writeSDCardOutput,
}

// ErrNotImplemented is wrapped by Build's error for a board output that
// images cannot write yet.
var ErrNotImplemented = errors.New("not implemented yet")

// notYet are the board outputs images knows of but cannot write yet, with
// what to do instead.
var notYet = map[boards.Output]string{}

// Implemented says whether images can write output o.
func Implemented(o boards.Output) bool {
	_, ok := outputs[o]
	return ok
}

// writeOutputs runs the plan's output writers.
func writeOutputs(ctx context.Context, p *plan, k *kernel.Kernel, rd *ramdisk) ([]string, error) {
	seen := map[string]bool{}
	var files []string
	for _, o := range p.outputs {
		fs, err := outputs[o](ctx, p, k, rd)
		if err != nil {
			return nil, fmt.Errorf("images: %s output: %w", o, err)
		}
		for _, f := range fs {
			if !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		}
	}
	return files, nil
}

func writeCommon(p *plan, rd *ramdisk) error {
	if err := writeFile(p.opts.OutDir, InitrdFile, rd.compressed, 0o644); err != nil {
		return err
	}
	return writeFile(p.opts.OutDir, CmdlineFile, []byte(joinCmdline(p.cmdline)+"\n"), 0o644)
}

// writeQEMU writes the kernel, the initramfs, the command line and a
// launch script.
func writeQEMU(ctx context.Context, p *plan, k *kernel.Kernel, rd *ramdisk) ([]string, error) {
	img, err := os.ReadFile(k.ImagePath())
	if err != nil {
		return nil, err
	}
	if err := writeFile(p.opts.OutDir, KernelFile, img, 0o644); err != nil {
		return nil, err
	}
	if err := writeCommon(p, rd); err != nil {
		return nil, err
	}
	files := []string{KernelFile, InitrdFile, CmdlineFile, QEMUScript}
	if dtb := p.board.DeviceTree; dtb != "" {
		if err := copyDTB(p, k); err != nil {
			return nil, err
		}
		files = append(files, dtb)
	}
	if err := writeFile(p.opts.OutDir, QEMUScript, []byte(qemuScript(p)), 0o755); err != nil {
		return nil, err
	}
	return files, nil
}

// copyDTB copies the board's device tree from the kernel's package.
func copyDTB(p *plan, k *kernel.Kernel) error {
	b, err := os.ReadFile(k.DTBPath(p.board.DeviceTree))
	if err != nil {
		return fmt.Errorf("device tree of %s: %w", p.board.Name, err)
	}
	return writeFile(p.opts.OutDir, p.board.DeviceTree, b, 0o644)
}

// writeVmlinux writes the uncompressed vmlinux ELF of an x86 kernel.
func writeVmlinux(p *plan, k *kernel.Kernel, output string) ([]byte, error) {
	if k.ImageFormat != kernel.BzImage {
		return nil, fmt.Errorf("kernel %s is a %s; the %s output needs an x86 bzImage", k.Name, k.ImageFormat, output)
	}
	bz, err := os.ReadFile(k.ImagePath())
	if err != nil {
		return nil, err
	}
	vmlinux, err := kernel.Vmlinux(bz)
	if err != nil {
		return nil, err
	}
	return vmlinux, writeFile(p.opts.OutDir, VmlinuxFile, vmlinux, 0o644)
}

// firecrackerConfig is Firecracker's --config-file format (the parts we
// set).
type firecrackerConfig struct {
	BootSource struct {
		KernelImagePath string `json:"kernel_image_path"`
		InitrdPath      string `json:"initrd_path"`
		BootArgs        string `json:"boot_args"`
	} `json:"boot-source"`
	Drives []struct {
		DriveID      string `json:"drive_id"`
		PathOnHost   string `json:"path_on_host"`
		IsRootDevice bool   `json:"is_root_device"`
		IsReadOnly   bool   `json:"is_read_only"`
	} `json:"drives"`
	MachineConfig struct {
		VCPUCount  int `json:"vcpu_count"`
		MemSizeMiB int `json:"mem_size_mib"`
	} `json:"machine-config"`
	NetworkInterfaces []struct {
		IfaceID     string `json:"iface_id"`
		HostDevName string `json:"host_dev_name"`
	} `json:"network-interfaces"`
}

// writeFirecracker writes the uncompressed vmlinux that Firecracker boots,
// the initramfs and a VM configuration that expects the data disk as
// data.img and a TAP device called nymote0 beside it.
func writeFirecracker(ctx context.Context, p *plan, k *kernel.Kernel, rd *ramdisk) ([]string, error) {
	if _, err := writeVmlinux(p, k, "Firecracker"); err != nil {
		return nil, err
	}
	if err := writeCommon(p, rd); err != nil {
		return nil, err
	}
	var c firecrackerConfig
	c.BootSource.KernelImagePath = VmlinuxFile
	c.BootSource.InitrdPath = InitrdFile
	c.BootSource.BootArgs = joinCmdline(p.cmdline)
	c.Drives = append(c.Drives, struct {
		DriveID      string `json:"drive_id"`
		PathOnHost   string `json:"path_on_host"`
		IsRootDevice bool   `json:"is_root_device"`
		IsReadOnly   bool   `json:"is_read_only"`
	}{"data", "data.img", false, false})
	c.MachineConfig.VCPUCount = 1
	c.MachineConfig.MemSizeMiB = 128
	c.NetworkInterfaces = append(c.NetworkInterfaces, struct {
		IfaceID     string `json:"iface_id"`
		HostDevName string `json:"host_dev_name"`
	}{p.board.NIC, "nymote0"})
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFile(p.opts.OutDir, FirecrackerFile, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return []string{VmlinuxFile, InitrdFile, CmdlineFile, FirecrackerFile}, nil
}

func outputNames(os []boards.Output) string {
	s := ""
	for i, o := range os {
		if i > 0 {
			s += ", "
		}
		s += string(o)
	}
	return s + " output"
}

// writeSDCardOutput writes the SD card image (sdcard.go) of a board that
// boots from one: U-Boot, the boot partition, slot a with the kernel, the
// device tree, the initramfs and the slot script, and the data partition.
// It also writes the slot's files beside the card (vmlinuz, the device
// tree, initrd.cpio.zst, nymote.scr): the manifest lists them, and an
// update of a running board carries them (not the card, see
// update.BundleSkips).
func writeSDCardOutput(ctx context.Context, p *plan, k *kernel.Kernel, rd *ramdisk) ([]string, error) {
	tmp, err := os.MkdirTemp("", "nymote-sdcard-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, InitrdFile)
	if err := os.WriteFile(initrd, rd.compressed, 0o644); err != nil {
		return nil, err
	}
	size := p.opts.SDDataSize
	if size == 0 && p.opts.SDData == "" {
		size = 256 << 20
	}
	cmdline := joinCmdline(p.cmdline)
	_, err = WriteSDCard(ctx, filepath.Join(p.opts.OutDir, SDCardFile), SDCardInput{
		UBoot: p.board.UBoot, Kernel: k.ImagePath(), DTB: k.DTBPath(p.board.DeviceTree), Initrd: initrd,
		Cmdline: cmdline, DataDisk: p.opts.SDData, DataSize: size, App: p.app.Name, Board: p.board.Name,
	})
	if err != nil {
		return nil, err
	}
	img, err := os.ReadFile(k.ImagePath())
	if err != nil {
		return nil, err
	}
	if err := writeFile(p.opts.OutDir, KernelFile, img, 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(p.opts.OutDir, InitrdFile, rd.compressed, 0o644); err != nil {
		return nil, err
	}
	if err := copyDTB(p, k); err != nil {
		return nil, err
	}
	scr, err := SDSlotScript(p.board.DeviceTree, cmdline, "")
	if err != nil {
		return nil, err
	}
	if err := writeFile(p.opts.OutDir, SDSlotScriptFile, scr, 0o644); err != nil {
		return nil, err
	}
	return []string{SDCardFile, KernelFile, p.board.DeviceTree, InitrdFile, SDSlotScriptFile}, nil
}
