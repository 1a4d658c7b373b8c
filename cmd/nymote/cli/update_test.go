package cli

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/update"
)

func TestKeyCommands(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "nymote.key")
	out := mustRun(t, "", "key", "create", key)
	if !strings.Contains(out, "fingerprint") {
		t.Errorf("key create: %q", out)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
	if code, _, errs := run(t, "", "key", "create", key); code != 1 || !strings.Contains(errs, "exists") {
		t.Errorf("second key create: exit %d, %q", code, errs)
	}
	newKey := filepath.Join(dir, "new.key")
	mustRun(t, "", "key", "rotate", key, newKey)
	if _, err := os.Stat(newKey + update.ChainSuffix); err != nil {
		t.Errorf("key rotate wrote no chain: %v", err)
	}
	os.Chmod(key, 0o644)
	if code, _, errs := run(t, "", "build", "hello", "--sign", key, "-o", t.TempDir()); code != 1 || !strings.Contains(errs, "chmod 600") {
		t.Errorf("build --sign with a readable key: exit %d, %q", code, errs)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"update", "status"}, 2, "--disk"},
		{[]string{"update", "status", "--disk", filepath.Join(dir, "none.img")}, 1, "nymote run --slots"},
		{[]string{"update", "hello", "--to", "127.0.0.1:1", "--user", "admin"}, 2, "--image"},
		{[]string{"update", "hello", "--user", "admin", "--image", dir}, 2, "--to is required"},
	} {
		if code, _, errs := run(t, "", tc.args...); code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("nymote %s: exit %d, %q; want exit %d with %q", strings.Join(tc.args, " "), code, errs, tc.code, tc.want)
		}
	}
}

