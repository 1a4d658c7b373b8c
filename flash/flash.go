// Package flash writes an SD card image made by nymote build (package
// images) onto a card or a file: it refuses the system disk, mounted disks,
// partitions and (unless forced) disks that are not removable, asks before
// overwriting, verifies by reading back and gives the card a fresh random
// seed. It is the host tool's nymote flash; errors start with "flash:".
package flash

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	bin "encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nymote/nymote/internal/bootseed"
	"github.com/nymote/nymote/internal/fat"
)

// Options configure Write. The zero value asks before overwriting
// (reading the answer from In), reports nothing and takes seeds from
// crypto/rand.
type Options struct {
	// Force writes onto a disk that says it is not removable (an
	// internal disk, a loop device). The system disk and mounted disks
	// are refused all the same.
	Force bool
	// Yes writes without asking.
	Yes bool
	// In is where the answer to the question is read; nil means no
	// answer (Write then fails unless Yes is set).
	In io.Reader
	// Out receives what will be overwritten, the question and progress;
	// nil means none.
	Out io.Writer
	// Rand is where the card's random seed comes from; nil means
	// crypto/rand.
	Rand io.Reader
}

// Errors of Write that callers (and tests) tell apart.
var (
	ErrSystemDisk   = errors.New("holds the running system")
	ErrMounted      = errors.New("is in use (mounted)")
	ErrNotRemovable = errors.New("is not a removable disk (--force writes all the same)")
	ErrTooSmall     = errors.New("is smaller than the image")
	ErrNotSDImage   = errors.New("not an SD card image made by nymote build")
	ErrDeclined     = errors.New("not confirmed")
)

// Write writes the SD card image at image onto target, a whole disk (such
// as /dev/sdb or /dev/mmcblk0) or a regular file: it refuses the system
// disk, mounted disks, partitions and, without Force, disks that are not
// removable; it shows what it will overwrite and asks (unless Yes), shows
// progress, syncs, verifies by reading back (sha256), and then writes a
// fresh random seed onto the card's boot partition (images carry none; see
// package internal/bootseed).
func Write(ctx context.Context, image, target string, opts Options) error {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	img, err := os.Open(image)
	if err != nil {
		return fmt.Errorf("flash: image: %w", err)
	}
	defer img.Close()
	ifi, err := img.Stat()
	if err != nil {
		return fmt.Errorf("flash: image: %w", err)
	}
	if !ifi.Mode().IsRegular() {
		return fmt.Errorf("flash: image %s: %w (not a regular file)", image, ErrNotSDImage)
	}
	bootStart, err := sdBootStart(img)
	if err != nil {
		return fmt.Errorf("flash: image %s: %w", image, err)
	}
	size := ifi.Size()

	t, err := inspectTarget(target, opts.Force)
	if err != nil {
		return err
	}
	if t.isFile && os.SameFile(ifi, t.fi) {
		return fmt.Errorf("flash: %s is the image itself", target)
	}
	if t.dev && t.size < size {
		return fmt.Errorf("flash: %s (%s) %w (%s)", target, human(t.size), ErrTooSmall, human(size))
	}
	fmt.Fprintf(out, "flash: %s (%s) onto %s\n", image, human(size), t.describe())
	if t.dev || t.fi != nil && t.fi.Size() > 0 {
		if !opts.Yes {
			if err := confirm(opts.In, out, target); err != nil {
				return err
			}
		}
	}

	sum, err := writeImage(ctx, img, size, target, t.dev, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "flash: verifying (reading back %s)\n", human(size))
	if err := verify(ctx, target, size, sum, out); err != nil {
		return err
	}
	if err := writeSeed(target, bootStart, opts.Rand, t.dev); err != nil {
		return err
	}
	fmt.Fprintf(out, "flash: done: %s verified (sha256 %x), with a fresh random seed\n", target, sum[:8])
	return nil
}

// sdBootStart checks that r is an SD card image of images.WriteSDCard (an MBR
// whose first partition is a FAT boot partition with a seed file) and
// returns the boot partition's offset.
func sdBootStart(r io.ReaderAt) (int64, error) {
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotSDImage, err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA {
		return 0, fmt.Errorf("%w: no partition table", ErrNotSDImage)
	}
	start := int64(bin.LittleEndian.Uint32(mbr[446+8:])) * 512
	if _, _, err := fat.Locate(r, start, bootseed.FileName); err != nil || start == 0 {
		return 0, fmt.Errorf("%w: no boot partition with %s (%v)", ErrNotSDImage, bootseed.FileName, err)
	}
	return start, nil
}

// target is what Write writes onto.
type target struct {
	path   string
	fi     os.FileInfo // nil for a file that does not exist yet
	isFile bool
	dev    bool
	name   string // the disk's name in /sys/block
	size   int64
	model  string
	parts  []string // "sdb1 256.0 MiB"
}

