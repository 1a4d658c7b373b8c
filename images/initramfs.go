package images

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/nymote/nymote/kernel"
	"github.com/nymote/nymote/update"
)

// ramdisk is the image's one intermediate: the initramfs.
type ramdisk struct {
	cpio       []byte // uncompressed newc archive
	compressed []byte // as the kernel loads it
	format     string // compression: "zstd"
	files      []string
}

// initramfs writes the image's initramfs: /init (the program, or the
// stub that execs it from the code disk, mounted on /code), /dev/console (so that
// /init has a console before it mounts devtmpfs), /sbin/poweroff (a link
// to /init), the mount points the runtime uses, and the board's kernel modules with a modules.dep. Every
// record has mtime 0, owner root and a fixed inode number, in sorted order,
// so the archive depends only on its contents.
func initramfs(ctx context.Context, p *plan, k *kernel.Kernel, bin *binary) (*ramdisk, error) {
	recs := map[string]cpio.Record{}
	dir := func(name string, perm uint64) {
		if name == "." {
			return
		}
		for d := name; d != "." && d != "/" && d != ""; d = path.Dir(d) {
			if _, ok := recs[d]; !ok {
				recs[d] = cpio.Directory(d, 0o755)
			}
		}
		recs[name] = cpio.Directory(name, perm)
	}
	file := func(name string, b []byte, perm uint64) {
		dir(path.Dir(name), 0o755)
		recs[name] = cpio.StaticRecord(b, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm})
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "etc"} {
		dir(d, 0o755)
	}
	dir("data", 0o700)
	recs["dev/console"] = cpio.CharDev("dev/console", 0o600, 5, 1)
	if bin.stub != nil {
		// The program is on the code disk, mounted on /code by the stub.
		file("init", bin.stub, 0o755)
		dir("code", 0o755)
	} else {
		file("init", bin.init, 0o755)
	}
	if bin.debug != nil {
		file("bbin/bb", bin.debug, 0o755)
		for _, n := range bin.debugNames {
			recs["bbin/"+n] = cpio.Symlink("bbin/"+n, "bb")
		}
	}
	// The kernel's poweroff_cmd: run for an orderly power off asked from
	// outside (Xen's xl shutdown), it is the program (/init, or the code
	// disk's, since the stub removes itself), which then asks PID 1 to
	// stop cleanly.
	dir("sbin", 0o755)
	if bin.stub != nil {
		recs["sbin/poweroff"] = cpio.Symlink("sbin/poweroff", "/code/init")
	} else {
		recs["sbin/poweroff"] = cpio.Symlink("sbin/poweroff", "../init")
	}
	if sg := p.opts.Signer; sg != nil {
		file(update.TrustedKeysPath, update.TrustedKeysFile([]ed25519.PublicKey{sg.Public()}), 0o644)
	}
	file("etc/nymote/image", []byte(fmt.Sprintf("app=%s\nboard=%s\nversion=%s\n", p.app.Name, p.board.Name, bin.appVersion)), 0o644)

	if len(p.board.Modules) > 0 {
		mods, err := kernel.ResolveModules(k.ModulesDir(), p.board.Modules)
		if err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
		base := "lib/modules/" + k.Release
		var names []string
		for _, m := range mods {
			b, err := os.ReadFile(filepath.Join(k.ModulesDir(), m.Path))
			if err != nil {
				return nil, fmt.Errorf("images: %w", err)
			}
			file(base+"/"+filepath.ToSlash(m.Path), b, 0o644)
			names = append(names, m.Name)
		}
		file(base+"/modules.dep", kernel.ModulesDep(mods), 0o644)
		file(base+"/modules.builtin", nil, 0o644)
		file("etc/nymote/modules", []byte(strings.Join(names, "\n")+"\n"), 0o644)
	}

	var names []string
	for n := range recs {
		names = append(names, n)
	}
	// Sorted, so parents come before their children.
	sort.Strings(names)
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	for i, n := range names {
		r := cpio.MakeReproducible(recs[n])
		r.Ino = uint64(i + 1)
		r.NLink = 1
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			r.NLink = 2
		}
		if err := w.WriteRecord(r); err != nil {
			return nil, fmt.Errorf("images: initramfs: %w", err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("images: initramfs: %w", err)
	}
	z, err := compressZstd(buf.Bytes())
	if err != nil {
		return nil, err
	}
	return &ramdisk{cpio: buf.Bytes(), compressed: z, format: "zstd", files: names}, nil
}

// zstdWindow is the initramfs's zstd window size (see compressZstd).
const zstdWindow = 1 << 20

// compressZstd compresses b with zstd at its best level, with a checksum.
// Of the formats the kernels unpack (CONFIG_RD_*), xz and zstd give the
// smallest initramfs (for mail: xz 4.97 MB, zstd 4.99 MB, gzip -9 5.43 MB
// of a 13.6 MB archive), and the kernel unpacks zstd several times faster:
// 1.2 to 1.5 s less from kernel start to /init under TCG (bench/README.md).
//
// The window is 1 MiB instead of the encoder's 8 MiB: the kernel's
// decompressor allocates a workspace of the frame's window size (plus
// about 0.4 MiB) while it unpacks the initramfs, at the moment memory is
// scarcest (the compressed and the unpacked archive are both held). The
// smaller window costs 1 % in size (mail: 5.17 MB against 5.12 MB) and
// saves 7 MiB there.
func compressZstd(b []byte) ([]byte, error) {
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(zstdWindow))
	if err != nil {
		return nil, fmt.Errorf("images: zstd: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("images: zstd: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("images: zstd: %w", err)
	}
	return out.Bytes(), nil
}
