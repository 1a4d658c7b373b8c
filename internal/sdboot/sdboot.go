// Package sdboot is the A/B slot layout of Nymote's SD cards and its
// try-once rule, shared by the image builder (which writes the card), the
// appliance (which writes the inactive slot and commits) and the host tool
// (status and rollback of a card):
//
//	partition 1  FAT16 NYMOTE-BOOT, bootable: boot.scr, uboot.env, seed.txt
//	partition 2  FAT16 slot a: vmlinuz, the device tree, initrd.cpio.zst, nymote.scr, nymote.txt
//	partition 3  FAT16 slot b: the same files (empty on a new card)
//	partition 4  ext4 nymote-data: the data disk
//
// Partition 1 is never rewritten by an update: only uboot.env and seed.txt
// change, in place (same size, same clusters). U-Boot reads uboot.env from
// the first bootable partition and sources its boot.scr, the script of
// BootScript: it keeps three variables,
//
//	nymote_slot   the committed slot (a when unset)
//	nymote_next   a slot written by an update, not yet committed
//	nymote_tried  set to nymote_next (and saved with saveenv) before its one test boot
//
// and then sources the chosen slot's own nymote.scr (SlotScript: the
// image's kernel command line, the kernel, device tree and initramfs loads,
// bootz), which passes nymote.sdslot=SLOT to the appliance. A boot that
// finds nymote_tried equal to nymote_next (the test boot happened and did
// not commit) clears both and boots the committed slot. The appliance
// commits a test boot when it reports itself good (Commit: nymote_slot set
// to the new slot, the others cleared). Choose is the script's rule in Go,
// for tests and status.
package sdboot

import (
	bin "encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"

	"github.com/nymote/nymote/internal/bootseed"
	"github.com/nymote/nymote/internal/fat"
	"github.com/nymote/nymote/internal/ubootenv"
	"github.com/nymote/nymote/update"
)

// Files and variables.
const (
	// EnvFile is U-Boot's environment on the boot partition.
	EnvFile = "uboot.env"
	// EnvSize is its size (CONFIG_ENV_SIZE of Debian's sunxi U-Boot).
	EnvSize = 64 << 10
	// DefaultEnvFile is a copy of the card's first uboot.env, never
	// written after the build: what RepairEnv restores a damaged
	// uboot.env from.
	DefaultEnvFile = "uboot.def"
	// BootScriptFile is the boot partition's script.
	BootScriptFile = "boot.scr"
	// SlotScriptFile is each slot's own script.
	SlotScriptFile = "nymote.scr"
	// InfoFile is each slot's description (app, board, initramfs hash,
	// version when written by an update): what status shows.
	InfoFile = "nymote.txt"
	// KernelFile and InitrdFile are the slot's kernel and initramfs (the
	// names the image's files have).
	KernelFile = "vmlinuz"
	InitrdFile = "initrd.cpio.zst"

	VarSlot  = "nymote_slot"
	VarNext  = "nymote_next"
	VarTried = "nymote_tried"

	// BootPartition, DataPartition: partition numbers (1-based).
	BootPartition = 1
	DataPartition = 4
	// CmdlineSlot is the kernel command line option naming the booted
	// slot.
	CmdlineSlot = "nymote.sdslot"
)

// Slots are the slots' names, in partition order.
var Slots = []string{"a", "b"}

// Partition is the partition number of slot s (a: 2, b: 3).
func Partition(s string) (int, error) {
	switch s {
	case "a":
		return 2, nil
	case "b":
		return 3, nil
	}
	return 0, fmt.Errorf("sdboot: slot %q: want a or b", s)
}

// Other is the other slot.
func Other(s string) string {
	if s == "b" {
		return "a"
	}
	return "b"
}

// PartitionDevice returns partition n of the disk whose partition bootDev is (such
// as /dev/mmcblk0p1 → /dev/mmcblk0p3 for n 3).
func PartitionDevice(bootDev string, n int) (string, error) {
	i := len(bootDev)
	for i > 0 && bootDev[i-1] >= '0' && bootDev[i-1] <= '9' {
		i--
	}
	if i == len(bootDev) || i == 0 {
		return "", fmt.Errorf("sdboot: %s is not a partition's device", bootDev)
	}
	return fmt.Sprintf("%s%d", bootDev[:i], n), nil
}