func (t target) describe() string {
	if !t.dev {
		if t.fi == nil {
			return t.path + " (a new file)"
		}
		return fmt.Sprintf("%s (a file of %s, overwritten)", t.path, human(t.fi.Size()))
	}
	p := "no partitions"
	if len(t.parts) > 0 {
		p = "partitions " + strings.Join(t.parts, ", ")
	}
	return fmt.Sprintf("%s: %s, %s, %s", t.path, t.model, human(t.size), p)
}

// inspectTarget finds out what target is and refuses what must not be
// written.
func inspectTarget(path string, force bool) (target, error) {
	t := target{path: path}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Dir(path)); err != nil {
			return t, fmt.Errorf("flash: %s: %w", path, err)
		}
		t.isFile = true
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("flash: %s: %w", path, err)
	}
	t.fi = fi
	switch {
	case fi.Mode().IsRegular():
		t.isFile = true
		return t, nil
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
	default:
		return t, fmt.Errorf("flash: %s is neither a disk nor a regular file", path)
	}
	t.dev = true
	rdev := uint64(fi.Sys().(*syscall.Stat_t).Rdev)
	sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(rdev), unix.Minor(rdev)))
	if err != nil {
		return t, fmt.Errorf("flash: %s: not in /sys: %w", path, err)
	}
	t.name = filepath.Base(sys)
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		return t, fmt.Errorf("flash: %s is a partition of %s: give the whole disk, /dev/%s", path, filepath.Base(filepath.Dir(sys)), filepath.Base(filepath.Dir(sys)))
	}
	t.size = readInt(filepath.Join(sys, "size")) * 512
	t.model = strings.TrimSpace(readString(filepath.Join(sys, "device", "vendor")) + " " + readString(filepath.Join(sys, "device", "model")))
	if t.model == "" {
		t.model = t.name
	}
	devs := map[string]bool{readString(filepath.Join(sys, "dev")): true}
	es, _ := os.ReadDir(sys)
	for _, e := range es {
		p := filepath.Join(sys, e.Name())
		if _, err := os.Stat(filepath.Join(p, "partition")); err == nil {
			t.parts = append(t.parts, fmt.Sprintf("%s %s", e.Name(), human(readInt(filepath.Join(p, "size"))*512)))
			devs[readString(filepath.Join(p, "dev"))] = true
			holders(p, devs)
		}
	}
	holders(sys, devs)

	mounts, err := readMounts()
	if err != nil {
		return t, fmt.Errorf("flash: %w", err)
	}
	for _, m := range mounts {
		if !systemMount(m.point) {
			continue
		}
		for _, d := range diskOf(m.dev) {
			if d == t.name {
				return t, fmt.Errorf("flash: %s %w (%s is mounted on %s)", path, ErrSystemDisk, m.source, m.point)
			}
		}
	}
	for _, m := range mounts {
		if devs[m.dev] {
			return t, fmt.Errorf("flash: %s %w: %s is mounted on %s; unmount it first", path, ErrMounted, m.source, m.point)
		}
	}
	// An exclusive open fails while anything (a mount, a device mapper
	// table) holds the disk.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		return t, fmt.Errorf("flash: %s %w: %v", path, ErrMounted, err)
	}
	f.Close()
	if readString(filepath.Join(sys, "removable")) != "1" && !strings.HasPrefix(t.name, "mmcblk") && !force {
		return t, fmt.Errorf("flash: %s (%s) %w", path, t.model, ErrNotRemovable)
	}
	return t, nil
}

// holders adds the devices stacked on a block device (device mapper,
// RAID) to devs, recursively.
func holders(sys string, devs map[string]bool) {
	es, _ := os.ReadDir(filepath.Join(sys, "holders"))
	for _, e := range es {
		p, err := filepath.EvalSymlinks(filepath.Join(sys, "holders", e.Name()))
		if err != nil {
			continue
		}
		devs[readString(filepath.Join(p, "dev"))] = true
		holders(p, devs)
	}
}

// diskOf returns the disks under block device maj:min: its own disk for a
// partition, the disks under a device-mapper or RAID device.
func diskOf(dev string) []string {
	sys, err := filepath.EvalSymlinks("/sys/dev/block/" + dev)
	if err != nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		return []string{filepath.Base(filepath.Dir(sys))}
	}
	es, _ := os.ReadDir(filepath.Join(sys, "slaves"))
	if len(es) == 0 {
		return []string{filepath.Base(sys)}
	}
	var disks []string
	for _, e := range es {
		p, err := filepath.EvalSymlinks(filepath.Join(sys, "slaves", e.Name()))
		if err == nil {
			disks = append(disks, diskOf(readString(filepath.Join(p, "dev")))...)
		}
	}
	return disks
}

// systemMount says whether a mount point is part of the running system.
func systemMount(p string) bool {
	switch p {
	case "/", "/boot", "/boot/efi", "/boot/firmware", "/usr", "/var":
		return true
	}
	return false
}

type mountEntry struct{ dev, point, source string }

