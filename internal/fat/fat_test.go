package fat

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func need(t *testing.T, prog, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(prog); err != nil {
		t.Skipf("%s not installed: apt-get install %s", prog, pkg)
	}
}

var testFiles = []File{
	{Name: "zImage", Data: bytes.Repeat([]byte("kernel"), 100000)},
	{Name: "sun4i-a10-cubieboard.dtb", Data: []byte("dtb")},
	{Name: "boot.scr", Data: []byte("script")},
	{Name: "seed.txt", Data: bytes.Repeat([]byte{'\n'}, 512)},
	{Name: "EMPTY", Data: nil},
	{Name: "sun7i-a20-cubieboard2.dtb", Data: []byte("dtb2")},
}

func writeImage(t *testing.T, size int64, files []File) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fat.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := Write(f, 0, Options{Size: size, Label: "NYMOTE-BOOT", VolumeID: 0x4e594d54}, files); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestWriteReadBack writes a file system and reads it with fsck.fat and
// mtools.
func TestWriteReadBack(t *testing.T) {
	need(t, "fsck.fat", "dosfstools")
	need(t, "mtype", "mtools")
	for _, size := range []int64{8 << 20, 64 << 20, 512 << 20} {
		img := writeImage(t, size, testFiles)
		if out, err := exec.Command("fsck.fat", "-n", "-v", img).CombinedOutput(); err != nil {
			t.Fatalf("size %d: fsck.fat -n: %v\n%s", size, err, out)
		}
		out, err := exec.Command("mdir", "-i", img, "-b", "::").CombinedOutput()
		if err != nil {
			t.Fatalf("mdir: %v\n%s", err, out)
		}
		if lbl, _ := exec.Command("mlabel", "-i", img, "-s", "::").Output(); !strings.Contains(string(lbl), "NYMOTE-BOOT") {
			t.Errorf("mlabel shows no volume label NYMOTE-BOOT: %s", lbl)
		}
		for _, f := range testFiles {
			if !strings.Contains(string(out), f.Name) {
				t.Errorf("size %d: mdir lacks %s:\n%s", size, f.Name, out)
			}
			got, err := exec.Command("mtype", "-i", img, "::"+f.Name).Output()
			if err != nil {
				t.Fatalf("mtype %s: %v", f.Name, err)
			}
			if !bytes.Equal(got, f.Data) {
				t.Errorf("size %d: %s: got %d bytes, want %d (%q...)", size, f.Name, len(got), len(f.Data), got[:min(len(got), 20)])
			}
		}
	}
}

func TestLocate(t *testing.T) {
	img := writeImage(t, 16<<20, testFiles)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range []string{"seed.txt", "SEED.TXT", "boot.scr"} {
		at, size, err := Locate(f, 0, name)
		if err != nil {
			t.Fatalf("Locate %s: %v", name, err)
		}
		var want []byte
		for _, tf := range testFiles {
			if strings.EqualFold(tf.Name, name) {
				want = tf.Data
			}
		}
		got := make([]byte, size)
		if _, err := f.ReadAt(got, at); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Locate %s: got %q at %d, want %q", name, got, at, want)
		}
	}
	if _, _, err := Locate(f, 0, "nothere.txt"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Locate nothere.txt: got %v, want ErrNotFound", err)
	}
	if _, _, err := Locate(bytes.NewReader(make([]byte, 4096)), 0, "seed.txt"); err == nil || !strings.Contains(err.Error(), "not a FAT16") {
		t.Errorf("Locate in zeros: got %v, want not a FAT16 file system", err)
	}
	// Overwritten in place, the file reads back changed through mtools.
	at, _, _ := Locate(f, 0, "seed.txt")
	if _, err := f.WriteAt([]byte("changed\n"), at); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("mtype"); err == nil {
		got, err := exec.Command("mtype", "-i", img, "::seed.txt").Output()
		if err != nil || !bytes.HasPrefix(got, []byte("changed\n")) {
			t.Errorf("mtype after overwrite: got %q, %v", got[:min(len(got), 10)], err)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		files []File
		want  string
	}{
		{"too small", Options{Size: 1 << 20}, nil, "between 4 MiB and 2 GiB"},
		{"odd size", Options{Size: 8<<20 + 1}, nil, "multiple of 512"},
		{"bad label", Options{Size: 8 << 20, Label: "lower case"}, nil, "volume label"},
		{"slash", Options{Size: 8 << 20}, []File{{Name: "a/b"}}, "file name"},
		{"twice", Options{Size: 8 << 20}, []File{{Name: "a"}, {Name: "A"}}, "two files"},
		{"too big", Options{Size: 8 << 20}, []File{{Name: "big", Data: make([]byte, 9<<20)}}, "do not fit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(discard{}, 0, tc.opts, tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

type discard struct{}

func (discard) WriteAt(b []byte, off int64) (int, error) { return len(b), nil }

func TestShortNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plain bool
		flags byte
	}{
		{"BOOT.SCR", true, 0},
		{"boot.scr", true, 0x18},
		{"uboot.env", true, 0x18},
		{"zImage", false, 0},
		{"sun4i-a10-cubieboard.dtb", false, 0},
		{"initrd.cpio.zst", false, 0},
	} {
		_, flags, ok := shortName(tc.name)
		if ok != tc.plain || flags != tc.flags {
			t.Errorf("shortName(%q): got %v %#x, want %v %#x", tc.name, ok, flags, tc.plain, tc.flags)
		}
	}
}
