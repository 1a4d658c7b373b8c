package appliance

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nymote/nymote/internal/ext4label"
)

// dataLabel is the ext4 label of a data disk (nymote disk create writes
// it).
const dataLabel = "nymote-data"

// codeLabel is the ext4 label of an image's code disk (package images),
// which holds the program, never data: it is read-only, and when no data
// disk is attached it may be the board's data device (/dev/vda).
const codeLabel = "nymote-code"

// findDataDisk returns the block device holding the ext4 file system
// labelled nymote-data: a whole disk (virtio-blk, xen-blkfront, an SD card
// under QEMU) or a partition (an SD card's data partition). It scans
// /sys/class/block until one appears, or until fallback exists and no
// device has the label, or until wait has passed; then it returns
// fallback (the board's data device, nymote.data) and whether it exists.
// A fallback that is the image's code disk is not there.
func findDataDisk(fallback string, wait time.Duration) (string, bool) {
	deadline := time.Now().Add(wait)
	for {
		fallbackThere := exists(fallback) && ext4label.Read(fallback) != codeLabel
		if dev := labelledDisk(dataLabel); dev != "" {
			return dev, true
		}
		if fallbackThere {
			return fallback, true
		}
		if time.Now().After(deadline) {
			return fallback, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// labelledDisk returns the first block device (by name) whose ext4
// superblock has label, or "".
func labelledDisk(label string) string {
	names, _ := os.ReadDir("/sys/class/block")
	var devs []string
	for _, n := range names {
		name := n.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "zram") {
			continue
		}
		devs = append(devs, filepath.Join("/dev", name))
	}
	sort.Strings(devs)
	for _, dev := range devs {
		if ext4label.Read(dev) == label {
			return dev
		}
	}
	return ""
}
