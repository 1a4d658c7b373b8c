// Package images turns (app, board, options) into the artefacts of a Nymote
// appliance: the app cross-compiled for the board as a static /init, an
// initramfs written with u-root's cpio package and compressed with zstd, then,
// per board output, the kernel with a QEMU launch script or an uncompressed
// vmlinux with a Firecracker configuration, and manifest.json with the size
// and sha256 of every file. Builds are byte-reproducible: two builds of the
// same commit give identical files.
//
// Build is a pipeline of phases, one file each: prepare (validate the app,
// board and outputs before any work), compile, initramfs, outputs, manifest.
//
// This package only builds. Booting an image is package launch's (the
// run-qemu.sh written here holds launch's QEMU command line, and
// Manifest.QEMUImage hands a built image to it); data disks are package
// disk's, and writing an SD card image onto a card is package flash's.
package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/kernel"
	"github.com/nymote/nymote/update"
)

// Options configure Build.
type Options struct {
	// App is the appliance to build (see Apps). Required.
	App string
	// Board is the board to build for (see package boards). Required.
	Board string
	// OutDir receives the artefacts; it is created if missing. Files of
	// an earlier build there are replaced. Required.
	OutDir string
	// SourceDir is the root of the nymote module to build the app from;
	// "" means the module of the current directory.
	SourceDir string
	// Ephemeral builds an image that serves from memory when it has no
	// data disk (for demos and benchmarks); by default an appliance
	// without a data disk refuses to serve.
	Ephemeral bool
	// Debug adds u-root's shell (gosh) and core commands in /bbin, for
	// inspection on the console: the appliance runs the shell there once
	// it serves. Without it the image has no shell.
	Debug bool
	// Outputs are the board outputs to write (see boards.Board.Outputs);
	// nil means all of the board's.
	Outputs []boards.Output
	// SDData is a data disk image (nymote disk create) that the SD card
	// output copies into the card's data partition; "" gives the card an
	// empty data partition of SDDataSize bytes (0: 256 MiB), which the
	// appliance fills on first boot.
	SDData     string
	SDDataSize int64
	// Cmdline are extra kernel command line options, such as
	// nymote.domain=example.org.
	Cmdline []string
	// GoCommand is the go program; "" means "go" on $PATH.
	GoCommand string
	// Progress receives one line per phase (and download progress); nil
	// means none.
	Progress io.Writer
	// KernelEnv is added to the environment of the kernel download (for
	// tests).
	KernelEnv []string
	// Signer, when set, signs the image: its public key goes into the
	// initramfs as the image's trusted key (update.TrustedKeysPath) and
	// into the manifest (trusted_keys), and its signature over
	// manifest.json into manifest.sig. Nil: an unsigned image (any
	// manifest.sig of an earlier build in OutDir is removed).
	Signer *update.Signer
	// BuildTags are Go build tags for the app's compile (for tests: an
	// image of hello with a test data migration, nymote_migrationtest).
	BuildTags []string
	// InitramfsProgram keeps the program in the initramfs (as /init)
	// on a board whose images put it on a code disk
	// (boards.Board.CodeDisk; see CodeDiskFile), for comparisons.
	InitramfsProgram bool
}

// Build builds the appliance image described by opts into opts.OutDir and
// returns its manifest.
func Build(ctx context.Context, opts Options) (*Manifest, error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	p, err := prepare(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	k, err := kernel.Fetch(ctx, p.kernel, kernel.FetchOptions{GoCommand: opts.GoCommand, Progress: opts.Progress, Env: opts.KernelEnv})
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	fmt.Fprintf(opts.Progress, "build: compiling %s for %s/%s\n", p.app.Package, p.board.GOARCH, orDash(p.board.GOARM))
	bin, err := compile(ctx, p)
	if err != nil {
		return nil, err
	}
	if p.codeDisk() {
		fmt.Fprintf(opts.Progress, "build: %s is %s; writing the code disk and compiling its stub\n", p.app.Package, human(int64(len(bin.init))))
		if err := writeCodeDisk(ctx, p, bin.init); err != nil {
			return nil, err
		}
		if bin.stub, err = buildStub(ctx, p, bin.init); err != nil {
			return nil, err
		}
	}
	if opts.Debug {
		fmt.Fprintf(opts.Progress, "build: compiling the debug shell (u-root's gosh and core commands) for %s/%s\n", p.board.GOARCH, orDash(p.board.GOARM))
		if bin.debug, bin.debugNames, err = buildDebugShell(ctx, p); err != nil {
			return nil, err
		}
		fmt.Fprintf(opts.Progress, "build: debug shell is %s (%d commands)\n", human(int64(len(bin.debug))), len(bin.debugNames))
	}
	if bin.stub != nil {
		fmt.Fprintf(opts.Progress, "build: /init is the code disk's stub, %s; writing the initramfs\n", human(int64(len(bin.stub))))
	} else {
		fmt.Fprintf(opts.Progress, "build: /init is %s; writing the initramfs\n", human(int64(len(bin.init))))
	}
	ird, err := initramfs(ctx, p, k, bin)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Progress, "build: initramfs %s (%s %s); writing %s\n", human(int64(len(ird.compressed))), human(int64(len(ird.cpio))), "cpio", outputNames(p.outputs))
	files, err := writeOutputs(ctx, p, k, ird)
	if err != nil {
		return nil, err
	}
	if bin.stub != nil {
		files = append(files, CodeDiskFile)
	} else if err := os.Remove(filepath.Join(opts.OutDir, CodeDiskFile)); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("images: %w", err)
	}
	m, err := writeManifest(p, k, bin, ird, files)
	if err != nil {
		return nil, err
	}
	if err := signManifest(p); err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Progress, "build: %s for %s in %s\n", p.app.Name, p.board.Name, opts.OutDir)
	return m, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// human formats a byte count.
func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// writeFile writes b to dir/name atomically.
func writeFile(dir, name string, b []byte, perm os.FileMode) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, perm); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}

func joinCmdline(args []string) string { return strings.Join(args, " ") }
