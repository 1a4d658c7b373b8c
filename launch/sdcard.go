package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// QEMU10Dir is where make test-deps extracts QEMU 10 from Debian's
// bookworm-backports (scripts/install-qemu10.sh), beside the system's
// QEMU 7.2, which cannot boot an SD card on -M cubieboard.
const QEMU10Dir = "/opt/nymote-qemu10"

// SDQEMU is a qemu-system-arm that boots SD card images on -M cubieboard
// (QEMU 10 or later: it loads U-Boot's SPL from the card as the A10's boot
// ROM does).
type SDQEMU struct {
	// Binary is the qemu-system-arm program.
	Binary string
	// Version is its version, such as "10.0.2".
	Version string
	// DataDir is its firmware folder (-L) and ModuleDir its modules
	// folder (QEMU_MODULE_DIR) when it is not installed in the system's
	// places; "" otherwise.
	DataDir, ModuleDir string
}

// ErrNoSDQEMU is wrapped by FindSDQEMU's error when no QEMU 10 is found.
var ErrNoSDQEMU = errors.New("no qemu-system-arm 10 or later (QEMU 7.2 cannot boot an SD card on -M cubieboard)")

// FindSDQEMU finds a qemu-system-arm that boots SD card images: the one on
// $PATH if it is QEMU 10 or later, else the one in QEMU10Dir.
func FindSDQEMU(ctx context.Context) (*SDQEMU, error) {
	var seen []string
	if p, err := exec.LookPath("qemu-system-arm"); err == nil {
		v, major := qemuVersion(ctx, p, nil)
		if major >= 10 {
			return &SDQEMU{Binary: p, Version: v}, nil
		}
		seen = append(seen, fmt.Sprintf("%s is %s", p, v))
	}
	q := &SDQEMU{
		Binary:  filepath.Join(QEMU10Dir, "usr/bin/qemu-system-arm"),
		DataDir: filepath.Join(QEMU10Dir, "usr/share/qemu"),
	}
	// Its own modules, so that QEMU does not try the system's (of another
	// build, which it refuses to load).
	if ms, _ := filepath.Glob(filepath.Join(QEMU10Dir, "usr/lib/*/qemu")); len(ms) > 0 {
		q.ModuleDir = ms[0]
	}
	if _, err := os.Stat(q.Binary); err == nil {
		v, major := qemuVersion(ctx, q.Binary, q.env())
		if major >= 10 {
			q.Version = v
			return q, nil
		}
		seen = append(seen, fmt.Sprintf("%s is %s", q.Binary, v))
	}
	return nil, fmt.Errorf("launch: %w (%v; make test-deps extracts QEMU 10 from bookworm-backports into %s)", ErrNoSDQEMU, seen, QEMU10Dir)
}

var qemuVersionRE = regexp.MustCompile(`version (\d+)\.(\d+)\.(\d+)`)

// qemuVersion runs qemu --version and returns the version and its major
// number (0 when unknown).
func qemuVersion(ctx context.Context, bin string, env []string) (string, int) {
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	m := qemuVersionRE.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		return "unknown", 0
	}
	major, _ := strconv.Atoi(m[1])
	return m[1] + "." + m[2] + "." + m[3], major
}

func (q *SDQEMU) env() []string {
	if q.ModuleDir == "" {
		return nil
	}
	return []string{"QEMU_MODULE_DIR=" + q.ModuleDir}
}

// SDRun configures an SD card boot under QEMU.
type SDRun struct {
	// Card is the SD card image. QEMU wants its size to be a power of
	// two: boot a copy, grown with PowerOfTwo.
	Card string
	// Machine is the QEMU machine; "" means cubieboard (the only
	// Allwinner board QEMU emulates with an SD boot ROM).
	Machine string
	// Forwards are the port forwards of QEMU's user network, on the
	// board's own NIC.
	Forwards []Forward
	// Reboot lets the board reboot as a real one does (the A10's
	// watchdog resets it; the boot ROM loads U-Boot from the card
	// again) instead of QEMU exiting when the guest reboots. Its console
	// then holds every boot's lines (see WaitLineCount).
	Reboot bool
}

// StartSDCard boots an SD card image under q: the SPL and U-Boot from the
// card, then boot.scr. The console is kept as by StartQEMU; there is no
// power button (stop it with Kill).
func StartSDCard(q *SDQEMU, r SDRun, console io.Writer) (*VM, error) {
	if r.Machine == "" {
		r.Machine = "cubieboard"
	}
	fi, err := os.Stat(r.Card)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	if n := fi.Size(); n&(n-1) != 0 {
		return nil, fmt.Errorf("launch: SD card image %s is %d bytes; QEMU wants a power of two (see PowerOfTwo)", r.Card, n)
	}
	netdev := "user,id=net0"
	for _, f := range r.Forwards {
		netdev += fmt.Sprintf(",hostfwd=%s:%s-:%d", f.proto(), f.Host, f.Guest)
	}
	args := []string{
		"-machine", r.Machine, "-accel", "tcg",
		"-no-user-config", "-display", "none", "-audio", "none",
		"-serial", "stdio",
		"-drive", "file=" + r.Card + ",if=sd,format=raw,cache=writeback",
		"-nic", netdev,
	}
	if !r.Reboot {
		args = append(args, "-no-reboot")
	}
	if q.DataDir != "" {
		args = append([]string{"-L", q.DataDir}, args...)
	}
	cmd := exec.Command(q.Binary, args...)
	cmd.Env = append(os.Environ(), q.env()...)
	return start(cmd, "", "", console)
}

// PowerOfTwo grows the file at path (sparse) to the next power of two, as
// QEMU wants of an SD card image.
func PowerOfTwo(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	n := int64(1)
	for n < fi.Size() {
		n *= 2
	}
	return os.Truncate(path, n)
}

// UBootTime is how long U-Boot took in an SD card boot: from the SPL's
// first console line to "Starting kernel", on the host's clock (zero if
// the console has not shown both).
func (vm *VM) UBootTime() time.Duration {
	var spl, kern time.Duration
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "U-Boot SPL") && spl == 0 {
			spl = l.At
		}
		if strings.Contains(l.Text, "Starting kernel") {
			kern = l.At
		}
	}
	if spl == 0 || kern == 0 {
		return 0
	}
	return kern - spl
}
