package kernel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A build kernel source (Kind Build) is a kernel built on this machine from
// Debian's linux-source package with the options of the addenda folder:
// make tinyconfig, the source's Addenda merged in, make olddefconfig, make
// the image. The source package is fetched and checked as a Debian kernel
// package is (debian.go: apt-get download, the pinned sha256, the same
// fallback when the pin has left the archive), and the built kernel is
// kept in the kernel cache under a key of the package's sha256, the
// addenda's text and the build recipe, so it is built once per machine
// (about 6 minutes on 2 cores) and found again without apt.
//
// The build is reproducible: no build time, user, host or path gets into
// the image (KBUILD_BUILD_TIMESTAMP and friends; the kernel's own
// -fmacro-prefix-map), so the same source package and addenda give the
// same image on any Debian 12 machine with the same compiler.

//go:embed addenda/*.config
var addendaFS embed.FS

// buildRecipe changes whenever the steps below change what they build, so
// that kernels cached by an older recipe are built again.
const buildRecipe = "1"

// buildTools are the programs a kernel build runs (BuildPackages has
// them); libelf.h, which objtool needs on x86-64, comes from libelf-dev.
var buildTools = []string{"gcc", "make", "flex", "bison", "bc", "perl", "xz", "tar"}

// BuildPackages are the Debian packages a kernel build needs (and, to
// build for another architecture, the cross compiler's: see CanBuild).
const BuildPackages = "build-essential flex bison bc libelf-dev xz-utils"

// kernelArch is the ARCH= of the kernel's build for a Go architecture.
func kernelArch(goarch string) (string, error) {
	switch goarch {
	case "amd64":
		return "x86_64", nil
	case "arm64":
		return "arm64", nil
	}
	return "", fmt.Errorf("kernel: no kernel build for GOARCH %s", goarch)
}

// crossPrefix is the CROSS_COMPILE= of a build for goarch on this machine
// ("" for its own architecture) and the Debian package of that compiler.
func crossPrefix(goarch string) (prefix, pkg string) {
	if goarch == runtime.GOARCH {
		return "", ""
	}
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[goarch]
	return triplet + "-", "gcc-" + triplet
}

// CanBuild says what this machine lacks to build a kernel for goarch
// (nil: nothing), and how to install it.
func CanBuild(goarch string) error {
	if _, err := kernelArch(goarch); err != nil {
		return err
	}
	var missing []string
	pkgs := BuildPackages
	for _, t := range buildTools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if _, err := os.Stat("/usr/include/libelf.h"); err != nil {
		missing = append(missing, "libelf.h")
	}
	if prefix, pkg := crossPrefix(goarch); prefix != "" {
		if _, err := exec.LookPath(prefix + "gcc"); err != nil {
			missing = append(missing, prefix+"gcc")
		}
		pkgs += " " + pkg
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s (apt-get install -y %s)", strings.Join(missing, ", "), pkgs)
	}
	return nil
}

// option is one CONFIG_ line of an addendum.
type option struct {
	file  string // addenda/NAME
	line  int
	name  string // CONFIG_FOO
	value string // y, n, 1, "text"
}

func (o option) String() string {
	return fmt.Sprintf("kernel/addenda/%s:%d: %s=%s", o.file, o.line, o.name, o.value)
}

// readAddenda returns the text of the addenda files (concatenated, for the
// build) and their options. Every non-blank line must be a comment or a
// CONFIG_NAME=VALUE option.
func readAddenda(names []string) ([]byte, []option, error) {
	sub, _ := fs.Sub(addendaFS, "addenda")
	return readAddendaFS(sub, names)
}

func readAddendaFS(fsys fs.FS, names []string) ([]byte, []option, error) {
	var all bytes.Buffer
	var opts []option
	seen := map[string]option{}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, nil, fmt.Errorf("kernel: addendum %s: %w", n, err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			name, value, ok := strings.Cut(l, "=")
			o := option{file: n, line: i + 1, name: name, value: value}
			if !ok || !strings.HasPrefix(name, "CONFIG_") || value == "" || strings.ContainsAny(name, " \t") {
				return nil, nil, fmt.Errorf("kernel/addenda/%s:%d: want CONFIG_NAME=VALUE or a # comment, got %q", n, i+1, l)
			}
			if prev, ok := seen[name]; ok {
				return nil, nil, fmt.Errorf("%s: set again (first at %s:%d)", o, prev.file, prev.line)
			}
			seen[name] = o
			opts = append(opts, o)
		}
		all.Write(b)
		all.WriteByte('\n')
	}
	return all.Bytes(), opts, nil
}

