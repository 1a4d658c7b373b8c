package launch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nymote/nymote/boards"
)

// VM is a running QEMU process booting an image, or another process whose
// output is a guest's console (StartCommand: Firecracker, xl console),
// with its console lines.
type VM struct {
	cmd   *exec.Cmd
	qmp   string
	in    io.WriteCloser // the console's input (QEMU's standard input)
	start time.Time

	mu      sync.Mutex
	lines   []Line
	changed chan struct{} // closed and replaced when a line arrives or QEMU exits
	done    chan struct{} // closed when QEMU has exited
	exited  bool
	waitErr error
}

// Line is one console line and when it arrived.
type Line struct {
	Text string
	// At is the time since QEMU was started.
	At time.Duration
}

// ErrExited is returned by WaitLine when QEMU (or the process of
// StartCommand) has exited.
var ErrExited = errors.New("the VM exited")

// StartQEMU boots img under QEMU. Console lines are copied to console (if
// not nil) and kept for WaitLine. QEMU runs in its own process group, so a
// Ctrl-C on the terminal reaches the caller, which can then PowerOff. A
// QMP socket is always set up (in a temporary folder when r.QMP is empty).
//
// A board without an RNG (cubieboard) gets, at each start, a copy of its
// device tree with a fresh seed (SeedDeviceTree), unless r.DeviceTree is
// set. An x86-64 guest under TCG is told the TSC's frequency (TCGCmdline).
func StartQEMU(ctx context.Context, img Image, r QEMU, console io.Writer) (vm *VM, err error) {
	b := img.Board
	tmp, err := os.MkdirTemp("", "nymote-qemu-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if r.QMP == "" {
		r.QMP = filepath.Join(tmp, "qmp.sock")
	}
	if b.DeviceTree != "" && r.DeviceTree == "" {
		r.DeviceTree = filepath.Join(tmp, b.DeviceTree)
		if err := SeedDeviceTree(filepath.Join(img.Dir, b.DeviceTree), r.DeviceTree); err != nil {
			return nil, err
		}
	}
	if err := checkSDCardSize(b, r.Disk); err != nil {
		return nil, err
	}
	r.ExtraCmdline = append(TCGCmdline(b, r.KVM), r.ExtraCmdline...)
	args, err := QEMUCommand(img, r)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(args[0]); err != nil {
		return nil, fmt.Errorf("launch: %s not found: install QEMU (apt-get install qemu-system-x86 qemu-system-arm)", args[0])
	}
	return start(exec.Command(args[0], args[1:]...), r.QMP, tmp, console)
}

// TCGCmdline returns the kernel command line options that an x86-64 guest
// of board b needs under TCG (kvm false): tsc_early_khz, the TSC's
// frequency. The kernel measures it against the PIT, which under TCG fails
// now and then (about one boot in ten on microvm); without HPET or an ACPI
// PM timer to fall back on (microvm, Firecracker's machine) it then marks
// the TSC unstable and hangs calibrating its delay loop. Under KVM the
// hypervisor tells the guest. It is not in the image's own command line
// (nor in its run-qemu.sh): the value is this host's.
func TCGCmdline(b boards.Board, kvm bool) []string {
	if kvm || b.GOARCH != "amd64" {
		return nil
	}
	if khz, ok := TCGTSCkHz(); ok {
		return []string{fmt.Sprintf("tsc_early_khz=%d", khz)}
	}
	return nil
}

// StartCommand starts a QEMU command line of the caller's (program first)
// whose QMP socket is qmp ("" for none), keeping its console lines as
// StartQEMU does: for boots that QEMUCommand does not describe (the boot
// tests' Firecracker-like microvm).
func StartCommand(args []string, qmp string, console io.Writer) (*VM, error) {
	if len(args) == 0 {
		return nil, errors.New("launch: no command to start")
	}
	return start(exec.Command(args[0], args[1:]...), qmp, "", console)
}

// start starts a QEMU command whose QMP socket is qmp, keeping its console
// lines; tmp (if not "") is removed when QEMU exits.
func start(cmd *exec.Cmd, qmp, tmp string, console io.Writer) (*VM, error) {
	args := cmd.Args
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	vm := &VM{cmd: cmd, qmp: qmp, in: in, changed: make(chan struct{}), done: make(chan struct{}), start: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("launch: starting %s: %w", args[0], err)
	}
	go func() {
		defer close(vm.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			text := strings.TrimRight(sc.Text(), "\r")
			if console != nil {
				fmt.Fprintln(console, text)
			}
			vm.mu.Lock()
			vm.lines = append(vm.lines, Line{Text: text, At: time.Since(vm.start)})
			close(vm.changed)
			vm.changed = make(chan struct{})
			vm.mu.Unlock()
		}
		err := cmd.Wait()
		os.RemoveAll(tmp)
		vm.mu.Lock()
		vm.exited, vm.waitErr = true, err
		close(vm.changed)
		vm.changed = make(chan struct{})
		vm.mu.Unlock()
	}()
	return vm, nil
}

// Type sends s to the console's input, as if typed on the serial line.
func (vm *VM) Type(s string) error {
	_, err := io.WriteString(vm.in, s)
	return err
}

// checkSDCardSize refuses a data disk for an emulated SD card slot whose
// size QEMU would refuse (it wants a power of two).
func checkSDCardSize(b boards.Board, disk string) error {
	if disk == "" || b.QEMU == nil || b.QEMU.DiskInterface != "sd" {
		return nil
	}
	fi, err := os.Stat(disk)
	if err != nil {
		return fmt.Errorf("launch: data disk: %w", err)
	}
	if n := fi.Size(); n <= 0 || n&(n-1) != 0 {
		return fmt.Errorf("launch: data disk %s: %d bytes; QEMU's %s SD card slot needs a power of two (nymote disk create --size 256M, 1G...)", disk, n, b.QEMU.Machine)
	}
	return nil
}