// State is the try-once state kept in the environment.
type State struct {
	// Committed is the committed slot (a or b).
	Committed string
	// Next is a written slot awaiting its test boot or commit; "" none.
	Next string
	// Tried is the slot whose test boot began; "" none.
	Tried string
}

// StateOf reads the state from an environment as boot.scr does (an unset
// or unknown nymote_slot is a; an unknown nymote_next is none).
func StateOf(e *ubootenv.Env) State {
	s := State{Committed: "a"}
	if v, _ := e.Get(VarSlot); v == "b" {
		s.Committed = "b"
	}
	if v, _ := e.Get(VarNext); v == "a" || v == "b" {
		s.Next = v
	}
	s.Tried, _ = e.Get(VarTried)
	return s
}

// Apply writes the state into an environment.
func (s State) Apply(e *ubootenv.Env) error {
	for _, v := range []ubootenv.Var{{Name: VarSlot, Value: s.Committed}, {Name: VarNext, Value: s.Next}, {Name: VarTried, Value: s.Tried}} {
		if err := e.Set(v.Name, v.Value); err != nil {
			return err
		}
	}
	return nil
}

// Choose is boot.scr's rule: the slot to boot, and the state U-Boot saves
// before booting it (save false: nothing is written).
//
//   - no next slot (or the committed one): the committed slot, saved only
//     when tried was left set;
//   - a next slot already tried: its test boot ended without a commit:
//     next and tried are cleared (saved), the committed slot boots;
//   - a next slot not tried: tried is set to it (saved), it boots.
func Choose(s State) (boot string, after State, save bool) {
	switch {
	case s.Next == "" || s.Next == s.Committed:
		// boot.scr drops such a next slot; it saves only to clear tried.
		return s.Committed, State{Committed: s.Committed}, s.Tried != ""
	case s.Tried == s.Next:
		return s.Committed, State{Committed: s.Committed}, true
	default:
		return s.Next, State{Committed: s.Committed, Next: s.Next, Tried: s.Next}, true
	}
}

// BootScript is the boot partition's boot.scr source: Choose's rule in
// U-Boot's shell, then the chosen slot's nymote.scr. U-Boot's distro boot
// sources it with devtype, devnum and distro_bootpart set.
func BootScript() string {
	return strings.Join([]string{
		"# Nymote boot script (A/B slots, try-once), written by nymote build. See README.md.",
		`if test -z "${devtype}"; then setenv devtype mmc; setenv devnum 0; setenv distro_bootpart 1; fi`,
		`if test "${nymote_slot}" != b; then setenv nymote_slot a; fi`,
		`if test "${nymote_next}" != a && test "${nymote_next}" != b; then setenv nymote_next; fi`,
		`if test -n "${nymote_next}" && test "${nymote_next}" = "${nymote_slot}"; then setenv nymote_next; fi`,
		`setenv nymote_boot`,
		`if test -n "${nymote_next}"; then`,
		`  if test "${nymote_tried}" = "${nymote_next}"; then`,
		`    echo "nymote: slot ${nymote_next} was tried and not committed: back to slot ${nymote_slot}"`,
		`    setenv nymote_next; setenv nymote_tried; saveenv`,
		`  else`,
		`    setenv nymote_tried ${nymote_next}`,
		`    if saveenv; then setenv nymote_boot ${nymote_next}; echo "nymote: test boot of slot ${nymote_next} (committed: ${nymote_slot})"; else echo "nymote: cannot save the environment: no test boot"; fi`,
		`  fi`,
		`elif test -n "${nymote_tried}"; then`,
		`  setenv nymote_tried; saveenv`,
		`fi`,
		`if test -z "${nymote_boot}"; then setenv nymote_boot ${nymote_slot}; fi`,
		`if test "${nymote_boot}" = b; then setenv nymote_part 3; else setenv nymote_part 2; fi`,
		`echo "nymote: booting slot ${nymote_boot} (partition ${nymote_part})"`,
		// The slot's script goes above the seed file's address, away
		// from this script (at scriptaddr) and the kernel's, device
		// tree's and initramfs' load addresses.
		`setexpr nymote_scr ${pxefile_addr_r} + 0x80000`,
		`if load ${devtype} ${devnum}:${nymote_part} ${nymote_scr} ` + SlotScriptFile + `; then source ${nymote_scr}; fi`,
		`echo "nymote: slot ${nymote_boot} did not boot"`,
		`if test "${nymote_boot}" != "${nymote_slot}"; then setenv nymote_boot ${nymote_slot}; if test "${nymote_boot}" = b; then setenv nymote_part 3; else setenv nymote_part 2; fi; echo "nymote: booting the committed slot ${nymote_boot}"; if load ${devtype} ${devnum}:${nymote_part} ${nymote_scr} ` + SlotScriptFile + `; then source ${nymote_scr}; fi; fi`,
		"",
	}, "\n")
}