// keepBuilds is how many builds of one kernel source the cache keeps (the
// newest): enough to switch between a few versions of the addenda without
// building again each time.
const keepBuilds = 3

// pruneBuilds removes all but the keep newest builds of source name from
// the cache.
func pruneBuilds(cache, name string, keep int) {
	dirs, _ := filepath.Glob(filepath.Join(cache, name+"_*"))
	type build struct {
		dir string
		at  time.Time
	}
	var bs []build
	for _, d := range dirs {
		fi, err := os.Stat(filepath.Join(d, cacheMarker))
		if err != nil {
			continue // not a finished build
		}
		bs = append(bs, build{d, fi.ModTime()})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].at.After(bs[j].at) })
	for i := keep; i < len(bs); i++ {
		os.RemoveAll(bs[i].dir)
	}
}

// checkConfig returns an error naming every addenda option that the final
// .config does not have as asked (olddefconfig drops an option whose
// dependencies are not met, silently).
func checkConfig(config []byte, opts []option) error {
	have := map[string]string{}
	for _, l := range strings.Split(string(config), "\n") {
		if n, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(n, "CONFIG_") {
			have[n] = v
		}
	}
	var bad []string
	for _, o := range opts {
		got, set := have[o.name]
		switch {
		case o.value == "n" && !set:
		case o.value == "n":
			bad = append(bad, fmt.Sprintf("%s, but the build has %s=%s", o, o.name, got))
		case !set:
			bad = append(bad, fmt.Sprintf("%s, but the build does not have it (a dependency not set, or not in this kernel version)", o))
		case got != o.value:
			bad = append(bad, fmt.Sprintf("%s, but the build has %s=%s", o, o.name, got))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("kernel: options of the addenda did not take:\n\t%s", strings.Join(bad, "\n\t"))
	}
	return nil
}

// buildKey is the cache key of a built kernel: the source package's
// sha256, the addenda's names and text, the architecture and the recipe.
func buildKey(src Source, debSHA256 string, addenda []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "recipe %s\narch %s\npackage %s\naddenda %s\n", buildRecipe, src.GOARCH, debSHA256, strings.Join(src.Addenda, " "))
	h.Write(addenda)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func buildDir(cache string, src Source, d debInfo, key string) string {
	return filepath.Join(cache, src.Name+"_"+d.Version+"_"+key)
}

// cachedBuild returns the kernel built from package d, if the cache has it.
func cachedBuild(cache string, src Source, d debInfo, key string, pinned bool) (*Kernel, bool) {
	dir := buildDir(cache, src, d, key)
	k := &Kernel{Source: src, Dir: dir, Pinned: pinned}
	k.Package, k.Version, k.PackageSHA256 = d.Package, d.Version, d.SHA256
	b, err := os.ReadFile(filepath.Join(dir, cacheMarker))
	if err != nil || strings.TrimSpace(string(b)) != d.SHA256 {
		return k, false
	}
	rel, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return k, false
	}
	k.Release = strings.TrimSpace(string(rel))
	if _, err := os.Stat(k.ImagePath()); err != nil {
		return k, false
	}
	return k, true
}

