package appliance

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nymote/nymote/internal/bootseed"
)

// seedEntropy gets the kernel's random pool ready before anything relies
// on it and, on a card with a random seed file (nymote.seed=DEVICE, the
// FAT boot partition; see package internal/bootseed), replaces the seed
// that U-Boot handed to the kernel for this boot, so that it is never used
// twice:
//
//  1. the seed on the card is mixed into the pool (not credited: U-Boot
//     already credited it through /chosen/rng-seed; on a direct kernel
//     boot it only adds to what the kernel gathers);
//  2. if the pool is ready, a fresh seed from getrandom replaces it at
//     once, synced to the card;
//  3. if not, the old seed is erased first (synced), then the pool is
//     waited for, then a fresh seed is written.
//
// It returns how long it waited for the pool (the boot timeline's
// "entropy"; the rest of its time is the seed's refresh).
func seedEntropy(dev string, say func(string, ...any)) (waited time.Duration) {
	if dev == "" {
		return waitEntropy(say)
	}
	if !waitFor(dev, 3*time.Second) {
		say("random seed: no boot partition %s; the next boot waits for entropy too", dev)
		return waitEntropy(say)
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		say("random seed: %v", err)
		return waitEntropy(say)
	}
	defer f.Close()
	replace := func(seed []byte) ([]byte, error) {
		old, err := bootseed.Replace(f, 0, seed)
		if errors.Is(err, bootseed.ErrMalformed) {
			say("random seed: the seed file on %s was damaged (%v); it is replaced", dev, err)
			err = nil
		}
		if err == nil {
			err = f.Sync()
		}
		return old, err
	}
	fresh := func() ([]byte, error) {
		b := make([]byte, bootseed.SeedBytes)
		_, err := unix.Getrandom(b, 0)
		return b, err
	}
	if !poolReady() {
		// Erase the seed before waiting: if the pool never gets ready
		// (or the power goes), the next boot does not reuse it.
		old, err := replace(nil)
		if err != nil {
			say("random seed: erasing the seed on %s: %v (the next boot may reuse it)", dev, err)
		}
		mix(old)
		waited = waitEntropy(say)
		if !poolReady() {
			say("random seed: the pool is not ready; no new seed written")
			return waited
		}
	}
	seed, err := fresh()
	if err != nil {
		say("random seed: getrandom: %v", err)
		return waited
	}
	old, err := replace(seed)
	if err != nil {
		say("random seed: writing a new seed on %s: %v (the next boot may reuse the old one)", dev, err)
		return waited
	}
	mix(old)
	say("random seed on %s replaced for the next boot", dev)
	return waited
}

// poolReady says whether getrandom would not block.
func poolReady() bool {
	_, err := unix.Getrandom(make([]byte, 1), unix.GRND_NONBLOCK)
	return err != unix.EAGAIN
}

// mix writes a seed into the kernel's pool without crediting it.
func mix(seed []byte) {
	if seed == nil {
		return
	}
	if err := os.WriteFile("/dev/urandom", seed, 0); err != nil {
		fmt.Fprintf(os.Stderr, "nymote: random seed: mixing into /dev/urandom: %v\n", err)
	}
}
