package launch

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nymote/nymote/update"
)

// The VM configurations nymote build writes in an image folder (package
// images writes them under these names).
const (
	FirecrackerConfigFile = "firecracker.json"
	XLConfigFile          = "xl.cfg"
)

// UpdateDiskCmdline tells the runtime to look for its update disk.
const UpdateDiskCmdline = "nymote.updatedisk=auto"

// TestBootCmdline tells the runtime that the boot is a new image's test
// boot: it serves the data as it is and migrates only after the commit.
const TestBootCmdline = "nymote.trial=1"

// slotCmdline is what a slot boot adds to the image's command line.
func slotCmdline(b update.Boot) string {
	if b.Test {
		return UpdateDiskCmdline + " " + TestBootCmdline
	}
	return UpdateDiskCmdline
}

// The configurations a launcher writes for a boot from slots, in the
// slots folder (update.SlotsDir): FirecrackerSlotConfig's and
// XLSlotConfig's, rewritten at each boot.
const (
	SlotFirecrackerConfig = "boot.firecracker.json"
	SlotXLConfig          = "boot.xl.cfg"
)

// slotFile is the absolute path of the file name, as an image's own
// configuration names it, in the slot folder dir: a plain name (nymote
// build writes no other), so that a slot boots nothing from outside it.
func slotFile(dir, what, name string) (string, error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return "", fmt.Errorf("launch: the image in %s names its %s %q: want a file of the image", dir, what, name)
	}
	p, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("launch: the image in %s: %s: %w", dir, what, err)
	}
	return p, nil
}

// FirecrackerSlotConfig returns the Firecracker configuration
// (--config-file) that boots slot b of a data disk's slots: template (the
// launcher's own configuration; nil means the slot image's
// firecracker.json) with its boot source taken from the slot image's
// firecracker.json (its kernel and initramfs, as absolute paths in the
// slot, and its command line, with UpdateDiskCmdline, and TestBootCmdline
// for a test boot), its drive "data"
// at disk (added first if it has none) and the update disk added as
// drive "update" after the others. Every other setting of template
// (machine, network, logger...) is kept as it is. With updateDisk "" (a
// boot of an image folder, not from slots: b.Dir is the folder) there is
// no update disk.
func FirecrackerSlotConfig(template []byte, b update.Boot, disk, updateDisk string) ([]byte, error) {
	own, err := os.ReadFile(filepath.Join(b.Dir, FirecrackerConfigFile))
	if err != nil {
		return nil, fmt.Errorf("launch: slot %s: %w (an image built with the firecracker output boots under Firecracker)", b.Slot, err)
	}
	if template == nil {
		template = own
	}
	var img struct {
		BootSource struct {
			Kernel  string `json:"kernel_image_path"`
			Initrd  string `json:"initrd_path"`
			Cmdline string `json:"boot_args"`
		} `json:"boot-source"`
	}
	if err := json.Unmarshal(own, &img); err != nil {
		return nil, fmt.Errorf("launch: slot %s: %s: %w", b.Slot, FirecrackerConfigFile, err)
	}
	kernel, err := slotFile(b.Dir, "kernel", img.BootSource.Kernel)
	if err != nil {
		return nil, err
	}
	initrd, err := slotFile(b.Dir, "initramfs", img.BootSource.Initrd)
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := json.Unmarshal(template, &cfg); err != nil {
		return nil, fmt.Errorf("launch: Firecracker configuration: %w", err)
	}
	if cfg == nil {
		return nil, fmt.Errorf("launch: Firecracker configuration: want a JSON object")
	}
	boot, _ := cfg["boot-source"].(map[string]any)
	if boot == nil {
		boot = map[string]any{}
	}
	boot["kernel_image_path"] = kernel
	boot["initrd_path"] = initrd
	boot["boot_args"] = img.BootSource.Cmdline
	if updateDisk != "" {
		boot["boot_args"] = strings.TrimSpace(img.BootSource.Cmdline + " " + slotCmdline(b))
	}
	cfg["boot-source"] = boot
	var drives []any
	if d, ok := cfg["drives"]; ok && d != nil {
		if drives, ok = d.([]any); !ok {
			return nil, fmt.Errorf("launch: Firecracker configuration: drives: want a list")
		}
	}
	data := false
	for i, d := range drives {
		m, ok := d.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("launch: Firecracker configuration: drives[%d]: want an object", i)
		}
		switch m["drive_id"] {
		case "data":
			m["path_on_host"] = disk
			data = true
		case "update":
			return nil, fmt.Errorf("launch: Firecracker configuration: drives[%d]: the drive id \"update\" is the update disk's", i)
		}
	}
	drive := func(id, path string) map[string]any {
		return map[string]any{"drive_id": id, "path_on_host": path, "is_root_device": false, "is_read_only": false}
	}
	if !data {
		drives = append([]any{drive("data", disk)}, drives...)
	}
	if updateDisk != "" {
		drives = append(drives, drive("update", updateDisk))
	}
	cfg["drives"] = drives
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// XLSlotConfig returns the xl configuration that boots slot b of a data
// disk's slots: template (the launcher's own configuration; "" means the
// slot image's xl.cfg) with kernel, ramdisk and extra taken from the slot
// image's xl.cfg (the kernel and initramfs as absolute paths in the slot,
// the command line with UpdateDiskCmdline, and TestBootCmdline for a test
// boot), the target of its first disk
// (the data disk) set to disk, and the update disk added after it on the
// next virtual device (xvdb after xvda), and on_reboot = "destroy" (a
// reboot into a received update ends the domain, and the launcher boots
// it again from the slots, as QEMU's -no-reboot does). Every other
// setting of template (name, memory, vif...) is kept. With updateDisk ""
// (a boot of an image folder, not from slots: b.Dir is the folder) there
// is no update disk and on_reboot is template's. The result parses as xl reads it
// (ParseXLConfig).
func XLSlotConfig(template string, b update.Boot, disk, updateDisk string) (string, error) {
	ownb, err := os.ReadFile(filepath.Join(b.Dir, XLConfigFile))
	if err != nil {
		return "", fmt.Errorf("launch: slot %s: %w (an image built with the xen output boots under xl)", b.Slot, err)
	}
	own, err := ParseXLConfig(string(ownb))
	if err != nil {
		return "", fmt.Errorf("launch: slot %s: %s: %w", b.Slot, XLConfigFile, err)
	}
	if template == "" {
		template = string(ownb)
	}
	cfg, err := ParseXLConfig(template)
	if err != nil {
		return "", fmt.Errorf("launch: xl configuration: %w", err)
	}
	for _, k := range []string{"kernel", "ramdisk"} {
		p, err := slotFile(b.Dir, k, own[k].Atom)
		if err != nil {
			return "", err
		}
		cfg[k] = XLValue{Atom: p}
	}
	cfg["extra"] = own["extra"]
	if updateDisk != "" {
		cfg["extra"] = XLValue{Atom: strings.TrimSpace(own["extra"].Atom + " " + slotCmdline(b))}
		// A reboot (into a received update) ends the domain: the
		// launcher installs the update and boots the slot the rule
		// chooses.
		cfg["on_reboot"] = XLValue{Atom: "destroy"}
	}
	disks := cfg["disk"]
	if !disks.IsList || len(disks.List) == 0 {
		return "", fmt.Errorf("launch: xl configuration: no disk = [ ... ] list for the data disk")
	}
	data, err := xlDiskTarget(disks.List[0], disk)
	if err != nil {
		return "", err
	}
	vdev := xlDiskParam(disks.List[0], "vdev")
	if len(vdev) < 4 || !strings.HasPrefix(vdev, "xvd") || vdev[len(vdev)-1] < 'a' || vdev[len(vdev)-1] >= 'z' {
		return "", fmt.Errorf("launch: xl configuration: the data disk %q: want vdev=xvdX", disks.List[0])
	}
	next := vdev[:len(vdev)-1] + string(vdev[len(vdev)-1]+1)
	for _, d := range disks.List[1:] {
		if xlDiskParam(d, "vdev") == next {
			return "", fmt.Errorf("launch: xl configuration: disk %q is on %s, the update disk's", d, next)
		}
	}
	list := []string{data}
	if updateDisk != "" {
		list = append(list, "format=raw, vdev="+next+", access=rw, target="+updateDisk)
	}
	cfg["disk"] = XLValue{IsList: true, List: append(list, disks.List[1:]...)}
	out, err := FormatXLConfig(cfg)
	if err != nil {
		return "", err
	}
	if _, err := ParseXLConfig(out); err != nil {
		return "", fmt.Errorf("launch: the xl configuration for slot %s does not parse: %w", b.Slot, err)
	}
	return out, nil
}

