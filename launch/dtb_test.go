package launch

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/u-root/u-root/pkg/dt"

	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/kernel"
)

// TestSeedDeviceTree seeds the cubieboard's device tree twice: both copies
// read back with the board's nodes and a 64-byte /chosen/rng-seed, and the
// seeds differ.
func TestSeedDeviceTree(t *testing.T) {
	if testing.Short() {
		t.Skip("fetching kernels in -short mode")
	}
	b, _ := boards.Get("cubieboard")
	src, _ := kernel.Lookup(b.Kernel)
	k, err := kernel.Fetch(context.Background(), src, kernel.FetchOptions{})
	if err != nil {
		t.Skipf("no armmp kernel here: %v", err)
	}
	orig, err := dt.ReadFile(k.DTBPath(b.DeviceTree))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var seeds [][]byte
	for i := 0; i < 2; i++ {
		dst := filepath.Join(dir, "seeded.dtb")
		if err := SeedDeviceTree(k.DTBPath(b.DeviceTree), dst); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(dst)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("seeded device tree has mode %v, want 0600 (it holds a secret)", fi.Mode().Perm())
		}
		tree, err := dt.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		chosen, ok := tree.RootNode.LookupChildByName("chosen")
		if !ok {
			t.Fatal("no /chosen")
		}
		p, ok := chosen.LookProperty("rng-seed")
		if !ok || len(p.Value) != rngSeedSize {
			t.Fatalf("rng-seed: %v", p)
		}
		seeds = append(seeds, p.Value)
		var n, m int
		orig.RootNode.Walk(func(*dt.Node) error { n++; return nil })
		tree.RootNode.Walk(func(*dt.Node) error { m++; return nil })
		if n != m {
			t.Errorf("got %d nodes, the original has %d", m, n)
		}
	}
	if bytes.Equal(seeds[0], seeds[1]) {
		t.Error("two seeds are equal")
	}
}
