package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// binary is the compiled program.
type binary struct {
	// init is the app's program: /init in the initramfs, or /init on
	// the code disk when stub is set.
	init []byte
	// stub is the initramfs's /init of an image with a code disk
	// (appliance/codestub, programSum baked in); nil otherwise.
	stub []byte
	// debug is the busybox of u-root commands of a debug image, linked
	// from /bbin under debugNames (buildDebugShell); nil otherwise.
	debug      []byte
	debugNames []string
	goVersion  string
	appVersion string
}

// compile cross-compiles the app for the board: static (CGO_ENABLED=0),
// with no file system paths (-trimpath), no build id and no VCS stamp, so
// that the same commit gives the same bytes.
func compile(ctx context.Context, p *plan) (*binary, error) {
	b, err := goBuild(ctx, p, p.app.Package, p.opts.BuildTags, "")
	if err != nil {
		return nil, err
	}
	gv, err := exec.CommandContext(ctx, p.goCmd, "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("images: go env GOVERSION: %w", err)
	}
	return &binary{init: b, goVersion: strings.TrimSpace(string(gv)), appVersion: sourceVersion(ctx, p.sourceDir)}, nil
}

// goBuild builds package pkg for the board, reproducibly, with the build
// tags and extra linker flags given, and returns the program.
func goBuild(ctx context.Context, p *plan, pkg string, tags []string, ldflags string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "nymote-build-")
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "init")
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=" + ldflags}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.CommandContext(ctx, p.goCmd, append(args, "-o", out, pkg)...)
	cmd.Dir = p.sourceDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.board.GOARCH, "GOARM="+p.board.GOARM, "GOFLAGS=", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("images: compiling %s for %s: %v\n%s", pkg, p.board.GOARCH, err, strings.TrimSpace(stderr.String()))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	return b, nil
}

// sourceVersion names the commit the app was built from ("unknown" outside
// git), with "-dirty" when the tree has uncommitted changes.
func sourceVersion(ctx context.Context, dir string) string {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "HEAD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	v := strings.TrimSpace(string(out))
	cmd = exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no")
	cmd.Dir = dir
	if st, err := cmd.Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		v += "-dirty"
	}
	return v
}