// TestUpdateBoot (a boot test, in make test) runs the hello appliance on
// microvm-x86_64 under nymote run --slots (TCG) and updates it over its
// update port with nymote update: an image signed by another key and a
// tampered one are refused before anything is written; a newer signed
// image test-boots, commits and serves; then an image whose service exits
// at start test-boots, fails, and the appliance returns to the previous
// image by itself and serves it. Its data survive throughout (the boot
// counter on the data disk counts on).
func TestUpdateBoot(t *testing.T) {
	needBootTools(t)
	tmp := t.TempDir()
	key := filepath.Join(tmp, "nymote.key")
	mustRun(t, "", "key", "create", key)
	other := filepath.Join(tmp, "other.key")
	mustRun(t, "", "key", "create", other)
	v1 := buildSigned(t, key, filepath.Join(tmp, "v1"), "release=v1")
	v2 := variant(t, v1, filepath.Join(tmp, "v2"), key, "nymote.release=v2")
	broken := variant(t, v1, filepath.Join(tmp, "v3"), key, "nymote.release=v3", "nymote.crash=now")
	// v2 signed by another key, and v2 with a file changed after signing.
	otherSigned := copyDir(t, v2, filepath.Join(tmp, "other-signed"))
	osg, err := update.LoadSigner(other)
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := os.ReadFile(filepath.Join(otherSigned, update.ManifestFile))
	os.WriteFile(filepath.Join(otherSigned, update.SignatureFile), osg.SignManifest(mb), 0o644)
	tampered := copyDir(t, v2, filepath.Join(tmp, "tampered"))
	os.WriteFile(filepath.Join(tampered, "cmdline.txt"), []byte("console=ttyS0 init=/bin/sh\n"), 0o644)

	disk := helloDisk(t, tmp)

	port := testutil.FreePort(t)
	updateAddr := testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errs testutil.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"run", "hello", "--board", updateBoard, "--no-build", "-o", v1, "--disk", disk, "--slots",
			"--kvm", "off", "--port-offset", strconv.Itoa(port - 7), "--update-port", updateAddr},
			IO{In: strings.NewReader(""), Out: &out, Err: &errs})
	}()
	defer func() {
		if t.Failed() {
			t.Logf("console:\n%s\nnymote run:\n%s", out.String(), errs.String())
		}
	}()
	// waitFor waits until buf holds want n times.
	waitFor := func(buf *testutil.Buffer, want string, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Minute)
		for strings.Count(buf.String(), want) < n {
			select {
			case code := <-done:
				t.Fatalf("nymote run exited with %d while waiting for %q", code, want)
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q (#%d) within 5 minutes", want, n)
			}
		}
	}
	fpRE := regexp.MustCompile(`certificate sha256 ([0-9a-f]{64})`)
	fingerprint := func() string {
		m := fpRE.FindAllStringSubmatch(out.String(), -1)
		if len(m) == 0 {
			t.Fatal("no update port certificate on the console")
		}
		return m[len(m)-1][1]
	}
	send := func(dir string) (int, string) {
		code, o, e := run(t, "sesame\n", "update", "hello", "--to", updateAddr, "--image", dir, "--user", "admin", "--password-stdin", "--fingerprint", fingerprint())
		return code, o + e
	}

	waitFor(&out, "hello good: serving", 1)
	if g := greet(t, port); !strings.HasPrefix(g, "hello from nymote v1 (boot 1)") {
		t.Fatalf("first boot greets %q", g)
	}
	// The data disk's line is left out: debugfs reads the disk while
	// the guest has it mounted, and sees the format record once the
	// guest's kernel has written it back.
	slotStatus := func() string {
		t.Helper()
		var keep []string
		for _, l := range strings.Split(mustRun(t, "", "update", "status", "--disk", disk), "\n") {
			if !strings.HasPrefix(l, "data disk ") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	statusBefore := slotStatus()

	// Refused before anything is written.
	if code, o := send(otherSigned); code != 1 || !strings.Contains(o, "403") || !strings.Contains(o, "not signed by a trusted key") {
		t.Errorf("another key's image: exit %d, %q", code, o)
	}
	if code, o := send(tampered); code != 1 || !strings.Contains(o, "422") {
		t.Errorf("tampered image: exit %d, %q", code, o)
	}
	if code, _, e := run(t, "guess\n", "update", "hello", "--to", updateAddr, "--image", v2, "--user", "admin", "--password-stdin", "--fingerprint", fingerprint()); code != 1 || !strings.Contains(e, "401") {
		t.Errorf("wrong password: exit %d, %q", code, e)
	}
	if b, err := os.ReadFile(filepath.Join(update.SlotsDir(disk), update.UpdateDiskFile)); err != nil || !strings.HasPrefix(string(b[:64]), "NYMOTE-UPDATE-DISK-1\nempty\n") {
		t.Errorf("the update disk was written by a refused update (%v)", err)
	}
	// An image whose manifest says it writes data format 2 and cannot
	// serve format 1, the disk's (the appliance recorded format 1 at its
	// first boot): refused by the appliance before anything is written.
	unreadable := copyDir(t, v2, filepath.Join(tmp, "unreadable"))
	um := readManifest(t, unreadable)
	um["data_format"] = map[string]any{"version": 2}
	resign(t, unreadable, key, um, nil)
	if code, o := send(unreadable); code != 1 || !strings.Contains(o, "409") || !strings.Contains(o, "cannot serve format 1") {
		t.Errorf("an image that cannot read the disk's data format: exit %d, %q", code, o)
	}
	if s := slotStatus(); s != statusBefore {
		t.Errorf("status changed after refusals:\n%s\nwas:\n%s", s, statusBefore)
	}
	if g := greet(t, port); !strings.HasPrefix(g, "hello from nymote v1") {
		t.Errorf("after the refusals the appliance greets %q", g)
	}

	// A good update: test boot, commit, serves v2.
	start := time.Now()
	if code, o := send(v2); code != 0 || !strings.Contains(o, "accepted hello") {
		t.Fatalf("update to v2: exit %d, %q", code, o)
	}
	waitFor(&errs, "slot b reported good: committed", 1)
	t.Logf("update to v2: command to committed in %s", time.Since(start).Round(100*time.Millisecond))
	if g := greet(t, port); !strings.HasPrefix(g, "hello from nymote v2 (boot 2)") {
		t.Errorf("after the update the appliance greets %q, want v2, boot 2", g)
	}

	// An image whose service exits at start: back to v2 by itself.
	if code, o := send(broken); code != 0 {
		t.Fatalf("update to the broken image: exit %d, %q", code, o)
	}
	waitFor(&errs, "did not report good: back to slot b", 1)
	waitFor(&out, "hello good: serving", 3)
	if g := greet(t, port); !strings.HasPrefix(g, "hello from nymote v2") {
		t.Errorf("after the rollback the appliance greets %q, want v2", g)
	}
	st := mustRun(t, "", "update", "status", "--disk", disk)
	if !regexp.MustCompile(`slot b .* committed`).MatchString(st) || !strings.Contains(st, "last rollback: from slot a") {
		t.Errorf("status after the rollback:\n%s", st)
	}

	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("nymote run: exit %d", code)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("nymote run did not return after Ctrl-C")
	}
	// The appliance recorded its data format on the disk.
	if st := mustRun(t, "", "update", "status", "--disk", disk); !strings.Contains(st, "data disk "+disk+": data format 1") || !regexp.MustCompile(`slot b .* format 1 +committed`).MatchString(st) {
		t.Errorf("status after power-off:\n%s", st)
	}
}

