// Package bootseed reads and writes the random seed that Nymote's SD cards
// carry for the next boot: a 512-byte text file, seed.txt, on the card's
// FAT boot partition, holding one U-Boot environment line
//
//	nymote_seed=[0a 1b ...]
//
// padded with newlines. The card's boot.scr imports it (env import -t) and
// sets it as the device tree's /chosen/rng-seed, which the kernel mixes
// into its random pool and credits (random.trust_bootloader, on by default
// in Debian's kernels), so that the pool is ready at once.
//
// Images are built with an empty seed file (Empty): they are reproducible
// and shareable, never secret. nymote flash writes a fresh seed onto each
// card it writes; the appliance replaces the seed early at every boot
// (Replace), so that no seed is knowingly used twice. The file is always
// overwritten in place (its clusters found with fat.Locate), which touches
// no file system metadata.
package bootseed

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nymote/nymote/internal/fat"
)

const (
	// FileName is the seed file's name on the boot partition.
	FileName = "seed.txt"
	// FileSize is the seed file's size; it never changes.
	FileSize = 512
	// SeedBytes is the length of a seed: 512 bits, twice what the
	// kernel needs to initialise its generator.
	SeedBytes = 64
	// Variable is the U-Boot environment variable the file sets.
	Variable = "nymote_seed"
)

// Empty is the seed file of a card that has no seed (as images are built).
func Empty() []byte { return pad([]byte(Variable + "=\n")) }

// Format returns the seed file holding seed (SeedBytes long) as a device
// tree byte string.
func Format(seed []byte) ([]byte, error) {
	if len(seed) != SeedBytes {
		return nil, fmt.Errorf("bootseed: a seed of %d bytes, want %d", len(seed), SeedBytes)
	}
	var b bytes.Buffer
	b.WriteString(Variable + "=[")
	for i, c := range seed {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%02x", c)
	}
	b.WriteString("]\n")
	return pad(b.Bytes()), nil
}

func pad(b []byte) []byte {
	return append(b, bytes.Repeat([]byte{'\n'}, FileSize-len(b))...)
}

// ErrMalformed is wrapped by Parse's error for a file that is not a seed
// file.
var ErrMalformed = errors.New("not a seed file")

// Parse returns the seed in a seed file, or nil if it holds none.
func Parse(file []byte) ([]byte, error) {
	line, _, _ := strings.Cut(string(file), "\n")
	v, ok := strings.CutPrefix(line, Variable+"=")
	if !ok {
		return nil, fmt.Errorf("bootseed: %w: it does not start with %s=", ErrMalformed, Variable)
	}
	if v == "" {
		return nil, nil
	}
	v, ok = strings.CutPrefix(v, "[")
	if v, ok2 := strings.CutSuffix(v, "]"); ok && ok2 {
		seed, err := hex.DecodeString(strings.ReplaceAll(v, " ", ""))
		if err == nil && len(seed) == SeedBytes {
			return seed, nil
		}
	}
	return nil, fmt.Errorf("bootseed: %w: want %s=[%d hex bytes]", ErrMalformed, Variable, SeedBytes)
}

// Device is a block device or card image the seed lives on.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

// Replace reads the seed file of the FAT boot partition at offset off of
// dev, overwrites it in place with a file holding seed (nil: with the empty
// seed file) and returns the seed it held (nil if none). The caller syncs
// dev.
func Replace(dev Device, off int64, seed []byte) (old []byte, err error) {
	at, size, err := fat.Locate(dev, off, FileName)
	if err != nil {
		return nil, fmt.Errorf("bootseed: %w", err)
	}
	if size != FileSize {
		return nil, fmt.Errorf("bootseed: %s is %d bytes, want %d", FileName, size, FileSize)
	}
	cur := make([]byte, FileSize)
	if _, err := dev.ReadAt(cur, at); err != nil {
		return nil, fmt.Errorf("bootseed: reading %s: %w", FileName, err)
	}
	old, perr := Parse(cur)
	file := Empty()
	if seed != nil {
		if file, err = Format(seed); err != nil {
			return nil, err
		}
	}
	if _, err := dev.WriteAt(file, at); err != nil {
		return nil, fmt.Errorf("bootseed: writing %s: %w", FileName, err)
	}
	if perr != nil {
		// Overwritten all the same: a damaged file is replaced by a
		// good one.
		return nil, perr
	}
	return old, nil
}
