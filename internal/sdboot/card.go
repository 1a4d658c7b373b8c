package sdboot

import (
	bin "encoding/binary"
	"fmt"
	"os"
)

// CardFile is an SD card, an image file or the card's device in a
// reader, opened by the host tool with its partitions.
type CardFile struct {
	f *os.File
	// parts are the four partitions' offsets and sizes in bytes.
	parts [4][2]int64
}

// OpenCard opens the card at path (read-write when write is set) and
// reads its partition table: it must be a card of this layout (a FAT boot
// partition holding uboot.env, then two slots and the data partition).
func OpenCard(path string, write bool) (*CardFile, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("sdboot: %w", err)
	}
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil || mbr[510] != 0x55 || mbr[511] != 0xAA {
		f.Close()
		return nil, fmt.Errorf("sdboot: %s has no partition table (is it an SD card image of nymote build?)", path)
	}
	c := &CardFile{f: f}
	for i := range c.parts {
		e := mbr[446+16*i:]
		c.parts[i] = [2]int64{int64(bin.LittleEndian.Uint32(e[8:])) * 512, int64(bin.LittleEndian.Uint32(e[12:])) * 512}
	}
	if c.parts[1][1] == 0 || c.parts[2][1] == 0 || c.parts[3][1] == 0 {
		f.Close()
		return nil, fmt.Errorf("sdboot: %s has no A/B slots (partitions 2 and 3): a card written before slots; flash a new image", path)
	}
	if _, _, err := ReadEnv(f, c.parts[0][0]); err != nil {
		f.Close()
		return nil, fmt.Errorf("sdboot: %s: no U-Boot environment on its boot partition: %w", path, err)
	}
	return c, nil
}

// Close closes the card.
func (c *CardFile) Close() error { return c.f.Close() }

// Card returns the card's boot partition for Card's methods.
func (c *CardFile) Card() Card { return Card{Boot: c.f, BootOff: c.parts[0][0]} }

// State reads the try-once state.
func (c *CardFile) State() (State, error) { return ReadState(c.f, c.parts[0][0]) }

// Info reads what slot s holds.
func (c *CardFile) Info(s string) Info {
	n, err := Partition(s)
	if err != nil {
		return Info{}
	}
	return ReadInfo(c.f, c.parts[n-1][0])
}

// DataPartition is the data partition's (partition 4's) offset in bytes.
func (c *CardFile) DataPartition() int64 { return c.parts[3][0] }

// Rollback makes the other slot the committed one (see Card.Rollback).
func (c *CardFile) Rollback() (string, error) {
	return c.Card().Rollback(func(s string) bool { return c.Info(s).App != "" })
}