// fetchBuild finds the built kernel of src in the cache, or fetches its
// source package and builds it (see the comment above).
func fetchBuild(ctx context.Context, src Source, opts FetchOptions) (*Kernel, error) {
	cache, err := cacheDir(opts)
	if err != nil {
		return nil, err
	}
	addenda, options, err := readAddenda(src.Addenda)
	if err != nil {
		return nil, err
	}
	arch, err := kernelArch(src.GOARCH)
	if err != nil {
		return nil, err
	}
	pin := debInfo{Package: src.Package, Version: src.Version, Arch: src.DebArch, SHA256: src.PackageSHA256}
	if k, ok := cachedBuild(cache, src, pin, buildKey(src, pin.SHA256, addenda), true); ok {
		return k, nil
	}
	info, pinned, err := resolvePin(ctx, opts, src, pin, cache, func() (debInfo, error) {
		cur, err := aptShow(ctx, opts, src.Package+":"+src.DebArch)
		if err != nil {
			return cur, fmt.Errorf("the pinned source package %s is gone and so is %s: %w", pin.spec(), src.Package, err)
		}
		if upstream(cur.Version) != upstream(src.Version) {
			return cur, fmt.Errorf("the pinned source package %s is gone and the archive now has %s, another upstream series: update the pin in package kernel", pin.spec(), cur.spec())
		}
		return cur, nil
	})
	if err != nil {
		return nil, err
	}
	key := buildKey(src, info.SHA256, addenda)
	if k, ok := cachedBuild(cache, src, info, key, pinned); ok {
		return k, nil
	}
	if err := CanBuild(src.GOARCH); err != nil {
		return nil, fmt.Errorf("kernel: %s is built here from %s: %w", src.Name, info.spec(), err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	// One build at a time per kernel: a second process (a parallel test,
	// another nymote build) waits for the first and takes its kernel.
	unlock, err := lockFile(ctx, filepath.Join(cache, "."+src.Name+"_"+key+".lock"), opts.Progress, src.Name)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	defer unlock()
	if k, ok := cachedBuild(cache, src, info, key, pinned); ok {
		return k, nil
	}
	tmp, err := os.MkdirTemp(cache, ".build-")
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	defer os.RemoveAll(tmp)
	deb, err := downloadDeb(ctx, opts, tmp, src, info)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	release, err := build(ctx, opts.Progress, src, arch, deb, filepath.Join(tmp, "src"), out, addenda, options)
	if err != nil {
		return nil, fmt.Errorf("kernel: building %s from %s: %w", src.Name, info.spec(), err)
	}
	if err := os.WriteFile(filepath.Join(out, "release"), []byte(release+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, cacheMarker), []byte(info.SHA256+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	dir := buildDir(cache, src, info, key)
	os.RemoveAll(dir)
	if err := os.Rename(out, dir); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	pruneBuilds(cache, src.Name, keepBuilds)
	k, ok := cachedBuild(cache, src, info, key, pinned)
	if !ok {
		return nil, fmt.Errorf("kernel: %s: the build left no kernel image in %s", src.Name, dir)
	}
	return k, nil
}

// lockFile takes an exclusive flock on path, saying on progress when it
// has to wait for another process's build.
func lockFile(ctx context.Context, path string, progress io.Writer, name string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return func() { f.Close() }, nil
	}
	if progress != nil {
		fmt.Fprintf(progress, "kernel: waiting for another process building %s\n", name)
	}
	done := make(chan error, 1)
	go func() { done <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, err
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		f.Close() // the waiting flock returns EBADF, or the lock with the file
		return nil, ctx.Err()
	}
}

// build unpacks the kernel source of the linux-source package deb into
// work, configures it with the addenda, builds the image and copies it
// (as src.Image) and its .config (as config) into out. It returns the
// kernel release.
func build(ctx context.Context, progress io.Writer, src Source, arch, deb, work, out string, addenda []byte, options []option) (string, error) {
	say := func(format string, args ...any) {
		if progress != nil {
			fmt.Fprintf(progress, "kernel: "+format+"\n", args...)
		}
	}
	say("unpacking %s", filepath.Base(deb))
	tarball, err := extractSourceTarball(deb, work)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "tar", "-xJf", tarball, "-C", work)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("tar -xJf %s: %v: %s", filepath.Base(tarball), err, lastLines(b, 10))
	}
	os.Remove(tarball)
	tree := strings.TrimSuffix(tarball, ".tar.xz")
	if _, err := os.Stat(filepath.Join(tree, "Makefile")); err != nil {
		return "", fmt.Errorf("%s has no kernel tree %s", filepath.Base(deb), filepath.Base(tree))
	}
	cross, _ := crossPrefix(src.GOARCH)
	env := append(os.Environ(),
		"ARCH="+arch, "CROSS_COMPILE="+cross,
		// Reproducible: no build time, user, host or build number.
		"KBUILD_BUILD_TIMESTAMP=1970-01-01", "KBUILD_BUILD_USER=nymote", "KBUILD_BUILD_HOST=nymote", "KBUILD_BUILD_VERSION=1",
		"LC_ALL=C",
	)
	run := func(name string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = tree, env
		b, err := cmd.CombinedOutput()
		if err != nil {
			return b, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, lastLines(b, 20))
		}
		return b, nil
	}
	say("configuring: tinyconfig + kernel/addenda/%s", strings.Join(src.Addenda, " + kernel/addenda/"))
	if _, err := run("make", "-s", "tinyconfig"); err != nil {
		return "", err
	}
	frag := filepath.Join(work, "addenda.config")
	if err := os.WriteFile(frag, addenda, 0o644); err != nil {
		return "", err
	}
	if _, err := run("./scripts/kconfig/merge_config.sh", "-m", ".config", frag); err != nil {
		return "", err
	}
	if _, err := run("make", "-s", "olddefconfig"); err != nil {
		return "", err
	}
	config, err := os.ReadFile(filepath.Join(tree, ".config"))
	if err != nil {
		return "", err
	}
	if err := checkConfig(config, options); err != nil {
		return "", err
	}
	target := path.Base(src.Image)
	if err := makeImage(ctx, progress, tree, env, target); err != nil {
		return "", err
	}
	rel, err := run("make", "-s", "kernelrelease")
	if err != nil {
		return "", err
	}
	release := strings.TrimSpace(string(rel))
	image := filepath.Join(tree, "arch", map[string]string{"x86_64": "x86", "arm64": "arm64"}[arch], "boot", target)
	if err := copyFile(image, filepath.Join(out, src.Image)); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(out, "config"), config, 0o644); err != nil {
		return "", err
	}
	fi, _ := os.Stat(filepath.Join(out, src.Image))
	say("built %s %s (%s, %.2f MiB)", src.Name, release, target, float64(fi.Size())/(1<<20))
	return release, nil
}

