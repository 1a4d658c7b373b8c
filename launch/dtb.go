package launch

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"

	"github.com/u-root/u-root/pkg/dt"
)

// rngSeedSize is the size of the seed given to the kernel: 64 bytes, as
// QEMU's virt machine gives.
const rngSeedSize = 64

// SeedDeviceTree writes to dst a copy of the device tree src with a fresh
// seed from the host's crypto/rand in /chosen/rng-seed. The kernel mixes
// it into its pool and, with CONFIG_RANDOM_TRUST_BOOTLOADER (Debian's
// default), credits it, so that the appliance does not wait for entropy
// on a machine without an RNG (QEMU's cubieboard). A seed must never be
// used twice: write a new copy for every boot.
func SeedDeviceTree(src, dst string) error {
	tree, err := dt.ReadFile(src)
	if err != nil {
		return fmt.Errorf("launch: device tree %s: %w", src, err)
	}
	seed := make([]byte, rngSeedSize)
	if _, err := rand.Read(seed); err != nil {
		return fmt.Errorf("launch: rng seed: %w", err)
	}
	chosen, ok := tree.RootNode.LookupChildByName("chosen")
	if !ok {
		chosen = dt.NewNode("chosen")
		tree.RootNode.Children = append(tree.RootNode.Children, chosen)
	}
	chosen.UpdateProperty("rng-seed", seed) // adds it when missing
	var b bytes.Buffer
	if _, err := tree.Write(&b); err != nil {
		return fmt.Errorf("launch: device tree %s: %w", src, err)
	}
	if err := os.WriteFile(dst, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	return nil
}
