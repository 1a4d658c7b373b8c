package sdboot

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/internal/fat"
	"github.com/nymote/nymote/internal/ubootenv"
)

// TestChoose walks the try-once rule through its states: what boot.scr
// boots and saves, before and after.
func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    State
		boot  string
		after State
		save  bool
	}{
		{"new card", State{Committed: "a"}, "a", State{Committed: "a"}, false},
		{"committed b", State{Committed: "b"}, "b", State{Committed: "b"}, false},
		{"update written", State{Committed: "a", Next: "b"}, "b", State{Committed: "a", Next: "b", Tried: "b"}, true},
		{"test boot ended without a commit", State{Committed: "a", Next: "b", Tried: "b"}, "a", State{Committed: "a"}, true},
		{"stale tried of an older update", State{Committed: "a", Next: "b", Tried: "a"}, "b", State{Committed: "a", Next: "b", Tried: "b"}, true},
		{"tried left after a commit", State{Committed: "b", Tried: "b"}, "b", State{Committed: "b"}, true},
		{"next is the committed slot", State{Committed: "a", Next: "a"}, "a", State{Committed: "a"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			boot, after, save := Choose(tc.in)
			if boot != tc.boot || after != tc.after || save != tc.save {
				t.Errorf("Choose(%+v) = %s, %+v, save %v; want %s, %+v, save %v", tc.in, boot, after, save, tc.boot, tc.after, tc.save)
			}
		})
	}
	// A whole update, as boots follow each other: written, test boot,
	// then either the commit or a second boot without one.
	s := State{Committed: "a", Next: "b"}
	boot, s, _ := Choose(s)
	if boot != "b" {
		t.Fatalf("first boot after the update: slot %s", boot)
	}
	if boot, back, _ := Choose(s); boot != "a" || back != (State{Committed: "a"}) {
		t.Errorf("a boot after a test boot that did not commit: slot %s, %+v", boot, back)
	}
	s = State{Committed: "b"} // Commit
	if boot, _, save := Choose(s); boot != "b" || save {
		t.Errorf("after the commit: slot %s, save %v", boot, save)
	}
}

// TestStateOf reads states as boot.scr does: unknown values fall back.
func TestStateOf(t *testing.T) {
	e := ubootenv.New(EnvSize, map[string]string{VarSlot: "c", VarNext: "z", VarTried: "b"})
	if got := StateOf(e); got != (State{Committed: "a", Tried: "b"}) {
		t.Errorf("got %+v", got)
	}
	if err := (State{Committed: "b", Next: "a"}).Apply(e); err != nil {
		t.Fatal(err)
	}
	if got := StateOf(e); got != (State{Committed: "b", Next: "a"}) {
		t.Errorf("after Apply: %+v", got)
	}
	if _, ok := e.Get(VarTried); ok {
		t.Error("an empty tried was kept")
	}
}

// TestBootScript checks that the script has each of Choose's branches in
// U-Boot's shell and saves before a test boot.
func TestBootScript(t *testing.T) {
	s := BootScript()
	save := strings.Index(s, "if saveenv; then setenv nymote_boot ${nymote_next}")
	tried := strings.Index(s, "setenv nymote_tried ${nymote_next}")
	if save < 0 || tried < 0 || tried > save {
		t.Errorf("the script does not set nymote_tried and save it before a test boot:\n%s", s)
	}
	for _, want := range []string{
		`if test "${nymote_tried}" = "${nymote_next}"; then`,
		`setenv nymote_next; setenv nymote_tried; saveenv`,
		`if test "${nymote_slot}" != b; then setenv nymote_slot a; fi`,
		`if test "${nymote_boot}" = b; then setenv nymote_part 3; else setenv nymote_part 2; fi`,
		"source ${nymote_scr}",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("boot.scr lacks %q", want)
		}
	}
	if _, err := SlotScript("x.dtb", `a"b`, "/dev/mmcblk0p1"); err == nil {
		t.Error("a quote in the command line was accepted")
	}
	if _, err := SlotScript("x y.dtb", "quiet", "/dev/mmcblk0p1"); err == nil {
		t.Error("a space in the device tree's name was accepted")
	}
}