// CheckCmdline says whether a kernel command line can go into a slot
// script: printable ASCII without quotes, backslashes, $ and ;.
func CheckCmdline(cmdline string) error {
	for _, r := range cmdline {
		if r < 0x20 || r > 0x7e || strings.ContainsRune("\"\\$;", r) {
			return fmt.Errorf("sdboot: kernel command line %q: only printable ASCII without quotes, backslashes, $ and ; can go into a boot script", cmdline)
		}
	}
	return nil
}

// SlotScript is a slot's nymote.scr source: it sets the kernel command
// line (cmdline, the random seed's partition seedDev and the booted slot),
// loads the kernel, the device tree dtb and the initramfs from the slot's
// partition (nymote_part, set by boot.scr), hands the random seed file of
// the boot partition to the kernel as /chosen/rng-seed when it holds one,
// and boots with bootz.
func SlotScript(dtb, cmdline, seedDev string) (string, error) {
	if err := CheckCmdline(cmdline); err != nil {
		return "", err
	}
	if err := CheckCmdline(dtb + seedDev); err != nil || strings.ContainsAny(dtb+seedDev, " ") {
		return "", fmt.Errorf("sdboot: device tree %q, seed device %q: want names without spaces or special characters", dtb, seedDev)
	}
	from := "${devtype} ${devnum}:${nymote_part}"
	boot := "${devtype} ${devnum}:${distro_bootpart}"
	cmd := strings.TrimSpace(cmdline + " nymote.seed=" + seedDev + " " + CmdlineSlot + "=${nymote_boot}")
	return strings.Join([]string{
		"# Nymote slot script, written by nymote build. See README.md.",
		`echo "nymote: loading the appliance"`,
		`setenv bootargs "` + cmd + `"`,
		fmt.Sprintf("load %s ${kernel_addr_r} %s", from, KernelFile),
		fmt.Sprintf("load %s ${fdt_addr_r} %s", from, dtb),
		fmt.Sprintf("load %s ${ramdisk_addr_r} %s", from, InitrdFile),
		"setenv nymote_initrd_size ${filesize}",
		"fdt addr ${fdt_addr_r}",
		"fdt resize 1024",
		"setenv " + bootseed.Variable,
		fmt.Sprintf("if load %s ${pxefile_addr_r} %s; then env import -t ${pxefile_addr_r} ${filesize} %s; fi", boot, bootseed.FileName, bootseed.Variable),
		fmt.Sprintf(`if test -n "${%[1]s}"; then fdt set /chosen rng-seed ${%[1]s}; setenv %[1]s; echo "nymote: random seed handed to the kernel"; else echo "nymote: no random seed on the card (nymote flash writes one): the kernel gathers entropy itself, slowly"; fi`, bootseed.Variable),
		"bootz ${kernel_addr_r} ${ramdisk_addr_r}:${nymote_initrd_size} ${fdt_addr_r}",
		"",
	}, "\n"), nil
}

// scriptEpoch is the creation time written into a script's header:
// 1980-01-01, as on the FAT partitions (images are reproducible).
const scriptEpoch = 315532800

// ScriptImage wraps a U-Boot script in a legacy image header, as mkimage
// -A arm -O linux -T script -C none -n name does: a 64-byte big-endian
// header with the CRCs of the header and of the data; the data are a
// zero-terminated table of lengths, then the script.
func ScriptImage(name, script string) []byte {
	be := bin.BigEndian
	data := make([]byte, 8, 8+len(script))
	be.PutUint32(data, uint32(len(script)))
	data = append(data, script...)
	h := make([]byte, 64)
	be.PutUint32(h[0:], 0x27051956) // magic
	be.PutUint32(h[8:], scriptEpoch)
	be.PutUint32(h[12:], uint32(len(data)))
	be.PutUint32(h[24:], crc32.ChecksumIEEE(data))
	h[28] = 5 // IH_OS_LINUX
	h[29] = 2 // IH_ARCH_ARM
	h[30] = 6 // IH_TYPE_SCRIPT
	h[31] = 0 // IH_COMP_NONE
	copy(h[32:64], name)
	be.PutUint32(h[4:], crc32.ChecksumIEEE(h))
	return append(h, data...)
}

