package nymote

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/appliance/app"
)

// TestPoweroffHelper runs each appliance program under the name poweroff,
// as the kernel runs the image's /sbin/poweroff (a link to /init) when
// Xen's xl shutdown asks for an orderly power off. It must ask PID 1 to
// stop cleanly (SIGTERM) and exit 0, not fall into the app's host mode.
// PID 1 is a shell in a PID namespace of its own (unshare, as root) that
// reports the signal. The apps are those of app.Apps, each built from its
// main package as images builds it.
func TestPoweroffHelper(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every app program")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace (unshare --pid)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not installed (util-linux)")
	}
	for _, name := range app.Names() {
		pkg := "./" + strings.TrimPrefix(app.Apps[name].Package, module+"/")
		t.Run(name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "poweroff")
			if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
				t.Fatalf("go build %s: %v\n%s", pkg, err, out)
			}
			// The shell is PID 1 of the namespace; it runs the helper
			// and waits for it; a SIGTERM runs its trap.
			script := `trap 'echo init got SIGTERM; exit 0' TERM; "$1"; echo "helper exited $?"; wait; echo no signal; exit 1`
			out, err := exec.Command("unshare", "--pid", "--fork", "sh", "-c", script, "sh", bin).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "init got SIGTERM") {
				t.Errorf("%s run as poweroff: %v\n%s", pkg, err, out)
			}
			if strings.Contains(string(out), "helper exited") && !strings.Contains(string(out), "helper exited 0") {
				t.Errorf("%s run as poweroff did not exit 0:\n%s", pkg, out)
			}
		})
	}
}
