package cli

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/internal/testutil"
)

// TestDiskCommands puts a store with a user on a data disk and reads it
// back: the exported store passes git fsck and still has the user.
func TestDiskCommands(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		if _, err := os.Stat("/usr/sbin/mkfs.ext4"); err != nil {
			t.Skip("mkfs.ext4 not installed: apt-get install e2fsprogs")
		}
	}
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	mustRun(t, "secret pw\n", "user", "add", "alice", "--password-stdin", "--data", data)
	img := filepath.Join(t.TempDir(), "data.img")
	out := mustRun(t, "", "disk", "create", "--data", data, "-o", img, "--size", "64M")
	if !strings.Contains(out, "1 users") {
		t.Errorf("disk create: %q", out)
	}
	exported := filepath.Join(t.TempDir(), "export")
	mustRun(t, "", "disk", "export", img, exported)
	if b, err := exec.Command("git", "--git-dir", filepath.Join(exported, "store.git"), "fsck", "--strict").CombinedOutput(); err != nil {
		t.Errorf("git fsck on the exported store: %v\n%s", err, b)
	}
	if out := mustRun(t, "", "user", "list", "--data", exported); !strings.Contains(out, "alice") {
		t.Errorf("user list of the exported store: %q", out)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no store", []string{"disk", "create", "--data", t.TempDir(), "-o", filepath.Join(t.TempDir(), "x.img")}, 1, "nymote store init"},
		{"bad size", []string{"disk", "create", "--data", data, "-o", "x.img", "--size", "lots"}, 2, "--size"},
		{"no output", []string{"disk", "create", "--data", data}, 2, "--output is required"},
		{"existing disk", []string{"disk", "create", "--data", data, "-o", img}, 1, "exists"},
		{"missing disk", []string{"disk", "export", filepath.Join(t.TempDir(), "none.img"), t.TempDir() + "/x"}, 1, "no such file"},
		{"unknown app", []string{"build", "fax", "-o", t.TempDir()}, 1, `unknown app "fax"`},
		{"unknown board", []string{"build", "hello", "--board", "vax", "-o", t.TempDir()}, 1, `unknown board "vax"`},
		{"run without disk", []string{"run", "hello"}, 2, "--disk is required"},
		{"run with a missing disk", []string{"run", "hello", "--disk", filepath.Join(t.TempDir(), "none.img")}, 1, "nymote disk create"},
		{"run on firecracker", []string{"run", "hello", "--board", "firecracker-x86_64", "--disk", img}, 2, "does not boot under QEMU"},
		{"bad set", []string{"build", "hello", "--set", "novalue", "-o", t.TempDir()}, 2, "KEY=VALUE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := run(t, "", tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("nymote %s: exit %d, %q; want exit %d with %q", strings.Join(tc.args, " "), code, errs, tc.code, tc.want)
			}
		})
	}
}

// TestRunCommand builds the hello appliance, boots it with nymote run (TCG),
// talks to it over the forwarded port and cancels the command as Ctrl-C
// does: the appliance must power off cleanly.
func TestRunCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				t.Skipf("%s not installed (apt-get install qemu-system-x86 e2fsprogs)", tool)
			}
		}
	}
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	img := filepath.Join(t.TempDir(), "data.img")
	mustRun(t, "", "disk", "create", "--data", data, "-o", img, "--size", "64M")
	port := testutil.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errs testutil.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"run", "hello", "--disk", img, "-o", t.TempDir(), "--kvm", "off", "--port-offset", strconv.Itoa(port - 7)},
			IO{In: strings.NewReader(""), Out: &out, Err: &errs})
	}()
	deadline := time.Now().Add(4 * time.Minute)
	for !strings.Contains(out.String(), "hello hello listening on") {
		select {
		case code := <-done:
			t.Fatalf("nymote run exited with %d before the appliance listened:\n%s%s", code, out.String(), errs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listener line:\n%s%s", out.String(), errs.String())
		}
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	greeting, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || !strings.HasPrefix(greeting, "hello from nymote (boot 1)") {
		t.Errorf("greeting: %q, %v", greeting, err)
	}
	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("nymote run: exit %d\n%s", code, errs.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("nymote run did not return after Ctrl-C")
	}
	for _, want := range []string{"power off requested by power button", "nymote: powering off"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errs.String(), "run: powered off") {
		t.Errorf("stderr lacks the powered-off line:\n%s", errs.String())
	}
}

// TestRunRefuses checks refusals of nymote run that come before any boot:
// a --kvm value it does not know (before building anything), and with
// --no-build an image built for another board than --board (the board
// resolved from --board is the one the launcher is handed).
func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "data.img")
	os.WriteFile(disk, nil, 0o600)
	if code, _, errs := run(t, "", "run", "hello", "--disk", disk, "-o", dir, "--kvm", "maybe"); code != 2 || !strings.Contains(errs, `--kvm "maybe"`) {
		t.Errorf("--kvm maybe: exit %d, %q; want a usage error", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		t.Error("built an image before refusing --kvm")
	}
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`{"app":"hello","board":"qemu-arm64","files":[{"name":"vmlinuz"}]}`), 0o644)
	code, _, errs := run(t, "", "run", "hello", "--board", "qemu-x86_64", "--disk", disk, "-o", dir, "--no-build", "--kvm", "off")
	if code != 1 || !strings.Contains(errs, "is for board qemu-arm64, not qemu-x86_64") {
		t.Errorf("an image of another board: exit %d, %q", code, errs)
	}
}

// TestMailDomain: nymote run names the mail domain of the image's command
// line (its first), or the app's default.
func TestMailDomain(t *testing.T) {
	for cmdline, want := range map[string]string{
		"console=ttyS0 quiet":                           "localhost",
		"console=ttyS0 nymote.domain=Example.org quiet": "example.org",
		"nymote.domain=a.example,b.example":             "a.example",
		"nymote.domain=":                                "localhost",
	} {
		if got := mailDomain(cmdline); got != want {
			t.Errorf("mailDomain(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

// TestBuildPeerSet: build refuses bad peer options before it builds,
// naming the option (the token and CA files are read at boot).
func TestBuildPeerSet(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"peer=home"}, "--set peer=home: want NAME=URL"},
		{[]string{"peer=home=ftp://x/replica"}, "--set peer=home=ftp://x/replica: replica: peer URL"},
		{[]string{"peer=home=https://alice:secret@x/replica"}, "no user name or password"},
		{[]string{"peer-as=b"}, "--set peer-as needs --set peer=NAME=URL"},
		{[]string{"peer-token=tok"}, "--set peer-token and --set peer-ca need --set peer=NAME=URL"},
		{[]string{"peer=a=https://x/replica", "peer-as=a"}, "--set peer-as=a: this node's own name"},
	} {
		dir := t.TempDir()
		args := []string{"build", "mail", "-o", dir}
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		code, _, errs := run(t, "", args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, %q; want a usage error with %q", tc.set, code, errs, tc.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
			t.Errorf("%v: built an image before refusing", tc.set)
		}
	}
	if err := checkPeerSet([]string{"peer=a=https://home.example.org:443/replica", "peer-as=b", "peer-token=a.token", "peer-ca=a.pem"}); err != nil {
		t.Errorf("good peer options refused: %v", err)
	}
}
