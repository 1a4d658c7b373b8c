package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nymote/nymote/boards"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/kernel"
	"github.com/nymote/nymote/launch"
)

var (
	testRoot   string
	buildsMu   sync.Mutex
	builds     = map[string]*builtImage{}
	sourceRoot string
)

type builtImage struct {
	once sync.Once
	dir  string
	m    *Manifest
	err  error
}

func TestMain(m *testing.M) {
	var err error
	testRoot, err = os.MkdirTemp("", "nymote-images-test-")
	if err != nil {
		panic(err)
	}
	abs, _ := filepath.Abs("..")
	sourceRoot = abs
	code := m.Run()
	os.RemoveAll(testRoot)
	os.Exit(code)
}

// build builds app for board once per test binary and returns its folder.
func build(t *testing.T, app, board string, extra ...string) (string, *Manifest) {
	t.Helper()
	if testing.Short() {
		t.Skip("building images in -short mode")
	}
	if bd, err := boards.Get(board); err == nil {
		if src, err := kernel.Lookup(bd.Kernel); err == nil && src.Kind == kernel.Build {
			if err := kernel.CanBuild(src.GOARCH); err != nil {
				t.Skipf("board %s boots a kernel built here (%s), and this machine cannot build it: %v", board, bd.Kernel, err)
			}
		}
	}
	key := fmt.Sprint(app, board, extra)
	buildsMu.Lock()
	b := builds[key]
	if b == nil {
		b = &builtImage{dir: filepath.Join(testRoot, fmt.Sprintf("%s-%s-%d", app, board, len(builds)))}
		builds[key] = b
	}
	buildsMu.Unlock()
	outs := implementedOutputs(t, board)
	b.once.Do(func() {
		b.m, b.err = Build(context.Background(), Options{App: app, Board: board, OutDir: b.dir, SourceDir: sourceRoot, Cmdline: extra, Outputs: outs})
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.dir, b.m
}

// implementedOutputs returns the outputs of board that images can write,
// skipping the test when there are none.
func implementedOutputs(t *testing.T, board string) []boards.Output {
	t.Helper()
	b, err := boards.Get(board)
	if err != nil {
		t.Fatal(err)
	}
	var outs []boards.Output
	for _, o := range b.Outputs {
		if Implemented(o) {
			outs = append(outs, o)
		}
	}
	if len(outs) == 0 {
		t.Skipf("images cannot write any of %s's outputs (%v) yet", board, b.Outputs)
	}
	return outs
}

// needTool skips the test when a program is missing.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if _, err := datadisk.LookTool(name); err != nil {
			t.Skipf("%s not installed: apt-get install %s", name, pkg)
		}
	}
}

// killAtCleanup stops vm when the test ends, showing its console if the
// test failed.
func killAtCleanup(t *testing.T, vm *launch.VM) {
	t.Cleanup(func() {
		vm.Kill()
		if t.Failed() {
			t.Logf("console:\n%s", vm.Console())
		}
	})
}

// qemuImage returns the image in dir that m describes, as QEMU boots it.
func qemuImage(t *testing.T, dir string, m *Manifest) launch.Image {
	t.Helper()
	b, err := boards.Get(m.Board)
	if err != nil {
		t.Fatal(err)
	}
	img, err := m.QEMUImage(dir, b)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
