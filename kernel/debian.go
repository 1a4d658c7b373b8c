package kernel

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// A Debian kernel source is a linux-image package of Debian's archive,
// fetched with apt-get download (so with the machine's own apt sources and
// keys: the archive's signed index vouches for the package's sha256),
// unpacked in Go into the kernel cache, and checked against the pinned
// sha256.
//
// Debian's archive keeps only the current version of a package, and the
// package name carries the kernel ABI (linux-image-6.1.0-50-armmp), which
// changes with most kernel updates. So a pin does not last: when the
// pinned version is no longer in the archive's index, Fetch takes the
// package that the series' metapackage (Source.Series, such as
// linux-image-armmp) depends on now, provided it is the same upstream
// series (6.1), checks it against the sha256 of the archive's signed index,
// says so on Progress, and returns it with Pinned false; the image
// manifest records the package, version and sha256 actually used, so a
// build stays auditable and can be repeated with the same package (it
// stays in the cache). FetchOptions.Strict refuses the fallback instead.
// A package once unpacked is found in the cache without apt.

// cacheMarker is the file, in an unpacked package's folder, that holds the
// sha256 of the .deb it was unpacked from; it is written last.
const cacheMarker = ".nymote-deb-sha256"

// errNotInIndex is returned by aptShow for a package that apt does not know.
var errNotInIndex = errors.New("not in the apt index")

// debInfo is a package as apt's index describes it.
type debInfo struct {
	Package, Version, Arch, SHA256 string
	Depends                        string
}

func (d debInfo) spec() string { return d.Package + ":" + d.Arch + "=" + d.Version }

// cacheDir is where Debian kernels are unpacked.
func cacheDir(opts FetchOptions) (string, error) {
	if opts.CacheDir != "" {
		return opts.CacheDir, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("kernel: no cache folder for Debian kernels: %w", err)
	}
	return filepath.Join(c, "nymote", "kernels"), nil
}

// fetchDebian fetches a Debian kernel package (see the comment above).
func fetchDebian(ctx context.Context, src Source, opts FetchOptions) (*Kernel, error) {
	cache, err := cacheDir(opts)
	if err != nil {
		return nil, err
	}
	pin := debInfo{Package: src.Package, Version: src.Version, Arch: src.DebArch, SHA256: src.PackageSHA256}
	if k, ok := cachedDeb(cache, src, pin, true); ok {
		return k, nil
	}
	info, pinned, err := resolvePin(ctx, opts, src, pin, cache, func() (debInfo, error) {
		meta, err := aptShow(ctx, opts, src.Series+":"+src.DebArch)
		if err != nil {
			return debInfo{}, fmt.Errorf("the pinned package %s is gone and its series %s: %w", pin.spec(), src.Series, err)
		}
		dep, err := seriesPackage(meta, src)
		if err != nil {
			return debInfo{}, err
		}
		return aptShow(ctx, opts, dep)
	})
	if err != nil {
		return nil, err
	}
	if k, ok := cachedDeb(cache, src, info, pinned); ok {
		return k, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, ".download-")
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	defer os.RemoveAll(tmp)
	deb, err := downloadDeb(ctx, opts, tmp, src, info)
	if err != nil {
		return nil, err
	}
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "kernel: unpacking %s\n", info.spec())
	}
	unpacked := filepath.Join(tmp, "root")
	if err := unpackDeb(deb, unpacked); err != nil {
		return nil, fmt.Errorf("kernel: unpacking %s: %w", info.spec(), err)
	}
	if err := os.WriteFile(filepath.Join(unpacked, cacheMarker), []byte(info.SHA256+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	dir := debDir(cache, info)
	os.RemoveAll(dir)
	if err := os.Rename(unpacked, dir); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	k, ok := cachedDeb(cache, src, info, pinned)
	if !ok {
		return nil, fmt.Errorf("kernel: %s: %s has no kernel image %s", src.Name, info.spec(), k.ImagePath())
	}
	return k, nil
}

// downloadDeb downloads package d into dir (a fresh folder) with apt-get
// download and checks it against d's sha256; it returns the .deb's path.
func downloadDeb(ctx context.Context, opts FetchOptions, dir string, src Source, d debInfo) (string, error) {
	// apt drops to the _apt user to download; it needs to write here.
	os.Chmod(dir, 0o777)
	deb, err := aptDownload(ctx, opts, dir, d)
	if err != nil {
		return "", fmt.Errorf("kernel: %s: %w", src.Name, err)
	}
	sum, err := fileSHA256(deb)
	if err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	if sum != d.SHA256 {
		return "", fmt.Errorf("kernel: %s: %w: downloaded %s has sha256 %s, want %s", src.Name, ErrMismatch, d.spec(), sum, d.SHA256)
	}
	return deb, nil
}

// resolvePin finds the pinned package in apt's index and checks its
// sha256. When the pin has left the archive, it takes the package that
// current names instead (unless opts.Strict), says so on opts.Progress
// and returns pinned false. current's errors get the "kernel: NAME:"
// prefix here.
func resolvePin(ctx context.Context, opts FetchOptions, src Source, pin debInfo, cache string, current func() (debInfo, error)) (info debInfo, pinned bool, err error) {
	info, err = aptShow(ctx, opts, pin.spec())
	switch {
	case errors.Is(err, errNotInIndex):
		if opts.Strict {
			return info, false, fmt.Errorf("kernel: %s: the pinned package %s is no longer in the archive (and not in the cache %s); update the pin in package kernel", src.Name, pin.spec(), cache)
		}
		if info, err = current(); err != nil {
			return info, false, fmt.Errorf("kernel: %s: %w", src.Name, err)
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "kernel: the pinned %s is no longer in the archive; using the current %s (sha256 %s, recorded in the manifest)\n", pin.spec(), info.spec(), info.SHA256)
		}
		return info, false, nil
	case err != nil:
		return info, false, fmt.Errorf("kernel: %s: %w", src.Name, err)
	case info.SHA256 != pin.SHA256:
		return info, false, fmt.Errorf("kernel: %s: %w: the archive's index gives %s sha256 %s, pinned %s", src.Name, ErrMismatch, pin.spec(), info.SHA256, pin.SHA256)
	}
	return info, true, nil
}

