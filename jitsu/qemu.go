package jitsu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/update"
)

// QEMULauncher boots an appliance image built by nymote build under QEMU
// (package launch: KVM when usable, TCG otherwise) with its data disk,
// each service port forwarded from a free loopback port (jitsu proxies the
// appliance's public address to it). It is ready when the console has
// printed "NAME listening on" for each port; Stop presses the power
// button (QMP system_powerdown: the appliance flushes its store and
// powers off); Suspend and Resume are QMP stop and cont.
type QEMULauncher struct {
	// Image is the image folder (manifest.json and artefacts).
	Image string
	// Disk is the data disk image; "" boots without one (ephemeral
	// images only).
	Disk string
	// Ports are the names of the service's ports, as in the manifest.
	Ports []string
	// KVM is "on", "off" or "auto" (probed once, by a boot without
	// disk, at the first Start).
	KVM string
	// MemoryMiB is the guest's memory; zero means launch.DefaultMemoryMiB.
	MemoryMiB int
	// ProxyProtocol tells the appliance (nymote.proxy=10.0.2.2/32) that
	// connections through QEMU's port forwards, which the guest sees
	// coming from the user network's host address, start with jitsu's
	// PROXY header.
	ProxyProtocol bool
	// Slots boots from the slots beside Disk (package update): Image is
	// installed there when it changes (update.Slots.Given), received updates are picked up, and a
	// new image's test boot must report the appliance good within the
	// boot's bound or the appliance is booted again from the committed
	// slot. The update port is forwarded too (Addr("update")).
	Slots bool
	Log   *slog.Logger

	probeOnce sync.Once
	kvm       bool
}

var _ Launcher = (*QEMULauncher)(nil)

func newQEMULauncher(a ApplianceConfig, log *slog.Logger) (Launcher, error) {
	l := &QEMULauncher{Image: a.Launcher.Image, Disk: a.Data, KVM: a.Launcher.KVM, MemoryMiB: a.Launcher.MemoryMiB, Log: log, Slots: a.Launcher.Slots,
		ProxyProtocol: a.ProxyProtocol != nil && *a.ProxyProtocol}
	for _, p := range a.Ports {
		l.Ports = append(l.Ports, p.Name)
	}
	return l, nil
}

// qemuProxyNetwork is where connections through QEMU's user-network port
// forwards come from, as the guest sees them: the host's address on that
// network.
const qemuProxyNetwork = launch.UserNetHost + "/32"

// freeLoopbackPort returns a TCP port free on 127.0.0.1 at the moment.
func freeLoopbackPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Start boots the image and waits for the console's listening lines.
func (l *QEMULauncher) Start(ctx context.Context) (_ Instance, err error) {
	if !l.Slots {
		return l.start(ctx, l.Image, "", false)
	}
	return startSlots(ctx, l.Disk, l.Image, l.Log, func(s *update.Slots, b update.Boot) (slotInstance, error) {
		inst, err := l.start(ctx, b.Dir, s.UpdateDisk(), b.Test)
		if err != nil {
			return nil, err
		}
		return inst.(*qemuVM), nil
	})
}

// start boots the image in dir (with an update disk, if not ""; as a new
// image's test boot, if testBoot).
func (l *QEMULauncher) start(ctx context.Context, dir, updateDisk string, testBoot bool) (_ Instance, err error) {
	m, err := images.ReadManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("jitsu: image %s: %w (build it with nymote build -o %s APP)", dir, err, dir)
	}
	b, err := boards.Get(m.Board)
	if err != nil {
		return nil, fmt.Errorf("jitsu: image %s: %w", dir, err)
	}
	img, err := m.QEMUImage(dir, b)
	if err != nil {
		return nil, fmt.Errorf("jitsu: %w", err)
	}
	q := &qemuVM{addrs: map[string]string{}, done: make(chan struct{})}
	var fw []launch.Forward
	for _, name := range l.Ports {
		guest := 0
		for _, p := range m.Ports {
			if p.Name == name {
				guest = p.Port
			}
		}
		if guest == 0 {
			return nil, fmt.Errorf("jitsu: image %s (%s) has no port called %s", dir, m.App, name)
		}
		host, err := freeLoopbackPort()
		if err != nil {
			return nil, err
		}
		q.addrs[name] = host
		fw = append(fw, launch.Forward{Host: host, Guest: guest})
	}
	if updateDisk != "" {
		host, err := freeLoopbackPort()
		if err != nil {
			return nil, err
		}
		q.addrs[app.UpdatePort.Name] = host
		fw = append(fw, launch.Forward{Host: host, Guest: app.UpdatePort.Port})
	}
	switch l.KVM {
	case launch.KVMOn:
		l.kvm = true
	case launch.KVMAuto:
		l.probeOnce.Do(func() {
			l.kvm = launch.ProbeKVM(ctx, img, 20*time.Second)
			l.Log.Info("KVM probe", "kvm", l.kvm)
		})
	}
	guestNet := "kernel"
	if app.NetstackBuiltIn {
		// Given the user network's fixed addresses (as nymote run does).
		guestNet = "netstack"
	}
	var extra []string
	if l.ProxyProtocol {
		extra = append(extra, "nymote.proxy="+qemuProxyNetwork)
	}
	vm, err := launch.StartQEMU(context.WithoutCancel(ctx), img, launch.QEMU{
		Disk: l.Disk, UpdateDisk: updateDisk, TestBoot: testBoot, KVM: l.kvm, MemoryMiB: l.MemoryMiB, Forwards: fw, GuestNet: guestNet, ExtraCmdline: extra,
	}, &lineLog{log: l.Log})
	if err != nil {
		return nil, fmt.Errorf("jitsu: %w", err)
	}
	q.vm = vm
	go func() {
		q.exitErr = vm.Wait(context.Background())
		close(q.done)
	}()
	defer func() {
		if err != nil {
			vm.Kill()
		}
	}()
	for _, name := range l.Ports {
		if _, err := vm.WaitLine(ctx, " "+name+" listening on "); err != nil {
			return nil, fmt.Errorf("jitsu: %s port %s: %w; console: %s", m.App, name, err, lastLines(vm.Console(), 5))
		}
	}
	return q, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// lineLog logs console output at debug level.