// Device is a partition (or a card image seen at an offset): what the
// environment and slot functions read and write.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

// ReadEnv reads uboot.env from the FAT boot partition at off of dev, and
// returns it with the offset of its bytes.
func ReadEnv(dev io.ReaderAt, off int64) (*ubootenv.Env, int64, error) {
	at, size, err := fat.Locate(dev, off, EnvFile)
	if err != nil {
		return nil, 0, fmt.Errorf("sdboot: %w", err)
	}
	if size != EnvSize {
		return nil, 0, fmt.Errorf("sdboot: %s is %d bytes, want %d", EnvFile, size, EnvSize)
	}
	b := make([]byte, size)
	if _, err := dev.ReadAt(b, at); err != nil {
		return nil, 0, fmt.Errorf("sdboot: reading %s: %w", EnvFile, err)
	}
	e, err := ubootenv.Parse(b)
	if err != nil {
		return nil, 0, fmt.Errorf("sdboot: %s: %w", EnvFile, err)
	}
	return e, at, nil
}

// SetState writes s into the environment on the boot partition at off of
// dev, in place (the file keeps its size and clusters). The caller syncs.
func SetState(dev Device, off int64, s State) error {
	e, at, err := ReadEnv(dev, off)
	if err != nil {
		return err
	}
	if err := s.Apply(e); err != nil {
		return err
	}
	b, err := e.Bytes()
	if err != nil {
		return err
	}
	if _, err := dev.WriteAt(b, at); err != nil {
		return fmt.Errorf("sdboot: writing %s: %w", EnvFile, err)
	}
	return nil
}

// RepairEnv rewrites a damaged uboot.env (a bad CRC: a power cut during a
// write of it, after which U-Boot boots with its built-in environment, so
// slot a, whichever was committed) from uboot.def, in place. Which slot was
// committed is lost: when the other slot holds an image (otherHasImage),
// the running slot is put on trial as if just test-booted (it commits on
// its good line; otherwise the next boot returns to the other slot);
// else the running slot is committed. It returns the state written, or
// nil when uboot.env was good; the caller syncs.
func RepairEnv(dev Device, off int64, booted string, otherHasImage bool) (*State, error) {
	_, _, err := ReadEnv(dev, off)
	if err == nil || !errors.Is(err, ubootenv.ErrBadCRC) {
		return nil, err
	}
	at, size, err := fat.Locate(dev, off, EnvFile)
	if err != nil {
		return nil, fmt.Errorf("sdboot: %w", err)
	}
	dat, dsize, err := fat.Locate(dev, off, DefaultEnvFile)
	if err != nil {
		return nil, fmt.Errorf("sdboot: %s is damaged and there is no %s to repair it from: %w", EnvFile, DefaultEnvFile, err)
	}
	if dsize != size {
		return nil, fmt.Errorf("sdboot: %s is %d bytes, %s %d", DefaultEnvFile, dsize, EnvFile, size)
	}
	b := make([]byte, size)
	if _, err := dev.ReadAt(b, dat); err != nil {
		return nil, fmt.Errorf("sdboot: reading %s: %w", DefaultEnvFile, err)
	}
	e, err := ubootenv.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("sdboot: %s: %w", DefaultEnvFile, err)
	}
	st := State{Committed: booted}
	if otherHasImage {
		st = State{Committed: Other(booted), Next: booted, Tried: booted}
	}
	if err := st.Apply(e); err != nil {
		return nil, err
	}
	if b, err = e.Bytes(); err != nil {
		return nil, err
	}
	if _, err := dev.WriteAt(b, at); err != nil {
		return nil, fmt.Errorf("sdboot: writing %s: %w", EnvFile, err)
	}
	return &st, nil
}

// ReadState reads the try-once state on the boot partition at off of dev.
func ReadState(dev io.ReaderAt, off int64) (State, error) {
	e, _, err := ReadEnv(dev, off)
	if err != nil {
		return State{}, err
	}
	return StateOf(e), nil
}

// ErrTestBoot: an update while the running image is on its test boot
// (it would overwrite the committed slot).
var ErrTestBoot = fmt.Errorf("%w: the running image is on its test boot: update again once it has committed", update.ErrNotNow)
