// Package kernel finds the Linux kernel of a board. It fetches a pinned
// kernel source and checks it against the pinned sums: a Go module such
// as github.com/gokrazy/kernel.amd64, downloaded with the go command into
// the module cache, or a Debian linux-image package fetched with apt-get
// download and unpacked into the user cache (debian.go). Or it builds our
// own minimal kernel from Debian's linux-source package with the options
// of the addenda folder, one reason per option (build.go,
// addenda/README.md). It picks the kernel modules an image needs with
// their dependencies (read from each module's modinfo), turns an x86
// bzImage into the uncompressed vmlinux ELF that Firecracker boots, and
// reads a kernel's built-in configuration (CONFIG_IKCONFIG).
package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"
)

// Format is the format of a kernel image file.
type Format string

// Kernel image formats.
const (
	// BzImage is an x86 bzImage: a boot sector, setup code and a
	// compressed vmlinux.
	BzImage Format = "bzImage"
	// ARM64Image is an uncompressed arm64 Image.
	ARM64Image Format = "Image"
	// ZImage is a 32-bit ARM zImage (self-decompressing).
	ZImage Format = "zImage"
)

// Kind is where a kernel source comes from.
type Kind string

// Kernel source kinds.
const (
	// GoModule is a Go module holding a built kernel (gokrazy's), fetched
	// with go mod download.
	GoModule Kind = "gomodule"
	// DebianPackage is a linux-image package of Debian's archive, fetched
	// with apt-get download.
	DebianPackage Kind = "debian"
	// Build is a kernel built on this machine from Debian's linux-source
	// package with the options of the addenda folder (build.go).
	Build Kind = "build"
)

// Source is a pinned kernel.
type Source struct {
	// Name is how boards refer to the source.
	Name string
	// Kind is where the kernel comes from; "" means GoModule.
	Kind Kind
	// GOARCH is the architecture the kernel runs on.
	GOARCH string
	// Module and Version are the Go module holding the kernel and its
	// pinned version; Sum is the module's go.sum hash ("h1:..."). For a
	// Debian package, Version is the package's version and Module and
	// Sum are empty.
	Module, Version, Sum string
	// Package, DebArch and PackageSHA256 are a Debian kernel's package
	// name (linux-image-6.1.0-50-armmp), Debian architecture and the
	// pinned sha256 of its .deb; Series is the metapackage that names the
	// current package of the series (linux-image-armmp), for when the pin
	// has left the archive. For a Build source they are the source
	// package's (linux-source-6.1, all) and Series is unused.
	Package, DebArch, PackageSHA256, Series string
	// Addenda are a Build source's files of the addenda folder, merged
	// into tinyconfig in this order.
	Addenda []string
	// Image is the kernel image's path in the module or package (for a
	// Build source: the make target, which is also its file name),
	// ImageSHA256 its pinned sha256 (hex; Debian packages are pinned by
	// PackageSHA256 instead) and ImageFormat its format.
	Image, ImageSHA256 string
	ImageFormat        Format
	// Release is the kernel release (uname -r), the name of its
	// lib/modules folder. A Build source's is read from its build.
	Release string
}