// greet connects to the hello appliance on the host port and returns its
// greeting line.
func greet(t *testing.T, port int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	g, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return strings.TrimSpace(g)
}

// copyDir copies the files of src into dst.
func copyDir(t *testing.T, src, dst string) string {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// updateBoard is the board of the update boot tests.
const updateBoard = "microvm-x86_64"

func needBootTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots VMs")
	}
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				t.Skipf("%s not installed (apt-get install qemu-system-x86 e2fsprogs)", tool)
			}
		}
	}
}

// buildSigned builds hello for updateBoard signed with key into dir, with
// --set options.
func buildSigned(t *testing.T, key, dir string, set ...string) string {
	t.Helper()
	args := []string{"build", "hello", "--board", updateBoard, "--sign", key, "-o", dir}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	mustRun(t, "", args...)
	return dir
}

// variant copies the signed image in src to dst with options added to its
// kernel command line (manifest and cmdline.txt, which the launcher boots
// with), and signs it again with key: another signed image without another
// build.
func variant(t *testing.T, src, dst, key string, opts ...string) string {
	t.Helper()
	copyDir(t, src, dst)
	m := readManifest(t, dst)
	cmdline := m["cmdline"].(string) + " " + strings.Join(opts, " ")
	m["cmdline"] = cmdline
	resign(t, dst, key, m, map[string][]byte{images.CmdlineFile: []byte(cmdline + "\n")})
	return dst
}

// readManifest reads the manifest of the image in dir, as JSON to edit.
func readManifest(t *testing.T, dir string) map[string]any {
	t.Helper()
	var m map[string]any
	mb, err := os.ReadFile(filepath.Join(dir, update.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// resign writes files into the image in dir, records their sizes and
// sums in its manifest m, writes m and signs it again with key.
func resign(t *testing.T, dir, key string, m map[string]any, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
		sum := sha256.Sum256(b)
		for _, f := range m["files"].([]any) {
			if f := f.(map[string]any); f["name"] == name {
				f["size"], f["sha256"] = len(b), hex.EncodeToString(sum[:])
			}
		}
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	os.WriteFile(filepath.Join(dir, update.ManifestFile), append(mb, '\n'), 0o644)
	sg, err := update.LoadSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, update.SignatureFile), sg.SignManifest(append(mb, '\n')), 0o644)
}

// helloDisk makes a data disk in dir whose store has hello's update
// administrator (admin, password sesame).
func helloDisk(t *testing.T, dir string) string {
	t.Helper()
	data := t.TempDir()
	mustRun(t, "", "store", "init", "--data", data)
	os.WriteFile(filepath.Join(data, "hello-admin"), []byte("admin sesame\n"), 0o600)
	disk := filepath.Join(dir, "data.img")
	mustRun(t, "", "disk", "create", "--data", data, "-o", disk, "--size", "64M")
	return disk
}

// runner is one nymote run --slots of hello in the background.
type runner struct {
	t          *testing.T
	out, errs  testutil.Buffer
	done       chan int
	cancel     context.CancelFunc
	port       int
	updateAddr string
	disk       string
}

func startRunner(t *testing.T, dir, disk string) *runner {
	t.Helper()
	r := &runner{t: t, done: make(chan int, 1), port: testutil.FreePort(t), updateAddr: testutil.FreeAddr(t), disk: disk}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.done <- Main(ctx, []string{"run", "hello", "--board", updateBoard, "--no-build", "-o", dir, "--disk", disk, "--slots",
			"--kvm", "off", "--port-offset", strconv.Itoa(r.port - 7), "--update-port", r.updateAddr},
			IO{In: strings.NewReader(""), Out: &r.out, Err: &r.errs})
	}()
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			t.Logf("console:\n%s\nnymote run:\n%s", r.out.String(), r.errs.String())
		}
	})
	return r
}

// waitFor waits until buf holds want n times; with exitOK an exit of
// nymote run ends the wait (and returns false).
func (r *runner) waitFor(buf *testutil.Buffer, want string, n int) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for strings.Count(buf.String(), want) < n {
		select {
		case code := <-r.done:
			r.t.Fatalf("nymote run exited with %d while waiting for %q", code, want)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no %q (#%d) within 5 minutes", want, n)
		}
	}
}