// Lines returns the console lines so far.
func (vm *VM) Lines() []Line {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Line(nil), vm.lines...)
}

// Console returns the console output so far.
func (vm *VM) Console() string {
	var b strings.Builder
	for _, l := range vm.Lines() {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}

// WaitLine waits until a console line contains substr (looking at lines
// from the start) and returns it, or fails when ctx ends or QEMU exits.
func (vm *VM) WaitLine(ctx context.Context, substr string) (Line, error) {
	for {
		vm.mu.Lock()
		for _, l := range vm.lines {
			if strings.Contains(l.Text, substr) {
				vm.mu.Unlock()
				return l, nil
			}
		}
		exited, ch := vm.exited, vm.changed
		vm.mu.Unlock()
		if exited {
			return Line{}, fmt.Errorf("launch: waiting for %q: %w", substr, ErrExited)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Line{}, fmt.Errorf("launch: waiting for %q: %w", substr, ctx.Err())
		}
	}
}

// Wait waits until QEMU exits or ctx ends.
func (vm *VM) Wait(ctx context.Context) error {
	for {
		vm.mu.Lock()
		exited, err, ch := vm.exited, vm.waitErr, vm.changed
		vm.mu.Unlock()
		if exited {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Kill stops QEMU at once (like pulling the plug) and waits for it.
func (vm *VM) Kill() {
	if vm.cmd.Process != nil {
		syscall.Kill(-vm.cmd.Process.Pid, syscall.SIGKILL)
	}
	vm.Wait(context.Background())
}

// PowerOff presses the VM's power button (QMP system_powerdown) and waits
// for QEMU to exit, pressing again every 15 seconds (an ACPI event can be
// lost, as with a real button; the appliance acts on the first press it
// sees). If QEMU has not exited when ctx ends, PowerOff kills it and says
// so.
func (vm *VM) PowerOff(ctx context.Context) error {
	for {
		if err := vm.QMP(ctx, "system_powerdown"); err != nil {
			if vm.Exited() {
				return nil
			}
			vm.Kill()
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		vm.Wait(wctx) // an exit status other than 0 still means it stopped
		cancel()
		if vm.Exited() {
			return nil
		}
		if ctx.Err() != nil {
			vm.Kill()
			return fmt.Errorf("launch: the appliance did not power off after system_powerdown: %w", ctx.Err())
		}
	}
}

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Exited says whether QEMU has exited.
func (vm *VM) Exited() bool {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.exited
}

// QMP runs one QMP command: a command name without arguments, or a whole
// request ({"execute": ..., "arguments": ...}).
func (vm *VM) QMP(ctx context.Context, command string) error {
	var d net.Dialer
	var c net.Conn
	var err error
	for i := 0; ; i++ {
		c, err = d.DialContext(ctx, "unix", vm.qmp)
		if err == nil || i == 50 || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("launch: QMP: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("launch: QMP greeting: %w", err)
	}
	for _, cmd := range []string{"qmp_capabilities", command} {
		req := fmt.Sprintf("{\"execute\":%q}", cmd)
		if strings.HasPrefix(cmd, "{") {
			req = cmd // a whole request, with arguments
		}
		if _, err := fmt.Fprintf(c, "%s\n", req); err != nil {
			return fmt.Errorf("launch: QMP %s: %w", cmd, err)
		}
		for {
			var resp struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if err := dec.Decode(&resp); err != nil {
				return fmt.Errorf("launch: QMP %s: %w", cmd, err)
			}
			if resp.Error != nil {
				return fmt.Errorf("launch: QMP %s: %s", cmd, resp.Error.Desc)
			}
			if resp.Return != nil {
				break
			}
			// An event: read on.
		}
	}
	return nil
}

// ProbeKVM says whether KVM works here for img: it boots the image
// without a data disk under KVM and waits up to timeout for /init to say it
// started (the appliance then refuses to serve and powers off). Nested KVM
// often exists as /dev/kvm but hangs; then ProbeKVM returns false.
func ProbeKVM(ctx context.Context, img Image, timeout time.Duration) bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	vm, err := StartQEMU(ctx, img, QEMU{KVM: true, MemoryMiB: 128}, nil)
	if err != nil {
		return false
	}
	defer vm.Kill()
	_, err = vm.WaitLine(ctx, "init started")
	return err == nil
}

// KVM modes: use KVM when a probe boot works (TCG otherwise), always, or
// never.
const (
	KVMAuto = "auto"
	KVMOn   = "on"
	KVMOff  = "off"
)

// CheckKVMMode refuses a KVM mode other than auto, on and off.
func CheckKVMMode(mode string) error {
	switch mode {
	case KVMAuto, KVMOn, KVMOff:
		return nil
	}
	return fmt.Errorf("launch: KVM %q: want auto, on or off", mode)
}

// UseKVM says whether to boot img with KVM in mode (see CheckKVMMode):
// auto probes (ProbeKVM, at most timeout), and falls back to TCG when the
// probe fails.
func UseKVM(ctx context.Context, img Image, mode string, timeout time.Duration) (bool, error) {
	if err := CheckKVMMode(mode); err != nil {
		return false, err
	}
	switch mode {
	case KVMOn:
		return true, nil
	case KVMAuto:
		return ProbeKVM(ctx, img, timeout), nil
	}
	return false, nil
}
