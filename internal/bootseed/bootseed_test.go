package bootseed

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/internal/fat"
)

func TestFormatParse(t *testing.T) {
	seed := make([]byte, SeedBytes)
	for i := range seed {
		seed[i] = byte(i * 7)
	}
	f, err := Format(seed)
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != FileSize {
		t.Errorf("Format: got %d bytes, want %d", len(f), FileSize)
	}
	if !strings.HasPrefix(string(f), "nymote_seed=[00 07 0e ") {
		t.Errorf("Format: got %q", f[:30])
	}
	got, err := Parse(f)
	if err != nil || !bytes.Equal(got, seed) {
		t.Errorf("Parse(Format(seed)): got %x, %v", got, err)
	}
	if got, err := Parse(Empty()); got != nil || err != nil {
		t.Errorf("Parse(Empty()): got %x, %v; want nil, nil", got, err)
	}
	if _, err := Format(seed[:8]); err == nil {
		t.Error("Format of a short seed: no error")
	}
	for _, bad := range []string{"", "other=1\n", "nymote_seed=[00 01]\n", "nymote_seed=[zz]\n", "nymote_seed=00\n"} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q): got %v, want ErrMalformed", bad, err)
		}
	}
}

func TestReplace(t *testing.T) {
	img := filepath.Join(t.TempDir(), "boot.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const off = 1 << 20
	if err := fat.Write(f, off, fat.Options{Size: 8 << 20}, []fat.File{{Name: "boot.scr", Data: []byte("x")}, {Name: FileName, Data: Empty()}}); err != nil {
		t.Fatal(err)
	}
	s1 := bytes.Repeat([]byte{1}, SeedBytes)
	s2 := bytes.Repeat([]byte{2}, SeedBytes)
	if old, err := Replace(f, off, s1); err != nil || old != nil {
		t.Fatalf("first Replace: got %x, %v; want nil, nil", old, err)
	}
	if old, err := Replace(f, off, s2); err != nil || !bytes.Equal(old, s1) {
		t.Fatalf("second Replace: got %x, %v; want %x", old, err, s1)
	}
	if old, err := Replace(f, off, nil); err != nil || !bytes.Equal(old, s2) {
		t.Fatalf("third Replace: got %x, %v; want %x", old, err, s2)
	}
	if _, err := Replace(f, 0, s1); err == nil {
		t.Error("Replace at the wrong offset: no error")
	}
}
