package disk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDisk(t *testing.T) {
	if _, err := LookTool("mkfs.ext4"); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "store.git", "objects"), 0o755)
	os.WriteFile(filepath.Join(src, "store.git", "HEAD"), []byte("ref: refs/heads/main\n"), 0o644)
	os.WriteFile(filepath.Join(src, "note"), []byte("hello"), 0o644)
	img := filepath.Join(t.TempDir(), "data.img")
	if err := Create(ctx, src, img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if err := Create(ctx, src, img, 32<<20); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("creating over an existing disk: got %v, want an error", err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := Export(ctx, img, out); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"store.git/HEAD": "ref: refs/heads/main\n", "note": "hello"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: got %q, %v; want %q", name, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "lost+found")); err == nil {
		t.Error("exported lost+found")
	}
	if err := Export(ctx, img, out); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("exporting into a non-empty folder: got %v", err)
	}

	bad := filepath.Join(t.TempDir(), "bad.img")
	os.WriteFile(bad, bytes.Repeat([]byte("garbage!"), 1<<17), 0o644)
	if err := Export(ctx, bad, t.TempDir()+"/x"); !errors.Is(err, ErrBadDisk) {
		t.Errorf("exporting garbage: got %v, want ErrBadDisk", err)
	}
	if err := Export(ctx, filepath.Join(t.TempDir(), "missing.img"), t.TempDir()+"/x"); err == nil {
		t.Error("exporting a missing disk succeeded")
	}
	if err := Create(ctx, src, filepath.Join(t.TempDir(), "tiny.img"), 1<<20); err == nil {
		t.Error("created a 1 MiB disk")
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"1G", 1 << 30}, {"512M", 512 << 20}, {"512MiB", 512 << 20}, {"4096", 4096}, {"2g", 2 << 30}, {"x", 0}, {"-1G", 0}} {
		got, err := ParseSize(tc.in)
		if (err != nil) != (tc.want == 0) || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