// xlDiskParam is the value of key=VALUE in an xl disk specification
// (xl-disk-configuration(5)), "" when it has none. target= comes last
// and takes the rest.
func xlDiskParam(spec, key string) string {
	for _, p := range strings.Split(spec, ",") {
		p = strings.TrimSpace(p)
		if v, ok := strings.CutPrefix(p, key+"="); ok {
			if key == "target" {
				return strings.TrimSpace(spec[strings.Index(spec, "target=")+len("target="):])
			}
			return v
		}
	}
	return ""
}

// xlDiskTarget returns the disk specification spec with its target (the
// last parameter) replaced by target.
func xlDiskTarget(spec, target string) (string, error) {
	i := strings.Index(spec, "target=")
	if i < 0 {
		return "", fmt.Errorf("launch: xl configuration: the data disk %q has no target=: want key=value parameters ending in target=PATH", spec)
	}
	return spec[:i] + "target=" + target, nil
}

// xlOrder is the order FormatXLConfig writes the usual settings in; the
// others follow in name order.
var xlOrder = []string{"name", "type", "kernel", "ramdisk", "extra", "memory", "vcpus", "vif", "disk"}

// FormatXLConfig writes cfg as an xl configuration: one setting a line,
// the usual ones first (name, type, kernel...), numbers as written,
// everything else as a double-quoted string. A value with a double quote,
// a backslash or a newline is refused (xl would read it back otherwise).
func FormatXLConfig(cfg map[string]XLValue) (string, error) {
	var keys []string
	for k := range cfg {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		if i := slices.Index(xlOrder, k); i >= 0 {
			return i
		}
		return len(xlOrder)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	atom := func(k, v string) (string, error) {
		if strings.ContainsAny(v, "\"\\\n") {
			return "", fmt.Errorf("launch: xl configuration: %s: %q has a quote, backslash or newline", k, v)
		}
		if isXLNumber(v) {
			return v, nil
		}
		return `"` + v + `"`, nil
	}
	var b strings.Builder
	for _, k := range keys {
		v := cfg[k]
		if !v.IsList {
			a, err := atom(k, v.Atom)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "%s = %s\n", k, a)
			continue
		}
		var as []string
		for _, e := range v.List {
			a, err := atom(k, e)
			if err != nil {
				return "", err
			}
			as = append(as, a)
		}
		fmt.Fprintf(&b, "%s = [ %s ]\n", k, strings.Join(as, ", "))
	}
	return b.String(), nil
}

// isXLNumber says whether s is a number as xl's lexer reads one.
func isXLNumber(s string) bool {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == 'x') {
			return false
		}
	}
	return true
}