// Versions of the pinned kernels: both built by gokrazy from Linux 7.1.3.
var sources = map[string]Source{
	"gokrazy-amd64": {
		Name: "gokrazy-amd64", GOARCH: "amd64",
		Module: "github.com/gokrazy/kernel.amd64", Version: "v0.0.0-20260705070735-de680abf072b",
		Sum:   "h1:H9m4mwDqTyQG0AKVviBQp09T3OrY1X3tHNyrJCbqJfY=",
		Image: "vmlinuz", ImageSHA256: "276e5c6eefee7d955d3b6808d214b535561ce426789e3b4f53bd899474612525",
		ImageFormat: BzImage, Release: "7.1.3",
	},
	"gokrazy-arm64": {
		Name: "gokrazy-arm64", GOARCH: "arm64",
		Module: "github.com/gokrazy/kernel.arm64", Version: "v0.0.0-20260705071517-37841c4d6ff1",
		Sum:   "h1:MYq3OcTlEz46i/DZxG3c6ePjE6Te/024cPW2VHTBVAs=",
		Image: "vmlinuz", ImageSHA256: "b054a610dd89ee458fc77ba4bc50228b5036853c6fcbec46441a2d11bf3d9a9b",
		ImageFormat: ARM64Image, Release: "7.1.3",
	},
	// Debian bookworm's kernels (6.1 LTS). When the archive moves on,
	// Fetch takes the series' current package; see debian.go.
	"debian-armmp": {
		Name: "debian-armmp", Kind: DebianPackage, GOARCH: "arm",
		Package: "linux-image-6.1.0-50-armmp", Version: "6.1.176-1", DebArch: "armhf",
		PackageSHA256: "ddd1d8dd0c6beabb9eb96bcfab26549eb30c63331bae31de481ffae4af0e982a",
		Series:        "linux-image-armmp",
		Image:         "boot/vmlinuz-6.1.0-50-armmp", ImageFormat: ZImage, Release: "6.1.0-50-armmp",
	},
	"debian-cloud-amd64": {
		Name: "debian-cloud-amd64", Kind: DebianPackage, GOARCH: "amd64",
		Package: "linux-image-6.1.0-50-cloud-amd64", Version: "6.1.176-1", DebArch: "amd64",
		PackageSHA256: "efe19f605b6f54a8352e68d85a629abb2d30b72a085faef603a9152590baa791",
		Series:        "linux-image-cloud-amd64",
		Image:         "boot/vmlinuz-6.1.0-50-cloud-amd64", ImageFormat: BzImage, Release: "6.1.0-50-cloud-amd64",
	},
	// Our own minimal kernel (kernel/addenda): every driver an appliance
	// needs built in, nothing else. Built from Debian bookworm's kernel
	// source, the 6.1 LTS series of the Debian kernels above.
	"nymote-amd64": {
		Name: "nymote-amd64", Kind: Build, GOARCH: "amd64",
		Package: "linux-source-6.1", Version: "6.1.192-2", DebArch: "all",
		PackageSHA256: "ae95fe63d4c553f8d0e6c86cb1ab566f3894a43743eb19ab585cd97d82f26514",
		Addenda:       []string{"appliance.config", "x86_64.config"},
		Image:         "bzImage", ImageFormat: BzImage, Release: "6.1.192",
	},
	// The same for arm64 (QEMU virt), cross-compiled on an x86-64 host.
	"nymote-arm64": {
		Name: "nymote-arm64", Kind: Build, GOARCH: "arm64",
		Package: "linux-source-6.1", Version: "6.1.192-2", DebArch: "all",
		PackageSHA256: "ae95fe63d4c553f8d0e6c86cb1ab566f3894a43743eb19ab585cd97d82f26514",
		Addenda:       []string{"appliance.config", "arm64.config"},
		Image:         "Image", ImageFormat: ARM64Image, Release: "6.1.192",
	},
}

// ErrUnknown is wrapped by Lookup's error for a source not in the table.
var ErrUnknown = errors.New("unknown kernel source")

// ErrMismatch is wrapped by Fetch's error when a downloaded kernel does not
// match its pinned sums.
var ErrMismatch = errors.New("kernel does not match its pinned sum")

// Lookup returns the kernel source called name.
func Lookup(name string) (Source, error) {
	s, ok := sources[name]
	if !ok {
		var names []string
		for n := range sources {
			names = append(names, n)
		}
		sort.Strings(names)
		return Source{}, fmt.Errorf("kernel: %w %q (known: %s)", ErrUnknown, name, strings.Join(names, ", "))
	}
	return s, nil
}

// Kernel is a fetched kernel on disk (in the Go module cache, read-only,
// or unpacked in the kernel cache).
type Kernel struct {
	// Source is the source as fetched: for a Debian package whose pin
	// has left the archive, Package, Version, PackageSHA256, Release and
	// Image are those of the package actually used.
	Source
	// Dir is the module's folder, or the unpacked package's.
	Dir string
	// Pinned is false when the pinned Debian package was gone and
	// Fetch took the series' current one.
	Pinned bool
}

// DTBPath is the device tree file called name that the kernel's package
// ships (Debian: /usr/lib/linux-image-RELEASE/NAME).
func (k *Kernel) DTBPath(name string) string {
	if k.Kind == DebianPackage {
		return filepath.Join(k.Dir, "usr", "lib", "linux-image-"+k.Release, name)
	}
	return filepath.Join(k.Dir, name)
}

// ConfigFile is the kernel's configuration file shipped beside it (Debian
// packages: boot/config-RELEASE), or "" when it has none.
func (k *Kernel) ConfigFile() string {
	switch k.Kind {
	case DebianPackage:
		return filepath.Join(k.Dir, "boot", "config-"+k.Release)
	case Build:
		return filepath.Join(k.Dir, "config")
	}
	return ""
}

// ImagePath is the kernel image file.
func (k *Kernel) ImagePath() string { return filepath.Join(k.Dir, k.Image) }

// ModulesDir is the kernel's lib/modules/RELEASE folder.
func (k *Kernel) ModulesDir() string { return filepath.Join(k.Dir, "lib", "modules", k.Release) }

