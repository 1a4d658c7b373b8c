package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/internal/fat"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/launch"
)

// TestSDCardUpdate updates the hello appliance on a Cubieboard SD card
// under QEMU 10 (-M cubieboard; each reboot of the board is a power cycle:
// QEMU exits and starts again on the same card, see startSDBoard): the card is
// flashed with v1 in slot a; an image signed by another key (403) and a
// tampered one (422) are refused and the card's slots and environment are
// unchanged; v2, sent over the network, is written into slot b by the
// appliance, test-booted by boot.scr (nymote_tried saved before the boot),
// committed by the appliance on its good line, and serves (boot 2).
// nymote update status --card shows both slots; rollback --card makes
// slot a committed again.
//
// With NYMOTE_SD_UPDATE=1 it goes on before the rollback (six more boots
// under TCG, about four minutes): an image whose service exits at start is
// written into slot a and test-booted; the appliance reboots, boot.scr
// finds slot a tried and not committed and boots slot b again, which
// serves v2; then an image that serves but is not good within its test
// boot's bound (nymote.testboot=20s, nymote.settle=10m): the appliance
// reboots at the bound and the board is back on v2; then uboot.env is torn
// (as by a power cut while it was written) with the board off: U-Boot
// boots slot a with its built-in environment, the appliance restores
// uboot.env with slot a on trial, it is not good within the bound, and the
// board is back on v2.
func TestSDCardUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("boots an SD card under QEMU")
	}
	ctx := context.Background()
	q, err := launch.FindSDQEMU(ctx)
	if err != nil {
		t.Skip(err)
	}
	b, err := boards.Get("cubieboard")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.UBoot); err != nil {
		t.Skipf("%s missing: dpkg --add-architecture armhf; apt-get install u-boot-sunxi:armhf (make test-deps)", b.UBoot)
	}
	needBootTools(t)
	tmp := t.TempDir()
	key := filepath.Join(tmp, "nymote.key")
	mustRun(t, "", "key", "create", key)
	other := filepath.Join(tmp, "other.key")
	mustRun(t, "", "key", "create", other)
	disk := helloDisk(t, tmp)
	v1 := filepath.Join(tmp, "v1")
	mustRun(t, "", "build", "hello", "--board", "cubieboard", "--sign", key, "-o", v1, "--set", "release=v1", "--sd-data", disk)
	v2 := sdVariant(t, v1, filepath.Join(tmp, "v2"), key, "nymote.release=v2")
	otherSigned := sdVariant(t, v1, filepath.Join(tmp, "other-signed"), other, "nymote.release=v2")
	tampered := sdVariant(t, v1, filepath.Join(tmp, "tampered"), key, "nymote.release=v2")
	os.WriteFile(filepath.Join(tampered, images.SDSlotScriptFile), []byte("# boot something else\n"), 0o644)

	// The card: flashed with v1 (a copy of the image, grown to a power of
	// two for QEMU).
	card := filepath.Join(tmp, "card.img")
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(v1, images.SDCardFile), card).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if err := launch.PowerOfTwo(card); err != nil {
		t.Fatal(err)
	}
	st := mustRun(t, "", "update", "status", "--card", card)
	if !regexp.MustCompile(`slot a +hello .*as flashed.* committed\n`).MatchString(st) || !regexp.MustCompile(`slot b .* empty\n`).MatchString(st) {
		t.Errorf("status of a new card:\n%s", st)
	}

	port := testutil.FreePort(t)
	updateAddr := testutil.FreeAddr(t)
	board := startSDBoard(t, q, launch.SDRun{Card: card, Forwards: []launch.Forward{
		{Host: fmt.Sprintf("127.0.0.1:%d", port), Guest: 7}, {Host: updateAddr, Guest: 9443}}})
	defer func() {
		if t.Failed() {
			t.Logf("console:\n%s", board.console())
		}
	}()
	wait := func(want string, n int) {
		t.Helper()
		board.wait(want, n)
	}
	fpRE := regexp.MustCompile(`certificate sha256 ([0-9a-f]{64})`)
	send := func(dir string) (int, string) {
		m := fpRE.FindAllStringSubmatch(board.console(), -1)
		if len(m) == 0 {
			t.Fatal("no update port certificate on the console")
		}
		code, o, e := run(t, "sesame\n", "update", "hello", "--to", updateAddr, "--image", dir, "--user", "admin", "--password-stdin", "--fingerprint", m[len(m)-1][1])
		return code, o + e
	}

	wait("hello good: serving", 1)
	if !strings.Contains(board.console(), "booted from slot a (committed)") {
		t.Error("the first boot does not say it booted from slot a (committed)")
	}
	if g := greet(t, port); !strings.HasPrefix(g, "hello from nymote v1 (boot 1)") {
		t.Fatalf("first boot greets %q", g)
	}

	// Refused before anything is written.
	cardState := func() string {
		return mustRun(t, "", "update", "status", "--card", card)
	}
	before := cardState()
	slotB := readAt(t, card, 73<<20, 64<<20)
	if code, o := send(otherSigned); code != 1 || !strings.Contains(o, "403") {
		t.Errorf("another key's image: exit %d, %q", code, o)
	}
	if code, o := send(tampered); code != 1 || !strings.Contains(o, "422") {
		t.Errorf("tampered image: exit %d, %q", code, o)
	}
	if s := cardState(); s != before {
		t.Errorf("status changed after refusals:\n%s\nwas:\n%s", s, before)
	}
	if string(readAt(t, card, 73<<20, 64<<20)) != string(slotB) {
		t.Error("slot b was written by a refused update")
	}

	// A good update: written into slot b, test boot, commit, serves v2.
	start := time.Now()
	if code, o := send(v2); code != 0 || !strings.Contains(o, "accepted hello") {
		t.Fatalf("update to v2: exit %d, %q", code, o)
	}
	accepted := time.Since(start)
	wait("nymote: test boot of slot b (committed: a)", 1)
	wait("hello listening on", 2)
	serving := time.Since(start)
	if g := greet(t, port); !strings.HasPrefix(g, "hello from nymote v2 (boot 2)") {
		t.Errorf("after the update the appliance greets %q, want v2, boot 2", g)
	}
	wait("slot b committed", 1)
	t.Logf("update to v2 on the SD card: accepted (sent, verified, slot b written) in %s, serving v2 %s after the command, committed after %s",
		accepted.Round(100*time.Millisecond), serving.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
	st = cardState()
	if !regexp.MustCompile(`slot a +hello .* previous\n`).MatchString(st) || !regexp.MustCompile(`slot b +hello .*hello for cubieboard, [^ ]+ \([0-9a-f]+\).* committed\n`).MatchString(st) {
		t.Errorf("status after the update:\n%s", st)
	}

	if os.Getenv("NYMOTE_SD_UPDATE") == "1" {
		broken := sdVariant(t, v1, filepath.Join(tmp, "v3"), key, "nymote.release=v3", "nymote.crash=now")
		if code, o := send(broken); code != 0 {
			t.Fatalf("update to the broken image: exit %d, %q", code, o)
		}
		wait("nymote: test boot of slot a (committed: b)", 1)
		wait("crashing as asked", 1)
		wait("nymote: slot a was tried and not committed: back to slot b", 1)
		wait("hello good: serving", 3)
		if g := greet(t, port); !strings.HasPrefix(g, "hello from nymote v2") {
			t.Errorf("after the failed test boot the appliance greets %q, want v2", g)
		}
		if st := cardState(); !regexp.MustCompile(`slot b .* committed\n`).MatchString(st) {
			t.Errorf("status after the failed test boot:\n%s", st)
		}

		// An image that serves but is not good within the test boot's
		// bound (its settle time is longer): the appliance reboots at
		// the bound, and the next boot is slot b again.
		slow := sdVariant(t, v1, filepath.Join(tmp, "v4"), key, "nymote.release=v4", "nymote.settle=10m", "nymote.testboot=20s")
		if code, o := send(slow); code != 0 {
			t.Fatalf("update to the slow image: exit %d, %q", code, o)
		}
		wait("nymote: test boot of slot a (committed: b)", 2)
		wait("the test boot was not good within 20s: stopping hello, rebooting into the committed slot b", 1)
		wait("nymote: slot a was tried and not committed: back to slot b", 2)
		wait("hello good: serving", 4)
		if g := greet(t, port); !strings.HasPrefix(g, "hello from nymote v2") {
			t.Errorf("after the test boot's bound the appliance greets %q, want v2", g)
		}

		// A power cut while uboot.env was written (torn): U-Boot boots
		// with its built-in environment, so slot a (the slow image);
		// the appliance restores uboot.env with slot a on trial, is not
		// good within the bound, and the next boot is slot b again.
		board.stop()
		f, err := os.OpenFile(card, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		at, _, err := fat.Locate(f, 1<<20, "uboot.env")
		if err != nil {
			t.Fatal(err)
		}
		// Over the variables (the rest of the area is zeros already).
		f.WriteAt(bytes.Repeat([]byte{0x5a}, 16<<10), at+1024)
		f.Close()
		board = startSDBoard(t, q, board.run)
		wait("bad CRC", 1)
		wait("was damaged (U-Boot booted with its built-in environment): restored from uboot.def, slot a on trial", 1)
		wait("the test boot was not good within 20s", 1)
		wait("nymote: slot a was tried and not committed: back to slot b", 1)
		wait("hello good: serving", 1)
		if g := greet(t, port); !strings.HasPrefix(g, "hello from nymote v2") {
			t.Errorf("after the torn environment the appliance greets %q, want v2", g)
		}
	}

	// Rollback by hand, the board off.
	board.stop()
	if out := mustRun(t, "", "update", "rollback", "--card", card); !strings.Contains(out, "boots slot a") {
		t.Errorf("rollback: %q", out)
	}
	if st := cardState(); !regexp.MustCompile(`slot a +hello .* committed\n`).MatchString(st) {
		t.Errorf("status after the rollback:\n%s", st)
	}
}

// sdVariant copies the signed SD card image in src to dst (without its
// card image, which an update does not carry) with options added to its
// kernel command line (manifest, cmdline.txt and the slot script), and
// signs it again with key.
func sdVariant(t *testing.T, src, dst, key string, opts ...string) string {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Name() == images.SDCardFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := readManifest(t, dst)
	cmdline := m["cmdline"].(string) + " " + strings.Join(opts, " ")
	m["cmdline"] = cmdline
	scr, err := images.SDSlotScript("sun4i-a10-cubieboard.dtb", cmdline, "")
	if err != nil {
		t.Fatal(err)
	}
	resign(t, dst, key, m, map[string][]byte{images.CmdlineFile: []byte(cmdline + "\n"), images.SDSlotScriptFile: scr})
	return dst
}

// readAt reads n bytes at off of the file at path.
func readAt(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(io.NewSectionReader(f, off, n), b); err != nil {
		t.Fatal(err)
	}
	return b
}

// sdBoard is an SD card board under QEMU whose reboots are power cycles:
// when QEMU exits (the guest rebooted; -no-reboot), it starts again on
// the same card. The board reboots by itself under QEMU too (its
// watchdog, launch.SDRun.Reboot), but its Ethernet has no fixed MAC
// address there (U-Boot finds none to give it), so each boot takes
// another address from QEMU's DHCP server while the host's forwards
// still point at the first: a fresh QEMU gives it the first again.
type sdBoard struct {
	t   *testing.T
	q   *launch.SDQEMU
	run launch.SDRun

	mu      sync.Mutex
	vms     []*launch.VM
	stopped bool
}

func startSDBoard(t *testing.T, q *launch.SDQEMU, run launch.SDRun) *sdBoard {
	t.Helper()
	b := &sdBoard{t: t, q: q, run: run}
	if err := b.boot(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.stop)
	return b
}

// boot starts QEMU, and again whenever it exits until stop.
func (b *sdBoard) boot() error {
	vm, err := launch.StartSDCard(b.q, b.run, nil)
	if err != nil {
		return err
	}
	b.mu.Lock()
	if b.stopped { // stop ran while this one started
		b.mu.Unlock()
		vm.Kill()
		return nil
	}
	b.vms = append(b.vms, vm)
	b.mu.Unlock()
	go func() {
		<-vm.Done()
		b.mu.Lock()
		stopped := b.stopped
		b.mu.Unlock()
		if !stopped {
			if err := b.boot(); err != nil {
				b.t.Errorf("starting QEMU again: %v", err)
			}
		}
	}()
	return nil
}

func (b *sdBoard) stop() {
	b.mu.Lock()
	b.stopped = true
	vms := b.vms
	b.mu.Unlock()
	for _, vm := range vms {
		vm.Kill()
	}
}

// lines are every boot's console lines.
func (b *sdBoard) lines() []string {
	b.mu.Lock()
	vms := append([]*launch.VM(nil), b.vms...)
	b.mu.Unlock()
	var out []string
	for _, vm := range vms {
		for _, l := range vm.Lines() {
			out = append(out, l.Text)
		}
	}
	return out
}

func (b *sdBoard) console() string { return strings.Join(b.lines(), "\n") }

// wait waits for the nth console line (over all boots) holding want;
// each boot under TCG takes about a minute on a loaded machine.
func (b *sdBoard) wait(want string, n int) {
	b.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		seen := 0
		for _, l := range b.lines() {
			if strings.Contains(l, want) {
				seen++
			}
		}
		if seen >= n {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("no %q (#%d) on the console within 5 minutes", want, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