func TestPartitionDevice(t *testing.T) {
	for in, want := range map[string]string{"/dev/mmcblk0p1": "/dev/mmcblk0p3", "/dev/sdb1": "/dev/sdb3"} {
		if got, err := PartitionDevice(in, 3); err != nil || got != want {
			t.Errorf("PartitionDevice(%s, 3) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := PartitionDevice("/dev/sdb", 3); err == nil {
		t.Error("a whole disk was taken for a partition")
	}
}

// card is a test card: a boot partition and two slots in one file, at
// the offsets of the real layout.
type card struct {
	f    *os.File
	path string
}

const (
	bootOff  = 1 << 20
	slotOff  = 9 << 20
	slotSize = 8 << 20
)

func newCard(t *testing.T) *card {
	t.Helper()
	path := filepath.Join(t.TempDir(), "card.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.Truncate(slotOff + 2*slotSize)
	env, _ := ubootenv.New(EnvSize, map[string]string{"bootcmd": "run distro_bootcmd", "bootdelay": "0"}).Bytes()
	if err := fat.Write(f, bootOff, fat.Options{Size: 8 << 20, Label: "NYMOTE-BOOT"}, []fat.File{
		{Name: BootScriptFile, Data: ScriptImage("nymote boot script", BootScript())},
		{Name: EnvFile, Data: env},
		{Name: DefaultEnvFile, Data: env},
		{Name: "seed.txt", Data: make([]byte, 512)},
	}); err != nil {
		t.Fatal(err)
	}
	return &card{f: f, path: path}
}

func (c *card) card() Card { return Card{Boot: c.f, BootOff: bootOff} }

func (c *card) state(t *testing.T) State {
	t.Helper()
	s, err := ReadState(c.f, bootOff)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func slotFiles(t *testing.T, version string) []fat.File {
	t.Helper()
	files, err := SlotFiles(map[string][]byte{
		KernelFile: bytes.Repeat([]byte("k"), 300<<10), "board.dtb": []byte("dtb"),
		InitrdFile: bytes.Repeat([]byte(version), 100<<10), SlotScriptFile: []byte("script"),
	}, "board.dtb", Info{App: "hello", Board: "cubieboard", Version: version})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestInstallCommitRollback runs an update through the card's state as
// the appliance and the host tool change it, and reads the environment
// back with libubootenv's fw_printenv when it is installed.
func TestInstallCommitRollback(t *testing.T) {
	c := newCard(t)
	cd := c.card()
	if s := c.state(t); s != (State{Committed: "a"}) {
		t.Fatalf("new card: %+v", s)
	}
	slotB := SyncDevice(c.f)
	if err := cd.Install("a", "b", slotB, slotOff+slotSize, slotSize, 0, slotFiles(t, "v2")); err != nil {
		t.Fatal(err)
	}
	if s := c.state(t); s != (State{Committed: "a", Next: "b"}) {
		t.Errorf("after Install: %+v", s)
	}
	if i := ReadInfo(c.f, slotOff+slotSize); i.Version != "v2" || i.App != "hello" || len(i.InitrdSHA256) != 64 {
		t.Errorf("slot b's info: %+v", i)
	}
	fwPrintenv(t, c, map[string]string{VarNext: "b", "bootcmd": "run distro_bootcmd"})

	// boot.scr's test boot (what U-Boot saves), then the appliance's
	// refusal of another update during it, then its commit.
	_, after, _ := Choose(c.state(t))
	if err := SetState(c.f, bootOff, after); err != nil {
		t.Fatal(err)
	}
	if err := cd.Install("b", "a", c.f, slotOff, slotSize, 0, slotFiles(t, "v3")); !errors.Is(err, ErrTestBoot) {
		t.Errorf("an update during a test boot: %v, want ErrTestBoot", err)
	}
	if changed, err := cd.Commit("b"); err != nil || !changed {
		t.Fatalf("Commit: %v, %v", changed, err)
	}
	if changed, _ := cd.Commit("b"); changed {
		t.Error("a second Commit changed the environment")
	}
	if s := c.state(t); s != (State{Committed: "b"}) {
		t.Errorf("after Commit: %+v", s)
	}
	fwPrintenv(t, c, map[string]string{VarSlot: "b", VarNext: "", VarTried: ""})

	// Rollback by hand: slot a holds nothing on this test card.
	if _, err := cd.Rollback(func(s string) bool {
		return ReadInfo(c.f, map[string]int64{"a": slotOff, "b": slotOff + slotSize}[s]).App != ""
	}); err == nil {
		t.Error("a rollback to an empty slot was accepted")
	}
	if err := cd.Install("b", "a", c.f, slotOff, slotSize, 0, slotFiles(t, "v3")); err != nil {
		t.Fatal(err)
	}
	to, err := cd.Rollback(func(string) bool { return true })
	if err != nil || to != "a" {
		t.Fatalf("Rollback: %s, %v", to, err)
	}
	if s := c.state(t); s != (State{Committed: "a"}) {
		t.Errorf("after the rollback (the pending update dropped): %+v", s)
	}
}

// TestInstallPowerCut cuts the power at each write of Install: the next
// boot (Choose) boots the committed slot, or the new one fully written.
func TestInstallPowerCut(t *testing.T) {
	for cut := 1; ; cut++ {
		c := newCard(t)
		// A pending, tried update of slot b (a test boot that never
		// committed) is there when a new update arrives.
		if err := SetState(c.f, bootOff, State{Committed: "a", Next: "b", Tried: "b"}); err != nil {
			t.Fatal(err)
		}
		// Reset the state so that Install (from the committed slot a) runs.
		SetState(c.f, bootOff, State{Committed: "a", Next: "b"})
		dev := &cutDevice{f: c.f, left: cut}
		err := Card{Boot: dev, BootOff: bootOff}.Install("a", "b", dev, slotOff+slotSize, slotSize, 0, slotFiles(t, "v2"))
		s := c.state(t)
		boot, _, _ := Choose(s)
		if boot == "b" && ReadInfo(c.f, slotOff+slotSize).Version != "v2" {
			t.Errorf("power cut after %d writes: boots slot b, which is not whole (state %+v)", cut, s)
		}
		if err == nil {
			if s != (State{Committed: "a", Next: "b"}) {
				t.Errorf("complete Install: %+v", s)
			}
			if cut < 3 {
				t.Errorf("Install wrote only %d times", cut)
			}
			return
		}
		if !errors.Is(err, errCut) {
			t.Fatalf("cut %d: %v", cut, err)
		}
	}
}

var errCut = errors.New("power cut")

// cutDevice fails every write after left writes.
type cutDevice struct {
	f    *os.File
	left int
}

func (d *cutDevice) ReadAt(b []byte, off int64) (int, error) { return d.f.ReadAt(b, off) }
func (d *cutDevice) WriteAt(b []byte, off int64) (int, error) {
	if d.left <= 0 {
		return 0, errCut
	}
	d.left--
	return d.f.WriteAt(b, off)
}
func (d *cutDevice) Sync() error { return nil }

// fwPrintenv reads the card's uboot.env with libubootenv's fw_printenv
// (at its offset on the card, as fw_env.config names a device and an
// offset) and checks variables ("" means unset).
func fwPrintenv(t *testing.T, c *card, want map[string]string) {
	t.Helper()
	printenv, err := exec.LookPath("fw_printenv")
	if err != nil {
		t.Log("fw_printenv not installed (apt-get install libubootenv-tool): not checked with it")
		return
	}
	at, _, err := fat.Locate(c.f, bootOff, EnvFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "fw_env.config")
	os.WriteFile(cfg, []byte(fmt.Sprintf("%s %#x %#x\n", c.path, at, EnvSize)), 0o644)
	out, err := exec.Command(printenv, "-c", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("fw_printenv: %v\n%s", err, out)
	}
	for k, v := range want {
		has := strings.Contains("\n"+string(out), "\n"+k+"=")
		if v == "" && has || v != "" && !strings.Contains("\n"+string(out), "\n"+k+"="+v+"\n") {
			t.Errorf("fw_printenv: %s want %q:\n%s", k, v, out)
		}
	}
}

// TestRepairEnv: a torn uboot.env (bad CRC) is restored from uboot.def:
// the running slot on trial when the other holds an image (as after a test
// boot), committed when not; a good one is left alone.
func TestRepairEnv(t *testing.T) {
	c := newCard(t)
	if err := SetState(c.f, bootOff, State{Committed: "b", Next: "a"}); err != nil {
		t.Fatal(err)
	}
	if st, err := RepairEnv(c.f, bootOff, "b", true); err != nil || st != nil {
		t.Fatalf("a good environment: repaired %v, %v", st, err)
	}
	at, _, err := fat.Locate(c.f, bootOff, EnvFile)
	if err != nil {
		t.Fatal(err)
	}
	tear := func() {
		// Half of a new environment written over the old one.
		c.f.WriteAt(bytes.Repeat([]byte{0x5a}, EnvSize/2), at+EnvSize/4)
		if _, err := ReadState(c.f, bootOff); !errors.Is(err, ubootenv.ErrBadCRC) {
			t.Fatalf("the torn environment reads: %v", err)
		}
	}
	tear()
	// U-Boot's own environment boots slot a.
	if st, err := RepairEnv(c.f, bootOff, "a", true); err != nil || st == nil {
		t.Fatalf("RepairEnv: %v, %v", st, err)
	}
	if s := c.state(t); s != (State{Committed: "b", Next: "a", Tried: "a"}) {
		t.Errorf("after the repair with an image in slot b: %+v, want slot a on trial", s)
	}
	if boot, _, _ := Choose(c.state(t)); boot != "b" {
		t.Errorf("a boot after slot a's trial ended without a commit: slot %s, want b", boot)
	}
	fwPrintenv(t, c, map[string]string{VarSlot: "b", VarNext: "a", VarTried: "a", "bootcmd": "run distro_bootcmd"})
	tear()
	if _, err := RepairEnv(c.f, bootOff, "a", false); err != nil {
		t.Fatal(err)
	}
	if s := c.state(t); s != (State{Committed: "a"}) {
		t.Errorf("after the repair with slot b empty: %+v, want slot a committed", s)
	}
}
