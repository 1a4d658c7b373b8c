package dav_test

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/nymote/nymote/apps/calendar/caldav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
)

// TestPythonCaldav runs testdata/python_caldav.py with python3-caldav
// (Debian package python3-caldav, Debian's own python3).
func TestPythonCaldav(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import caldav").Run(); err != nil {
		t.Skip("python3-caldav is not installed (apt-get install -y python3-caldav)")
	}
	s := davtest.Start(t, caldav.New(0))
	out, err := exec.Command(py, "testdata/python_caldav.py", s.URL+"/", "alice", davtest.Users["alice"]).CombinedOutput()
	t.Logf("python3-caldav:\n%s", out)
	if err != nil || !strings.Contains(string(out), "\nOK") {
		t.Fatalf("python3-caldav: %v", err)
	}
}

var litmusSummary = regexp.MustCompile(`summary for .(\w+).: of (\d+) tests run: (\d+) passed`)

// TestLitmus runs the litmus WebDAV suites (Debian package litmus) against
// the WebDAV layer of the contacts server. basic, props, copymove and http
// must pass in full; locks is not run (no LOCK: the server is not class 2).
// LITMUS_LOG=1 logs litmus's whole output.
func TestLitmus(t *testing.T) {
	bin, err := exec.LookPath("litmus")
	if err != nil {
		t.Skip("litmus is not installed (apt-get install -y litmus)")
	}
	s := start(t)
	cmd := exec.Command(bin, "-k", s.URL+"/alice/", "alice", davtest.Users["alice"])
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "TESTS=basic props copymove http")
	out, _ := cmd.CombinedOutput()
	if os.Getenv("LITMUS_LOG") != "" {
		t.Logf("%s", out)
	}
	got := map[string][2]string{}
	for _, m := range litmusSummary.FindAllStringSubmatch(string(out), -1) {
		got[m[1]] = [2]string{m[2], m[3]}
		t.Logf("litmus %s: %s of %s passed", m[1], m[3], m[2])
	}
	for _, suite := range []string{"basic", "props", "copymove", "http"} {
		if r, ok := got[suite]; !ok || r[0] != r[1] {
			t.Errorf("litmus %s: %v\n%s", suite, r, out)
		}
	}
}