// FetchOptions configure Fetch. The zero value fetches with the go command
// or apt on $PATH, into the user's cache, and reports nothing.
type FetchOptions struct {
	// CacheDir is where Debian kernel packages are unpacked; "" means
	// the user cache's nymote/kernels (beside nymote/images).
	CacheDir string
	// AptGet and AptCache are the apt programs; "" means those on $PATH.
	AptGet, AptCache string
	// Strict refuses a Debian kernel whose pinned version has left the
	// archive, instead of taking the series' current package.
	Strict bool
	// GoCommand is the go program; "" means "go" on $PATH.
	GoCommand string
	// Progress receives progress lines while downloading; nil means none.
	Progress io.Writer
	// Env is added to the go command's (or apt's) environment (for tests:
	// GOPROXY, GOMODCACHE).
	Env []string
}

// Fetch downloads (or finds in the module cache) the kernel of src and
// checks it against the pinned sums.
func Fetch(ctx context.Context, src Source, opts FetchOptions) (*Kernel, error) {
	if src.Kind == DebianPackage || src.Kind == Build {
		fetch, how := fetchDebian, ""
		if src.Kind == Build {
			fetch, how = fetchBuild, "built from "
		}
		k, err := fetch(ctx, src, opts)
		if err == nil && opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "kernel: %s %s ready (%s%s %s)\n", src.Name, k.Release, how, k.Package, k.Version)
		}
		return k, err
	}
	goCmd := opts.GoCommand
	if goCmd == "" {
		goCmd = "go"
	}
	modver := src.Module + "@" + src.Version
	cmd := exec.CommandContext(ctx, goCmd, "mod", "download", "-json", modver)
	// Outside any module, so that the project's go.mod is neither read nor
	// changed; GOFLAGS from the caller (-mod=vendor...) do not apply.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "GO111MODULE=on")
	cmd.Env = append(cmd.Env, opts.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	done := make(chan struct{})
	if opts.Progress != nil {
		go progress(done, opts.Progress, modver, downloadDir(cmd.Env, goCmd, src), "*.zip*")
	}
	err := cmd.Run()
	close(done)
	var info struct {
		Dir, Sum, Error string
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &info); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil || info.Error != "" {
		msg := strings.TrimSpace(info.Error)
		if msg == "" {
			msg = strings.TrimSpace(stderr.String())
		}
		if msg == "" && err != nil {
			msg = err.Error()
		}
		return nil, fmt.Errorf("kernel: downloading %s with %q failed: %s (is the Go module proxy reachable? see GOPROXY)", modver, goCmd+" mod download", msg)
	}
	if info.Sum != src.Sum {
		return nil, fmt.Errorf("kernel: %s: %w: module sum %s, pinned %s", modver, ErrMismatch, info.Sum, src.Sum)
	}
	k := &Kernel{Source: src, Dir: info.Dir, Pinned: true}
	sum, err := fileSHA256(k.ImagePath())
	if err != nil {
		return nil, fmt.Errorf("kernel: %s: %w", modver, err)
	}
	if sum != src.ImageSHA256 {
		return nil, fmt.Errorf("kernel: %s: %w: %s has sha256 %s, pinned %s", modver, ErrMismatch, src.Image, sum, src.ImageSHA256)
	}
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "kernel: %s %s ready (%s)\n", src.Name, src.Release, modver)
	}
	return k, nil
}

// downloadDir is where the go command puts the module's zip while
// downloading it, or "" if unknown.
func downloadDir(env []string, goCmd string, src Source) string {
	cmd := exec.Command(goCmd, "env", "GOMODCACHE")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	var esc strings.Builder
	for _, r := range src.Module {
		if unicode.IsUpper(r) {
			esc.WriteByte('!')
			r = unicode.ToLower(r)
		}
		esc.WriteRune(r)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "cache", "download", esc.String(), "@v")
}

// progress prints, every two seconds until done, how much has arrived of
// the newest file in dir matching pattern (the module's zip, the .deb).
func progress(done <-chan struct{}, w io.Writer, what, dir, pattern string) {
	start := time.Now()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			var size int64
			if dir != "" {
				ms, _ := filepath.Glob(filepath.Join(dir, pattern))
				for _, m := range ms {
					if fi, err := os.Stat(m); err == nil && fi.ModTime().After(start.Add(-time.Second)) && fi.Size() > size {
						size = fi.Size()
					}
				}
			}
			fmt.Fprintf(w, "kernel: downloading %s: %.1f MiB, %s\n", what, float64(size)/(1<<20), time.Since(start).Round(time.Second))
		}
	}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
