package appliance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/nymote/nymote/internal/sdboot"
	"github.com/nymote/nymote/update"
)

// sdSlots are an SD card board's image slots as the running appliance
// sees them (package sdboot): the boot partition (nymote.seed) keeps the
// try-once state in uboot.env; the slots are partitions 2 and 3 of the
// same card; boot.scr passes the booted slot as nymote.sdslot.
type sdSlots struct {
	// bootDev is the boot partition's device.
	bootDev string
	// booted is the running slot.
	booted string

	mu sync.Mutex // one writer of the card's state at a time
	// state is the state as the runtime last read or wrote it (at boot:
	// after boot.scr's own change).
	state sdboot.State
}

// testBoot says whether this boot is the test boot of a new image, not
// yet committed.
func (s *sdSlots) testBoot() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.testBootLocked()
}

func (s *sdSlots) testBootLocked() bool {
	return s.booted != s.state.Committed && s.state.Next == s.booted && s.state.Tried == s.booted
}

// committed is the committed slot.
func (s *sdSlots) committed() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.Committed
}

// openSDSlots reads the state of the card's slots.
func openSDSlots(cfg bootConfig, say func(string, ...any)) (*sdSlots, error) {
	if cfg.seed == "" {
		return nil, fmt.Errorf("%s=%s without nymote.seed (the boot partition)", sdboot.CmdlineSlot, cfg.sdSlot)
	}
	if _, err := sdboot.Partition(cfg.sdSlot); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(cfg.seed, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// A power cut while uboot.env was written: U-Boot booted with its
	// built-in environment (slot a); restore the card's, with the
	// running slot committed.
	otherHasImage := false
	n, _ := sdboot.Partition(sdboot.Other(cfg.sdSlot))
	if dev, err := sdboot.PartitionDevice(cfg.seed, n); err == nil {
		if o, err := os.Open(dev); err == nil {
			otherHasImage = sdboot.ReadInfo(o, 0).App != ""
			o.Close()
		}
	}
	if st, err := sdboot.RepairEnv(f, 0, cfg.sdSlot, otherHasImage); err != nil {
		return nil, err
	} else if st != nil {
		if err := f.Sync(); err != nil {
			return nil, err
		}
		what := "committed"
		if st.Next != "" {
			what = "on trial: it commits once good, else the next boot is slot " + st.Committed
		}
		say("%s on %s was damaged (U-Boot booted with its built-in environment): restored from %s, slot %s %s", sdboot.EnvFile, cfg.seed, sdboot.DefaultEnvFile, cfg.sdSlot, what)
	}
	st, err := sdboot.ReadState(f, 0)
	if err != nil {
		return nil, err
	}
	return &sdSlots{bootDev: cfg.seed, booted: cfg.sdSlot, state: st}, nil
}

// describe is the console's line about the slots.
func (s *sdSlots) describe() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.testBootLocked() {
		return fmt.Sprintf("slot %s: test boot of a new image (committed: slot %s); it commits once good", s.booted, s.state.Committed)
	}
	if s.booted != s.state.Committed {
		return fmt.Sprintf("slot %s, not the committed slot %s", s.booted, s.state.Committed)
	}
	return fmt.Sprintf("slot %s (committed)", s.booted)
}

// card opens the boot partition for writing.
func (s *sdSlots) card() (sdboot.Card, *os.File, error) {
	f, err := os.OpenFile(s.bootDev, os.O_RDWR, 0)
	if err != nil {
		return sdboot.Card{}, nil, err
	}
	return sdboot.Card{Boot: f, BootOff: 0}, f, nil
}

// commit commits the running slot (on the good line of its test boot).
func (s *sdSlots) commit() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, f, err := s.card()
	if err != nil {
		return false, err
	}
	defer f.Close()
	changed, err := c.Commit(s.booted)
	if err == nil {
		s.state = sdboot.State{Committed: s.booted}
	}
	return changed, err
}

// install is the update port's sink: it writes a verified image into the
// other slot and marks it next (sdboot.Card.Install).
func (s *sdSlots) install(im *update.Image) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.testBootLocked() {
		return sdboot.ErrTestBoot
	}
	if b, err := os.ReadFile("/etc/nymote/image"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if board, ok := strings.CutPrefix(l, "board="); ok && board != im.Parsed.Board {
				return fmt.Errorf("the image is for %s; this appliance is a %s", im.Parsed.Board, board)
			}
		}
	}
	files, err := sdboot.ImageSlotFiles(im)
	if err != nil {
		return err
	}
	slot := sdboot.Other(s.booted)
	n, _ := sdboot.Partition(slot)
	dev, err := sdboot.PartitionDevice(s.bootDev, n)
	if err != nil {
		return err
	}
	start, size, err := partitionGeometry(dev)
	if err != nil {
		return err
	}
	d, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	c, f, err := s.card()
	if err != nil {
		return err
	}
	defer f.Close()
	if err := c.Install(s.booted, slot, d, 0, size, uint32(start), files); err != nil {
		return err
	}
	s.state = sdboot.State{Committed: s.state.Committed, Next: slot}
	return nil
}

// partitionGeometry reads a partition's first sector and size in bytes
// from sysfs.
func partitionGeometry(dev string) (start, size int64, err error) {
	sys := filepath.Join("/sys/class/block", filepath.Base(dev))
	read := func(name string) (int64, error) {
		b, err := os.ReadFile(filepath.Join(sys, name))
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	if start, err = read("start"); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", dev, err)
	}
	sectors, err := read("size")
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", dev, err)
	}
	if sectors <= 0 {
		return 0, 0, errors.New(dev + ": empty partition")
	}
	return start, sectors * 512, nil
}
