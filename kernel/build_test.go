package kernel

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// needBuildTools skips a test that builds a kernel on a machine without the
// tools (make test-deps installs them).
func needBuildTools(t *testing.T, goarch string) {
	t.Helper()
	if err := CanBuild(goarch); err != nil {
		t.Skipf("no kernel build here: %v", err)
	}
}

// TestAddenda reads the addenda of every build source: each file exists,
// every line is a comment or one option, no option is set twice.
func TestAddenda(t *testing.T) {
	n := 0
	for name, src := range sources {
		if src.Kind != Build {
			continue
		}
		n++
		_, opts, err := readAddenda(src.Addenda)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(opts) < 40 {
			t.Errorf("%s: %d options, want the whole appliance set", name, len(opts))
		}
		if _, err := kernelArch(src.GOARCH); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if src.Package == "" || src.Version == "" || len(src.PackageSHA256) != 64 || src.DebArch != "all" {
			t.Errorf("%s: incomplete pin: %+v", name, src)
		}
	}
	if n == 0 {
		t.Fatal("no build source")
	}
}

func TestAddendaErrors(t *testing.T) {
	fsys := fstest.MapFS{
		"a.config":   {Data: []byte("# ok\nCONFIG_A=y\n\nCONFIG_B=n\n")},
		"bad.config": {Data: []byte("# fine\nCONFIG_C=y\nnot an option\n")},
		"dup.config": {Data: []byte("CONFIG_D=y\nCONFIG_A=m\n")},
	}
	if _, opts, err := readAddendaFS(fsys, []string{"a.config"}); err != nil || len(opts) != 2 {
		t.Fatalf("got %v, %v", opts, err)
	}
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{[]string{"bad.config"}, `kernel/addenda/bad.config:3: want CONFIG_NAME=VALUE or a # comment, got "not an option"`},
		{[]string{"a.config", "dup.config"}, "kernel/addenda/dup.config:2: CONFIG_A=m: set again (first at a.config:2)"},
		{[]string{"missing.config"}, "addendum missing.config"},
	} {
		_, _, err := readAddendaFS(fsys, tc.files)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.files, err, tc.want)
		}
	}
}

// TestCheckConfig: an option that olddefconfig dropped or changed is named
// with its file and line.
func TestCheckConfig(t *testing.T) {
	_, opts, err := readAddendaFS(fstest.MapFS{"x.config": {Data: []byte(
		"CONFIG_A=y\n# why\nCONFIG_B=y\nCONFIG_C=n\nCONFIG_D=n\nCONFIG_N=5\n")}}, []string{"x.config"})
	if err != nil {
		t.Fatal(err)
	}
	good := "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_N=5\n"
	if err := checkConfig([]byte(good), opts); err != nil {
		t.Errorf("good config: %v", err)
	}
	err = checkConfig([]byte("CONFIG_A=y\nCONFIG_C=y\nCONFIG_N=6\n"), opts)
	if err == nil {
		t.Fatal("a config without CONFIG_B passed")
	}
	for _, want := range []string{
		"kernel/addenda/x.config:3: CONFIG_B=y, but the build does not have it",
		"kernel/addenda/x.config:4: CONFIG_C=n, but the build has CONFIG_C=y",
		"kernel/addenda/x.config:6: CONFIG_N=5, but the build has CONFIG_N=6",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "CONFIG_A") || strings.Contains(err.Error(), "CONFIG_D") {
		t.Errorf("error %q names an option that took", err)
	}
}

// TestBuildKey: the cache key follows the package, the addenda and the
// architecture.
func TestBuildKey(t *testing.T) {
	src, _ := Lookup("nymote-amd64")
	k := buildKey(src, "aa", []byte("CONFIG_A=y\n"))
	for _, other := range []string{
		buildKey(src, "ab", []byte("CONFIG_A=y\n")),
		buildKey(src, "aa", []byte("CONFIG_A=n\n")),
		buildKey(Source{GOARCH: "arm64", Addenda: src.Addenda}, "aa", []byte("CONFIG_A=y\n")),
	} {
		if other == k {
			t.Errorf("key %s did not change", k)
		}
	}
	if buildKey(src, "aa", []byte("CONFIG_A=y\n")) != k {
		t.Error("key not stable")
	}
}

