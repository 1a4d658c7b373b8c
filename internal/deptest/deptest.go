// Package deptest is for dependency guard tests: it lists what packages
// import and link, as the go command sees them (go list -json), so that a
// test can fail on what must not be there (the host tool links no gVisor;
// apps reach go-git only through store). The repository's guards are in
// deps_test.go at its root. A guard names the rule it keeps and is
// checked against the tree as it is, so breaking a rule fails it.
//
// Patterns follow the go command's: "gvisor.dev/..." matches a path and
// everything below it, any other pattern matches one path.
package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Package is what go list says about one package.
type Package struct {
	ImportPath string
	Standard   bool
	// Imports are its direct imports; Deps everything it links
	// (transitively), both without its tests.
	Imports, Deps []string
	// TestImports and XTestImports are the direct imports of its
	// in-package and external tests.
	TestImports, XTestImports []string
	// Error is go list's error for the package, if any.
	Error *struct{ Err string }
}

// AllImports are p's direct imports, its tests' included.
func (p Package) AllImports() []string {
	return append(append(append([]string(nil), p.Imports...), p.TestImports...), p.XTestImports...)
}

// List runs go list -json in dir (with env added to the environment, such
// as "GOOS=linux") on patterns and returns the packages it names. With
// deps set it lists everything they link too (go list -deps). It fails t
// when go list fails or names a package it could not load.
func List(t testing.TB, dir string, env []string, deps bool, patterns ...string) []Package {
	t.Helper()
	args := []string{"list", "-json"}
	if deps {
		args = append(args, "-deps")
	}
	cmd := exec.Command("go", append(args, patterns...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, stderr.Bytes())
	}
	pkgs, err := decode(out)
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(cmd.Args[1:], " "), err)
	}
	for _, p := range pkgs {
		if p.Error != nil {
			t.Fatalf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
	}
	return pkgs
}

// decode reads go list -json's stream of objects.
func decode(b []byte) ([]Package, error) {
	var pkgs []Package
	d := json.NewDecoder(bytes.NewReader(b))
	for {
		var p Package
		err := d.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading go list's output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}

// Match reports whether path matches pattern: "x/..." matches x and the
// paths below it, any other pattern only itself.
func Match(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

// Matching returns the paths that match any of patterns, in order.
func Matching(paths []string, patterns ...string) []string {
	var out []string
	for _, p := range paths {
		for _, pat := range patterns {
			if Match(pat, p) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}