func debDir(cache string, d debInfo) string {
	return filepath.Join(cache, d.Package+"_"+d.Version+"_"+d.Arch)
}

// cachedDeb returns the kernel of package d from the cache, if it was
// unpacked there from a .deb with d's sha256 and has its kernel image.
func cachedDeb(cache string, src Source, d debInfo, pinned bool) (*Kernel, bool) {
	dir := debDir(cache, d)
	k := &Kernel{Source: src, Dir: dir, Pinned: pinned}
	k.Package, k.Version, k.PackageSHA256 = d.Package, d.Version, d.SHA256
	k.Release = strings.TrimPrefix(d.Package, "linux-image-")
	k.Image = "boot/vmlinuz-" + k.Release
	b, err := os.ReadFile(filepath.Join(dir, cacheMarker))
	if err != nil || strings.TrimSpace(string(b)) != d.SHA256 {
		return k, false
	}
	if _, err := os.Stat(k.ImagePath()); err != nil {
		return k, false
	}
	return k, true
}

// seriesPackage returns the apt spec (PKG:ARCH=VER) of the kernel package
// that the series metapackage meta depends on, if it is of the same
// upstream series as the pin (6.1 for 6.1.0-50-armmp). Its errors are
// wrapped by resolvePin, which names the source.
func seriesPackage(meta debInfo, src Source) (string, error) {
	for _, d := range strings.Split(meta.Depends, ",") {
		d = strings.TrimSpace(d)
		name, ver, ok := strings.Cut(d, " (= ")
		if !ok || !strings.HasPrefix(name, "linux-image-") {
			continue
		}
		rel := strings.TrimPrefix(name, "linux-image-")
		if upstream(rel) != upstream(src.Release) {
			return "", fmt.Errorf("the pinned %s is gone and the series %s now gives %s, another upstream series: update the pin in package kernel", src.Package, src.Series, name)
		}
		return name + ":" + src.DebArch + "=" + strings.TrimSuffix(ver, ")"), nil
	}
	return "", fmt.Errorf("the series %s depends on no linux-image package (%q)", src.Series, meta.Depends)
}

// upstream returns the major.minor of a kernel release (6.1 of
// 6.1.0-50-armmp).
func upstream(release string) string {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return release
	}
	return parts[0] + "." + parts[1]
}

