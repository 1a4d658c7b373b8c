package appliance

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/internal/bootseed"
	"github.com/nymote/nymote/internal/fat"
)

// TestSeedEntropy runs the boot's seed refresh on a boot partition image
// (a file stands in for the card's partition): the seed is replaced by a
// fresh one, and a card without a seed gets one.
func TestSeedEntropy(t *testing.T) {
	old := bytes.Repeat([]byte{7}, bootseed.SeedBytes)
	withSeed, err := bootseed.Format(old)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{"with a seed", withSeed},
		{"without a seed", bootseed.Empty()},
		{"damaged", bytes.Repeat([]byte("x"), bootseed.FileSize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			part := filepath.Join(t.TempDir(), "boot.img")
			f, err := os.Create(part)
			if err != nil {
				t.Fatal(err)
			}
			err = fat.Write(f, 0, fat.Options{Size: 8 << 20}, []fat.File{{Name: bootseed.FileName, Data: tc.file}})
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			var console strings.Builder
			seedEntropy(part, func(format string, args ...any) { fmt.Fprintf(&console, format+"\n", args...) })
			f, _ = os.Open(part)
			defer f.Close()
			at, _, err := fat.Locate(f, 0, bootseed.FileName)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, bootseed.FileSize)
			f.ReadAt(b, at)
			seed, err := bootseed.Parse(b)
			if err != nil || seed == nil || bytes.Equal(seed, old) {
				t.Errorf("seed after the refresh: got %x, %v; want a fresh one", seed, err)
			}
			if !strings.Contains(console.String(), "replaced for the next boot") {
				t.Errorf("console: got %q", console.String())
			}
		})
	}
	t.Run("no device", func(t *testing.T) {
		var console strings.Builder
		seedEntropy(filepath.Join(t.TempDir(), "nothere"), func(format string, args ...any) { fmt.Fprintf(&console, format+"\n", args...) })
		if !strings.Contains(console.String(), "no boot partition") {
			t.Errorf("console: got %q", console.String())
		}
	})
}