// readMounts reads /proc/self/mountinfo.
func readMounts() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var ms []mountEntry
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		// id parent maj:min root point options [optional...] - type source super
		i := slices.Index(f, "-")
		if len(f) < 5 || i < 0 || i+2 >= len(f) {
			continue
		}
		ms = append(ms, mountEntry{dev: f[2], point: unescapeMount(f[4]), source: f[i+2]})
	}
	return ms, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readString(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

func readInt(p string) int64 {
	n, _ := strconv.ParseInt(readString(p), 10, 64)
	return n
}

// confirm asks whether to overwrite target.
func confirm(in io.Reader, out io.Writer, target string) error {
	fmt.Fprintf(out, "flash: everything on %s will be lost. Write? [y/N] ", target)
	if in == nil {
		fmt.Fprintln(out)
		return fmt.Errorf("flash: %w: no answer (use --yes)", ErrDeclined)
	}
	line, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("flash: %w: nothing written", ErrDeclined)
}

// progress prints a line at every tenth of total.
type progress struct {
	out   io.Writer
	verb  string
	total int64
	done  int64
	shown int64
}

func (p *progress) add(n int) {
	p.done += int64(n)
	if p.total == 0 {
		return
	}
	if tenth := p.done * 10 / p.total; tenth > p.shown {
		p.shown = tenth
		fmt.Fprintf(p.out, "flash: %s %d%% (%s of %s)\n", p.verb, tenth*10, human(p.done), human(p.total))
	}
}

// writeImage copies the image onto the target and syncs it; it returns
// the image's sha256.
func writeImage(ctx context.Context, img io.Reader, size int64, target string, dev bool, out io.Writer) (sum []byte, err error) {
	flags := os.O_WRONLY | unix.O_EXCL
	if !dev {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(target, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("flash: opening %s: %w", target, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("flash: %s: %w", target, cerr)
		}
	}()
	if !dev {
		// A file is written sparse: blocks of zeros are skipped.
		if err := f.Truncate(size); err != nil {
			return nil, fmt.Errorf("flash: %w", err)
		}
	}
	h := sha256.New()
	p := &progress{out: out, verb: "written", total: size}
	buf := make([]byte, 4<<20)
	zero := make([]byte, len(buf))
	for at := int64(0); at < size; {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("flash: stopped after %s of %s: %w", human(at), human(size), err)
		}
		n, err := io.ReadFull(img, buf[:min(int64(len(buf)), size-at)])
		if err != nil {
			return nil, fmt.Errorf("flash: reading the image: %w", err)
		}
		h.Write(buf[:n])
		if dev || !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := f.WriteAt(buf[:n], at); err != nil {
				return nil, fmt.Errorf("flash: writing %s at %d: %w", target, at, err)
			}
		}
		at += int64(n)
		p.add(n)
	}
	fmt.Fprintf(out, "flash: syncing %s\n", target)
	if err := syncTarget(f, dev); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// syncTarget flushes what was written to the device and drops the kernel's
// cached copy (BLKFLSBUF), so that reading back reads the card.
func syncTarget(f *os.File, dev bool) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("flash: sync %s: %w", f.Name(), err)
	}
	if dev {
		if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
			return fmt.Errorf("flash: BLKFLSBUF %s: %w", f.Name(), err)
		}
	}
	return nil
}

// verify reads size bytes of target back and compares their sha256.
func verify(ctx context.Context, target string, size int64, want []byte, out io.Writer) error {
	f, err := os.Open(target)
	if err != nil {
		return fmt.Errorf("flash: verify: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	p := &progress{out: out, verb: "verified", total: size}
	buf := make([]byte, 4<<20)
	for at := int64(0); at < size; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("flash: verify: %w", err)
		}
		n, err := io.ReadFull(f, buf[:min(int64(len(buf)), size-at)])
		if err != nil {
			return fmt.Errorf("flash: verify: reading %s at %d: %w", target, at, err)
		}
		h.Write(buf[:n])
		at += int64(n)
		p.add(n)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("flash: verify: %s reads back with sha256 %x, the image has %x: the card is faulty or was removed", target, got, want)
	}
	return nil
}

// writeSeed writes a fresh random seed onto the card's boot partition.
func writeSeed(target string, bootStart int64, r io.Reader, dev bool) error {
	seed := make([]byte, bootseed.SeedBytes)
	if _, err := io.ReadFull(r, seed); err != nil {
		return fmt.Errorf("flash: random seed: %w", err)
	}
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("flash: random seed: %w", err)
	}
	defer f.Close()
	if _, err := bootseed.Replace(f, bootStart, seed); err != nil {
		return fmt.Errorf("flash: random seed: %w", err)
	}
	if err := syncTarget(f, dev); err != nil {
		return err
	}
	if dev {
		// Have the kernel read the new partition table (best effort:
		// the card is about to be removed anyway).
		unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
	}
	return f.Close()
}

// human formats a byte count.
func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