// aptShow reads a package's record from apt's index (no network).
func aptShow(ctx context.Context, opts FetchOptions, spec string) (debInfo, error) {
	cmd := exec.CommandContext(ctx, orDefault(opts.AptCache, "apt-cache"), "show", "--no-all-versions", spec)
	cmd.Env = append(os.Environ(), opts.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return debInfo{}, fmt.Errorf("%s: %w (%s)", spec, errNotInIndex, strings.TrimSpace(stderr.String()))
		}
		return debInfo{}, fmt.Errorf("apt-cache show %s: %w (is this a Debian machine with apt?)", spec, err)
	}
	var d debInfo
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		switch k {
		case "Package":
			d.Package = v
		case "Version":
			d.Version = v
		case "Architecture":
			d.Arch = v
		case "SHA256":
			d.SHA256 = v
		case "Depends":
			d.Depends = v
		}
	}
	if d.Package == "" || d.Version == "" {
		return debInfo{}, fmt.Errorf("%s: %w", spec, errNotInIndex)
	}
	if a, _, ok := strings.Cut(strings.TrimPrefix(spec, d.Package+":"), "="); ok && d.Arch == "all" {
		d.Arch = a
	}
	return d, nil
}

// aptDownload downloads package d into dir with apt-get download,
// reporting the growing file on opts.Progress, and returns the .deb's path.
func aptDownload(ctx context.Context, opts FetchOptions, dir string, d debInfo) (string, error) {
	cmd := exec.CommandContext(ctx, orDefault(opts.AptGet, "apt-get"), "download", "-q", d.spec())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), opts.Env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan struct{})
	if opts.Progress != nil {
		go progress(done, opts.Progress, d.spec(), dir, "*.deb*")
	}
	err := cmd.Run()
	close(done)
	if err != nil {
		return "", fmt.Errorf("apt-get download %s failed: %v: %s (are the apt sources reachable? for armhf: dpkg --add-architecture armhf && apt-get update)", d.spec(), err, strings.TrimSpace(out.String()))
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s: want one .deb, got %v", d.spec(), debs)
	}
	return debs[0], nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// unpackPrefixes are the parts of a linux-image package a kernel needs:
// the image and its config, the modules, and the device trees.
var unpackPrefixes = []string{"boot/vmlinuz-", "boot/config-", "lib/modules/", "usr/lib/linux-image-"}

// unpackDeb unpacks the kernel's parts of a .deb (an ar archive holding
// data.tar.{xz,zst,gz}) into dir. Compressed modules (.ko.xz, .ko.zst,
// .ko.gz) are written decompressed, as .ko, so that modinfo can read them
// and the initramfs (compressed as a whole) holds them once.
func unpackDeb(deb, dir string) error {
	return unpackDebFiles(deb, func(name string) (string, bool) {
		for _, p := range unpackPrefixes {
			if strings.HasPrefix(name, p) || strings.HasPrefix(name+"/", p) {
				return filepath.Join(dir, filepath.FromSlash(name)), true
			}
		}
		return "", false
	})
}

// unpackDebFiles unpacks the files of a .deb's data.tar that pick keeps:
// pick gets each entry's clean slash-separated name and returns the path
// to write it to.
func unpackDebFiles(deb string, pick func(name string) (string, bool)) error {
	f, err := os.Open(deb)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "!<arch>\n" {
		return errors.New("not a Debian package (no ar header)")
	}
	for {
		hdr := make([]byte, 60)
		if _, err := io.ReadFull(r, hdr); err != nil {
			if err == io.EOF {
				return errors.New("no data.tar member")
			}
			return err
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("ar member %q: bad size %q", name, hdr[48:58])
		}
		body := io.LimitReader(r, size)
		if strings.HasPrefix(name, "data.tar") {
			dec, err := decompressor(path.Ext(name), body)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return untar(dec, pick)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return err
		}
		if size%2 == 1 {
			r.ReadByte()
		}
	}
}

// decompressor reads a stream compressed in the format of the file
// extension ext (".xz", ".zst", ".gz", ".tar": none).
func decompressor(ext string, r io.Reader) (io.Reader, error) {
	switch ext {
	case ".xz":
		return xz.NewReader(r)
	case ".zst":
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case ".gz":
		return gzip.NewReader(r)
	case ".tar", ".ko":
		return r, nil
	}
	return nil, fmt.Errorf("unknown compression %q", ext)
}

// untar writes the entries of a tar stream that pick keeps where pick says.
func untar(r io.Reader, pick func(name string) (string, bool)) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if strings.HasPrefix(name, "..") || path.IsAbs(name) {
			return fmt.Errorf("tar entry %q leaves the package", h.Name)
		}
		dst, keep := pick(name)
		if !keep {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		case tar.TypeReg:
			var src io.Reader = tr
			for _, ext := range []string{".xz", ".zst", ".gz"} {
				if strings.HasSuffix(name, ".ko"+ext) {
					if src, err = decompressor(ext, tr); err != nil {
						return fmt.Errorf("%s: %w", name, err)
					}
					dst = strings.TrimSuffix(dst, ext)
				}
			}
			if err := writeFrom(dst, src); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
}

func writeFrom(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
