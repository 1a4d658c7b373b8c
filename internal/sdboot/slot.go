package sdboot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/nymote/nymote/internal/fat"
	"github.com/nymote/nymote/update"
)

// SyncDevice is a device that can be flushed to the card (an *os.File).
type SyncDevice interface {
	Device
	Sync() error
}

// slotVolumeID is the FAT volume serial of slot partitions (fixed: the
// same image gives the same slot bytes).
const slotVolumeID = 0x6e796d60

// Label is slot s's FAT volume label.
func Label(s string) string { return "NYMOTE-" + strings.ToUpper(s) }

// Info is what a slot's nymote.txt says.
type Info struct {
	App, Board, InitrdSHA256 string
	// Version is the image's version (update.Version) when an update
	// wrote the slot; "" for the slot a card was flashed with.
	Version string
	// DataFormat is the data format the image writes (its manifest's
	// data_format; app.DataFormat); 0 when the slot does not say (an
	// image from before formats: format 1).
	DataFormat int
}

func (i Info) bytes() []byte {
	s := fmt.Sprintf("app=%s\nboard=%s\ninitrd_sha256=%s\n", i.App, i.Board, i.InitrdSHA256)
	if i.DataFormat > 0 {
		s += fmt.Sprintf("data_format=%d\n", i.DataFormat)
	}
	if i.Version != "" {
		s += "version=" + i.Version + "\n"
	}
	return []byte(s)
}

// ParseInfo reads a slot's nymote.txt.
func ParseInfo(b []byte) Info {
	var i Info
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, "=")
		switch k {
		case "app":
			i.App = v
		case "board":
			i.Board = v
		case "initrd_sha256":
			i.InitrdSHA256 = v
		case "version":
			i.Version = v
		case "data_format":
			i.DataFormat, _ = strconv.Atoi(v)
		}
	}
	return i
}

// String names the image in a slot for status lines.
func (i Info) String() string {
	if i.App == "" {
		return "empty"
	}
	h := i.InitrdSHA256
	if len(h) > 12 {
		h = h[:12]
	}
	v := i.Version
	if v == "" {
		v = "as flashed"
	}
	return fmt.Sprintf("%s for %s, %s, initramfs %s", i.App, i.Board, v, h)
}

// SlotFiles returns the files of a slot partition: the kernel, the device
// tree dtb, the initramfs and the slot script (from files, by name), and
// nymote.txt from info (its initramfs hash computed here).
func SlotFiles(files map[string][]byte, dtb string, info Info) ([]fat.File, error) {
	var out []fat.File
	for _, n := range []string{KernelFile, dtb, InitrdFile, SlotScriptFile} {
		b, ok := files[n]
		if !ok || len(b) == 0 {
			return nil, fmt.Errorf("sdboot: the image has no %s for an SD card slot", n)
		}
		out = append(out, fat.File{Name: n, Data: b})
	}
	sum := sha256.Sum256(files[InitrdFile])
	info.InitrdSHA256 = hex.EncodeToString(sum[:])
	return append(out, fat.File{Name: InfoFile, Data: info.bytes()}), nil
}

// ImageSlotFiles returns the slot files of a verified image (an SD card
// board's: it has the kernel, one device tree, the initramfs and
// nymote.scr).
func ImageSlotFiles(im *update.Image) ([]fat.File, error) {
	files := map[string][]byte{}
	var dtbs []string
	for _, f := range im.Files {
		files[f.Name] = f.Data
		if strings.HasSuffix(f.Name, ".dtb") {
			dtbs = append(dtbs, f.Name)
		}
	}
	sort.Strings(dtbs)
	if len(dtbs) != 1 {
		return nil, fmt.Errorf("sdboot: image of %s for %s has %d device trees (%s); an SD card slot takes one", im.Parsed.App, im.Parsed.Board, len(dtbs), strings.Join(dtbs, ", "))
	}
	format := 1
	if im.Parsed.DataFormat != nil {
		format = im.Parsed.DataFormat.Current()
	}
	return SlotFiles(files, dtbs[0], Info{App: im.Parsed.App, Board: im.Parsed.Board, Version: im.Version(), DataFormat: format})
}

// WriteSlot lays out slot s's FAT file system holding files in the
// partition at off of w, size bytes long; hidden is the partition's first
// sector on the card.
func WriteSlot(w Device, off, size int64, hidden uint32, s string, files []fat.File) error {
	return fat.Write(w, off, fat.Options{Size: size, Label: Label(s), VolumeID: slotVolumeID, HiddenSectors: hidden}, files)
}

// ReadInfo reads the nymote.txt of the slot partition at off of r; an
// empty Info when the slot holds no image.
func ReadInfo(r Device, off int64) Info {
	at, size, err := fat.Locate(r, off, InfoFile)
	if err != nil || size > 4096 {
		return Info{}
	}
	b := make([]byte, size)
	if _, err := r.ReadAt(b, at); err != nil {
		return Info{}
	}
	return ParseInfo(b)
}

// Card is a card's boot partition and one slot partition, as the running
// appliance (or a tool) opened them.
type Card struct {
	// Boot is the boot partition (at offset BootOff).
	Boot    SyncDevice
	BootOff int64
}

// Install writes files into the slot partition slot (dev at off, size
// bytes, first sector hidden) and marks it next, so that the next boot
// test-boots it. booted is the running slot: a running test boot (the
// state has it as next) is refused with ErrTestBoot, and slot must be the
// other one. Order, for power cuts: a pending next slot is cleared first
// (synced), then the slot is written (synced), then it is marked next
// (synced): a cut before the last step leaves the committed slot booting.
func (c Card) Install(booted, slot string, dev SyncDevice, off, size int64, hidden uint32, files []fat.File) error {
	if slot == booted {
		return fmt.Errorf("sdboot: slot %s is the running one", slot)
	}
	st, err := ReadState(c.Boot, c.BootOff)
	if err != nil {
		return err
	}
	if st.Committed != booted {
		return fmt.Errorf("sdboot: %w (slot %s runs, slot %s is committed)", ErrTestBoot, booted, st.Committed)
	}
	if st.Next != "" || st.Tried != "" {
		if err := c.set(State{Committed: st.Committed}); err != nil {
			return err
		}
	}
	if err := WriteSlot(dev, off, size, hidden, slot, files); err != nil {
		return err
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("sdboot: slot %s: %w", slot, err)
	}
	return c.set(State{Committed: st.Committed, Next: slot})
}

// Commit makes slot the committed one (after its good test boot); it
// reports whether it changed anything.
func (c Card) Commit(slot string) (bool, error) {
	st, err := ReadState(c.Boot, c.BootOff)
	if err != nil {
		return false, err
	}
	if st.Committed == slot && st.Next == "" && st.Tried == "" {
		return false, nil
	}
	return true, c.set(State{Committed: slot})
}

// Rollback makes the other slot the committed one (by hand), if it holds
// an image per has; a pending next slot is dropped. It returns the new
// committed slot.
func (c Card) Rollback(has func(slot string) bool) (string, error) {
	st, err := ReadState(c.Boot, c.BootOff)
	if err != nil {
		return "", err
	}
	to := Other(st.Committed)
	if !has(to) {
		return "", fmt.Errorf("sdboot: slot %s holds no image: nothing to roll back to", to)
	}
	return to, c.set(State{Committed: to})
}

func (c Card) set(s State) error {
	if err := SetState(c.Boot, c.BootOff, s); err != nil {
		return err
	}
	if err := c.Boot.Sync(); err != nil {
		return fmt.Errorf("sdboot: %s: %w", EnvFile, err)
	}
	return nil
}