// send sends the image in dir with nymote update, in the background.
func (r *runner) send(dir string) chan string {
	m := regexp.MustCompile(`certificate sha256 ([0-9a-f]{64})`).FindAllStringSubmatch(r.out.String(), -1)
	if len(m) == 0 {
		r.t.Fatal("no update port certificate on the console")
	}
	res := make(chan string, 1)
	go func() {
		var out, errs testutil.Buffer
		code := Main(context.Background(), []string{"update", "hello", "--to", r.updateAddr, "--image", dir, "--user", "admin", "--password-stdin", "--fingerprint", m[len(m)-1][1]},
			IO{In: strings.NewReader("sesame\n"), Out: &out, Err: &errs})
		res <- fmt.Sprintf("exit %d: %s%s", code, out.String(), errs.String())
	}()
	return res
}

// cutPower kills the QEMU booting r's data disk, as pulling the plug.
func (r *runner) cutPower() {
	r.t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "qemu-system") || !strings.Contains(string(b), "file="+r.disk+",") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			return
		}
	}
	r.t.Log("no QEMU to cut the power of (it had exited)")
}

// TestUpdatePowerCut (about 15 to 25 s a stage under TCG; skipped with
// -short) cuts the power (kills QEMU) at each stage of an update
// of hello on microvm-x86_64: while the image is sent and written, once it
// is accepted (before the test boot), during the test boot, and after the
// commit. Then the appliance is started again: it must come up serving
// one of the two images, and its data disk must hold a clean store (git
// fsck) and its boot counter.
func TestUpdatePowerCut(t *testing.T) {
	if testing.Short() {
		t.Skip("eight QEMU boots: skipped with -short")
	}
	needBootTools(t)
	tmp := t.TempDir()
	key := filepath.Join(tmp, "nymote.key")
	mustRun(t, "", "key", "create", key)
	v1 := buildSigned(t, key, filepath.Join(tmp, "v1"), "release=v1")
	v2 := variant(t, v1, filepath.Join(tmp, "v2"), key, "nymote.release=v2")
	// For the cut during the test boot, a v2 that takes an hour to call
	// itself good: the cut must come before the commit, and on a loaded
	// machine the test came to it after the 5 s settle had passed (the
	// test boot had committed, and its VM was gone).
	v2slow := variant(t, v1, filepath.Join(tmp, "v2slow"), key, "nymote.release=v2", "nymote.settle=1h")
	for _, stage := range []string{"sending", "accepted", "test boot", "committed"} {
		t.Run(stage, func(t *testing.T) {
			disk := helloDisk(t, t.TempDir())
			r := startRunner(t, v1, disk)
			r.waitFor(&r.out, "hello good: serving", 1)
			img := v2
			if stage == "test boot" {
				img = v2slow
			}
			res := r.send(img)
			switch stage {
			case "sending":
				r.cutPower()
			case "accepted":
				t.Log(<-res)
				r.cutPower()
			case "test boot":
				<-res
				r.waitFor(&r.errs, "test boot of the new image", 1)
				r.waitFor(&r.out, "init started", 2) // the test boot's
				r.cutPower()
			case "committed":
				<-res
				r.waitFor(&r.errs, "reported good: committed", 1)
				r.cutPower()
			}
			// nymote run ends when a committed image's VM dies, and boots
			// again by itself after a cut test boot: stop it either way.
			r.cancel()
			select {
			case <-r.done:
			case <-time.After(3 * time.Minute):
				t.Fatal("nymote run did not end")
			}
			// The host starts the appliance again.
			r2 := startRunner(t, v1, disk)
			r2.waitFor(&r2.out, "hello good: serving", 1)
			g := greet(t, r2.port)
			if !strings.HasPrefix(g, "hello from nymote v1") && !strings.HasPrefix(g, "hello from nymote v2") {
				t.Errorf("after a cut at %s the appliance greets %q", stage, g)
			}
			if stage == "committed" && !strings.HasPrefix(g, "hello from nymote v2") {
				t.Errorf("after a cut after the commit the appliance greets %q, want v2", g)
			}
			if stage == "test boot" && !strings.HasPrefix(g, "hello from nymote v1") {
				t.Errorf("after a cut during the test boot the appliance greets %q, want v1 (rolled back)", g)
			}
			t.Logf("cut at %s: serves %q", stage, g)
			r2.cancel()
			if code := <-r2.done; code != 0 {
				t.Errorf("nymote run: exit %d", code)
			}
			exported := filepath.Join(t.TempDir(), "export")
			mustRun(t, "", "disk", "export", disk, exported)
			if b, err := exec.Command("git", "--git-dir", filepath.Join(exported, "store.git"), "fsck", "--strict").CombinedOutput(); err != nil {
				t.Errorf("git fsck after a cut at %s: %v\n%s", stage, err, b)
			}
		})
	}
}