// makeImage runs make TARGET on every CPU, printing progress every ten
// seconds (objects compiled so far) and the end of the output on failure.
func makeImage(ctx context.Context, progress io.Writer, tree string, env []string, target string) error {
	cmd := exec.CommandContext(ctx, "make", "-j"+strconv.Itoa(runtime.NumCPU()), target)
	cmd.Dir, cmd.Env = tree, env
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return err
	}
	var tail []string
	scanned := make(chan struct{})
	go func() {
		start, last, objects := time.Now(), time.Now(), 0
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			if f := strings.Fields(l); len(f) == 2 && (f[0] == "CC" || f[0] == "AS" || f[0] == "LD" || f[0] == "AR") {
				objects++
			}
			tail = append(tail, l)
			if len(tail) > 30 {
				tail = tail[1:]
			}
			if progress != nil && time.Since(last) >= 10*time.Second {
				last = time.Now()
				fmt.Fprintf(progress, "kernel: building %s: %d objects, %s\n", target, objects, time.Since(start).Round(time.Second))
			}
		}
		io.Copy(io.Discard, pr)
		close(scanned)
	}()
	err := cmd.Wait()
	pw.Close()
	<-scanned
	if err != nil {
		return fmt.Errorf("make %s: %v:\n%s", target, err, strings.Join(tail, "\n"))
	}
	return nil
}

// extractSourceTarball writes the kernel source tarball of a
// linux-source .deb (usr/src/linux-source-X.Y.tar.xz) into dir and
// returns its path.
func extractSourceTarball(deb, dir string) (string, error) {
	var found string
	err := unpackDebFiles(deb, func(name string) (string, bool) {
		if strings.HasPrefix(name, "usr/src/linux-source-") && strings.HasSuffix(name, ".tar.xz") && !strings.Contains(strings.TrimPrefix(name, "usr/src/"), "/") {
			found = filepath.Join(dir, path.Base(name))
			return found, true
		}
		return "", false
	})
	if err != nil {
		return "", fmt.Errorf("unpacking %s: %w", filepath.Base(deb), err)
	}
	if found == "" {
		return "", fmt.Errorf("%s holds no usr/src/linux-source-*.tar.xz", filepath.Base(deb))
	}
	return found, nil
}

func copyFile(from, to string) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	return writeFrom(to, f)
}

// lastLines returns the last n lines of b, for error messages.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
