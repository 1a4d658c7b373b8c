package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/kernel"
)

// modulePath is the module images builds apps from.
const modulePath = "github.com/nymote/nymote"

// defaultDataDevice is the runtime's data disk when the command line names
// none (nymote.data).
const defaultDataDevice = "/dev/vda"

// plan is the validated input of a build.
type plan struct {
	opts      Options
	app       app.App
	board     boards.Board
	kernel    kernel.Source
	sourceDir string
	goCmd     string
	cmdline   []string
	// outputs are the board outputs to write.
	outputs []boards.Output
}

// prepare validates everything a build needs before any work is done.
func prepare(ctx context.Context, opts Options) (*plan, error) {
	if opts.OutDir == "" {
		return nil, errors.New("images: no output folder given")
	}
	app, err := LookupApp(opts.App)
	if err != nil {
		return nil, err
	}
	board, err := boards.Get(opts.Board)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	src, err := kernel.Lookup(board.Kernel)
	if err != nil {
		return nil, fmt.Errorf("images: board %s: %w", board.Name, err)
	}
	outs := board.Outputs
	if len(opts.Outputs) > 0 {
		outs = opts.Outputs
	}
	for _, o := range outs {
		if !slices.Contains(board.Outputs, o) {
			return nil, fmt.Errorf("images: board %s has no %q output (it has: %s)", board.Name, o, outputNames(board.Outputs))
		}
		if what, ok := notYet[o]; ok {
			return nil, fmt.Errorf("images: board %s: the %q output (%s) is %w", board.Name, o, what, ErrNotImplemented)
		}
		if _, ok := outputs[o]; !ok {
			return nil, fmt.Errorf("images: board %s wants output %q, which images cannot write", board.Name, o)
		}
	}
	for _, a := range opts.Cmdline {
		if strings.ContainsAny(a, " \t\n\"'") {
			return nil, fmt.Errorf("images: kernel command line option %q has white space or quotes", a)
		}
	}
	goCmd := opts.GoCommand
	if goCmd == "" {
		goCmd = "go"
	}
	dir := opts.SourceDir
	if dir == "" {
		cmd := exec.CommandContext(ctx, goCmd, "env", "GOMOD")
		out, err := cmd.Output()
		gomod := strings.TrimSpace(string(out))
		if err != nil || gomod == "" || gomod == "/dev/null" {
			return nil, fmt.Errorf("images: not inside the nymote source tree (run nymote build there, or give its folder): %v", err)
		}
		dir = filepath.Dir(gomod)
	}
	cmd := exec.CommandContext(ctx, goCmd, "list", "-m")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != modulePath {
		return nil, fmt.Errorf("images: %s is not the %s module (%s%v)", dir, modulePath, stderr.String(), err)
	}
	cmdline := append([]string{}, board.Cmdline...)
	cmdline = append(cmdline, "console="+board.Console)
	// The kernel unpacks the initramfs into ramfs rather than tmpfs, whose
	// default bound of half the memory refused the mail /init (26 MB) in a
	// 64 MiB VM ("Initramfs unpacking failed: write error"). The runtime
	// writes only to /tmp and /data, which it mounts on their own.
	cmdline = append(cmdline, "rootfstype=ramfs")
	if board.DataDevice != defaultDataDevice {
		// The runtime's fallback when no disk is labelled nymote-data.
		cmdline = append(cmdline, "nymote.data="+board.DataDevice)
	}
	if opts.Ephemeral {
		cmdline = append(cmdline, "nymote.ephemeral=1")
	}
	if board.PowerOffByReset {
		cmdline = append(cmdline, "nymote.poweroff=reset")
	}
	cmdline = append(cmdline, app.Cmdline...)
	cmdline = append(cmdline, opts.Cmdline...)
	return &plan{opts: opts, app: app, board: board, kernel: src, sourceDir: dir, goCmd: goCmd, cmdline: cmdline, outputs: outs}, nil
}
