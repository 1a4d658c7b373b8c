package images

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// debugModule is the folder (a Go module of its own) that pins u-root's
// shell and core commands and gobusybox's makebb for debug images.
const debugModule = "images/debugshell"

// DebugShell is where a debug image has its shell: u-root's gosh. The
// appliance runtime starts it on the console when the file exists.
const DebugShell = "bbin/gosh"

// debugCommands reads the commands a debug image gets: the u-root commands
// among the tool lines of the debug module's go.mod.
func debugCommands(sourceDir string) ([]string, error) {
	f, err := os.Open(filepath.Join(sourceDir, debugModule, "go.mod"))
	if err != nil {
		return nil, fmt.Errorf("images: debug shell: %w", err)
	}
	defer f.Close()
	var pkgs []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "tool (":
			in = true
		case in && line == ")":
			in = false
		case in && strings.HasPrefix(line, "github.com/u-root/u-root/cmds/"):
			pkgs = append(pkgs, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("images: debug shell: %w", err)
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("images: debug shell: %s/go.mod names no u-root command", debugModule)
	}
	return pkgs, nil
}

// buildDebugShell compiles u-root's shell and core commands for the board
// into one busybox-style binary with gobusybox's makebb (as u-root builds
// its own images): the commands share one copy of the Go runtime and of
// their common packages, so thirty commands take about 5 MiB. It returns
// the binary and the names to link to it in /bbin.
func buildDebugShell(ctx context.Context, p *plan) ([]byte, []string, error) {
	pkgs, err := debugCommands(p.sourceDir)
	if err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "nymote-debugshell-")
	if err != nil {
		return nil, nil, fmt.Errorf("images: %w", err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(p.sourceDir, debugModule)
	run := func(env []string, args ...string) error {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), append([]string{"GOFLAGS=", "GOWORK=off"}, env...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("images: building the debug shell (u-root commands, makebb) for %s: %s: %v\n%s", p.board.GOARCH, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
		}
		return nil
	}
	// makebb runs here, so it is built for this machine; it then builds
	// the commands for the board.
	makebb := filepath.Join(tmp, "makebb")
	if err := run(nil, p.goCmd, "build", "-o", makebb, "github.com/u-root/gobusybox/src/cmd/makebb"); err != nil {
		return nil, nil, err
	}
	out := filepath.Join(tmp, "bb")
	target := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + p.board.GOARCH, "GOARM=" + p.board.GOARM}
	if err := run(target, append([]string{makebb, "-o", out}, pkgs...)...); err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, nil, fmt.Errorf("images: %w", err)
	}
	var names []string
	for _, pkg := range pkgs {
		names = append(names, path.Base(pkg))
	}
	return b, names, nil
}