// TestBuildPinGone: when the pinned source package has left the archive,
// Fetch takes the archive's current one of the same upstream series (and
// finds the kernel built from it in the cache, here a stand-in), refuses
// another series, and Strict refuses outright; a wrong pinned sha256 is
// refused before anything is built.
func TestBuildPinGone(t *testing.T) {
	if testing.Short() {
		t.Skip("asking apt in -short mode")
	}
	src, _ := Lookup("nymote-amd64")
	ctx := context.Background()
	cur, err := aptShow(ctx, FetchOptions{}, src.Package+":"+src.DebArch)
	if err != nil {
		t.Skipf("apt does not know %s (not a Debian machine?): %v", src.Package, err)
	}
	cache := t.TempDir()
	addenda, _, err := readAddenda(src.Addenda)
	if err != nil {
		t.Fatal(err)
	}
	dir := buildDir(cache, src, cur, buildKey(src, cur.SHA256, addenda))
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, src.Image), []byte("a stand-in kernel"), 0o644)
	os.WriteFile(filepath.Join(dir, "release"), []byte("6.1.999\n"), 0o644)
	os.WriteFile(filepath.Join(dir, cacheMarker), []byte(cur.SHA256+"\n"), 0o644)

	gone := src
	gone.Version = "6.1.1-1"
	if _, err := Fetch(ctx, gone, FetchOptions{CacheDir: cache, Strict: true}); err == nil || !strings.Contains(err.Error(), "no longer in the archive") {
		t.Errorf("strict: got %v, want a refusal", err)
	}
	var progress bytes.Buffer
	k, err := Fetch(ctx, gone, FetchOptions{CacheDir: cache, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if k.Pinned || k.Version != cur.Version || k.PackageSHA256 != cur.SHA256 || k.Release != "6.1.999" || k.ImagePath() != filepath.Join(dir, src.Image) {
		t.Errorf("fallback: got %s %s %s pinned=%v at %s", k.Package, k.Version, k.Release, k.Pinned, k.ImagePath())
	}
	if !strings.Contains(progress.String(), "no longer in the archive") || !strings.Contains(progress.String(), "built from") {
		t.Errorf("progress %q does not say the pin is gone and what was used", progress.String())
	}
	other := src
	other.Version = "5.10.1-1"
	if _, err := Fetch(ctx, other, FetchOptions{CacheDir: cache}); err == nil || !strings.Contains(err.Error(), "another upstream series") {
		t.Errorf("other series: got %v", err)
	} else if strings.Count(err.Error(), "kernel: ") != 1 {
		t.Errorf("other series: %q names the package kernel more than once", err)
	}
	bad := src
	bad.Version, bad.PackageSHA256 = cur.Version, strings.Repeat("0", 64)
	if _, err := Fetch(ctx, bad, FetchOptions{CacheDir: t.TempDir()}); !errors.Is(err, ErrMismatch) {
		t.Errorf("wrong sha256: got %v, want ErrMismatch", err)
	}
}

// TestPruneBuilds keeps the newest finished builds of one source and
// leaves other sources and unfinished folders alone.
func TestPruneBuilds(t *testing.T) {
	cache := t.TempDir()
	mk := func(name string, age time.Duration, finished bool) string {
		d := filepath.Join(cache, name)
		os.MkdirAll(d, 0o755)
		if finished {
			m := filepath.Join(d, cacheMarker)
			os.WriteFile(m, []byte("x\n"), 0o644)
			at := time.Now().Add(-age)
			os.Chtimes(m, at, at)
		}
		return d
	}
	newest := mk("nymote-amd64_v_a", time.Minute, true)
	second := mk("nymote-amd64_v_b", time.Hour, true)
	oldest := mk("nymote-amd64_v_c", 2*time.Hour, true)
	partial := mk("nymote-amd64_v_d", 0, false)
	other := mk("nymote-arm64_v_e", 3*time.Hour, true)
	pruneBuilds(cache, "nymote-amd64", 2)
	for d, want := range map[string]bool{newest: true, second: true, oldest: false, partial: true, other: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(d), err == nil, want)
		}
	}
}