type lineLog struct{ log *slog.Logger }

func (w *lineLog) Write(p []byte) (int, error) {
	w.log.Debug("console", "line", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type qemuVM struct {
	vm      *launch.VM
	addrs   map[string]string
	done    chan struct{}
	exitErr error

	mu      sync.Mutex
	stopped bool
}

var _ Suspender = (*qemuVM)(nil)

func (q *qemuVM) Addr(name string) string { return q.addrs[name] }

func (q *qemuVM) Stop(ctx context.Context) error {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.vm.QMP(ctx, "cont") // a suspended guest must run to power off
	return q.vm.PowerOff(ctx)
}

func (q *qemuVM) Done() <-chan struct{} { return q.done }

// booted is the VM as its test boot is watched.
func (q *qemuVM) booted() launch.Booted { return q.vm }

// kill pulls the VM's plug.
func (q *qemuVM) kill() {
	q.vm.Kill()
	<-q.done
}

func (q *qemuVM) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return nil
	}
	if q.exitErr != nil {
		return fmt.Errorf("QEMU: %w", q.exitErr)
	}
	return errors.New("the appliance powered off by itself")
}

func (q *qemuVM) Suspend(ctx context.Context) error { return q.vm.QMP(ctx, "stop") }
func (q *qemuVM) Resume(ctx context.Context) error  { return q.vm.QMP(ctx, "cont") }

// slotLog logs what the slots did (launch.DiskSlots, launch.NextBoot).
func slotLog(log *slog.Logger) func(string, ...any) {
	return func(format string, args ...any) { log.Info("slots: " + fmt.Sprintf(format, args...)) }
}

// slotBoot opens the slots beside the data disk, installs image there
// when it changed (launch.DiskSlots), and returns the slot to boot first
// (launch.NextBoot): the one path of every launcher with slots (qemu,
// firecracker, xl).
func slotBoot(disk, image string, log *slog.Logger) (*update.Slots, update.Boot, error) {
	s, err := launch.DiskSlots(disk, image, slotLog(log))
	if err != nil {
		return nil, update.Boot{}, fmt.Errorf("jitsu: %w", err)
	}
	b, err := launch.NextBoot(s, slotLog(log))
	if err != nil {
		return nil, b, fmt.Errorf("jitsu: %w", err)
	}
	return s, b, nil
}

// slotInstance is a running appliance booted from a slot by a launcher
// other than qemu (firecracker, xl): its console for the test boot's
// watch, and how to pull its plug.
type slotInstance interface {
	Instance
	booted() launch.Booted
	kill()
}

// startSlots boots an appliance from the slots beside disk with boot (the
// launcher's boot of one slot, which returns once its ports accept and
// leaves nothing running when it fails), as
// the qemu launcher does: image installed when it changed, a received
// update picked up, the try-once rule; a test boot is watched for the
// appliance's good line (launch.WatchTestBoot, within the default bound
// and ctx), and when it fails the committed slot boots instead (at most
// two boots).
func startSlots(ctx context.Context, disk, image string, log *slog.Logger, boot func(*update.Slots, update.Boot) (slotInstance, error)) (Instance, error) {
	s, b, err := slotBoot(disk, image, log)
	if err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		if try > 0 {
			if b, err = launch.NextBoot(s, slotLog(log)); err != nil {
				return nil, fmt.Errorf("jitsu: %w", err)
			}
		}
		inst, err := boot(s, b)
		if err == nil && b.Test {
			if err = launch.WatchTestBoot(ctx, inst.booted(), s, b, 0); err == nil {
				log.Info("new image committed", "slot", b.Slot)
			} else {
				inst.kill()
				err = fmt.Errorf("jitsu: %w", err)
			}
		}
		if err == nil {
			return inst, nil
		}
		if !b.Test || try > 0 || ctx.Err() != nil {
			return nil, err
		}
		log.Warn("test boot failed", "slot", b.Slot, "err", err)
	}
}
