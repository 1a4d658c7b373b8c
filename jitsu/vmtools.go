package jitsu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/update"
)

// XLLauncher boots an appliance as a Xen guest with the xl toolstack
// (package launch), from the xl configuration that nymote build writes for
// Xen boards. The guest is on a bridge with its own address (Guest), so
// readiness is a TCP connection to Guest:port.
type XLLauncher struct {
	// Config is the xl configuration file; its name = "..." line names
	// the domain.
	Config string
	// Guest is the guest's IP address.
	Guest string
	// Ports are the service's ports on the guest.
	Ports []PortConfig
	// Run runs xl; nil means launch.ExecRunner. (With Slots, xl console
	// runs as its own process: xl on $PATH.)
	Run launch.Runner
	// Poll is how often a running domain is checked; zero means 1s.
	Poll time.Duration
	Log  *slog.Logger
	// Slots boots from the slots beside Disk, as the qemu launcher does
	// (Image installed when it changes, received updates picked up, the
	// try-once rule, a test boot committed on the appliance's good line
	// read with xl console): each boot's configuration is Config (""
	// means the slot image's xl.cfg) for the slot booted
	// (launch.XLSlotConfig), written beside the slots
	// (launch.SlotXLConfig). The update port is Addr("update").
	Slots       bool
	Image, Disk string
}

// Domain reads the domain's name from the configuration.
func (l *XLLauncher) Domain() (string, error) {
	return launch.XLDomain(l.Config)
}

// Start creates the domain and waits for its ports.
func (l *XLLauncher) Start(ctx context.Context) (_ Instance, err error) {
	if !l.Slots {
		return l.start(ctx, l.Config, false)
	}
	var template string
	if l.Config != "" {
		b, err := os.ReadFile(l.Config)
		if err != nil {
			return nil, fmt.Errorf("jitsu: %w", err)
		}
		template = string(b)
	}
	return startSlots(ctx, l.Disk, l.Image, l.Log, func(s *update.Slots, b update.Boot) (slotInstance, error) {
		cfg, err := launch.XLSlotConfig(template, b, l.Disk, s.UpdateDisk())
		if err != nil {
			return nil, fmt.Errorf("jitsu: %w", err)
		}
		path := filepath.Join(s.Dir, launch.SlotXLConfig)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, fmt.Errorf("jitsu: %w", err)
		}
		inst, err := l.start(ctx, path, true)
		if err != nil {
			return nil, err
		}
		return inst.(*toolVM), nil
	})
}

// start creates the domain of the configuration file config and waits
// for its ports; with console, it reads the domain's console too.
func (l *XLLauncher) start(ctx context.Context, config string, console bool) (_ Instance, err error) {
	x, err := launch.CreateXL(ctx, config, l.Run)
	if err != nil {
		return nil, fmt.Errorf("jitsu: %w", err)
	}
	poll := l.Poll
	if poll == 0 {
		poll = time.Second
	}
	v := &toolVM{xl: x, guest: l.Guest, ports: l.Ports, done: make(chan struct{})}
	if console {
		if v.console, err = x.Console(&lineLog{log: l.Log}); err != nil {
			x.Destroy(context.Background())
			return nil, fmt.Errorf("jitsu: %w", err)
		}
		v.ports = append(append([]PortConfig(nil), l.Ports...), PortConfig{Name: app.UpdatePort.Name, Port: app.UpdatePort.Port})
	}
	go v.watch(poll)
	defer func() {
		if err != nil {
			v.kill()
		}
	}()
	for _, p := range l.Ports {
		if err := waitAccept(ctx, v.Addr(p.Name), v.done); err != nil {
			return nil, fmt.Errorf("jitsu: xl domain %s port %s: %w", x.Domain, p.Name, err)
		}
	}
	return v, nil
}

// toolVM is a guest run by a toolstack command (xl).
type toolVM struct {
	xl      *launch.XL
	console *launch.XLConsole // with slots
	guest   string
	ports   []PortConfig

	once    sync.Once
	done    chan struct{}
	mu      sync.Mutex
	err     error
	stopped bool
}

func (v *toolVM) watch(poll time.Duration) {
	for {
		select {
		case <-v.done:
			return
		case <-time.After(poll):
		}
		if !v.xl.Alive(context.Background()) {
			v.mu.Lock()
			stopped := v.stopped
			v.mu.Unlock()
			if stopped {
				v.markDone(nil)
			} else {
				v.markDone(errors.New("the domain is gone"))
			}
			return
		}
	}
}

func (v *toolVM) markDone(err error) {
	v.once.Do(func() {
		if v.console != nil {
			v.console.Close()
		}
		v.mu.Lock()
		v.err = err
		v.mu.Unlock()
		close(v.done)
	})
}

// kill destroys the domain.
func (v *toolVM) kill() {
	v.xl.Destroy(context.Background())
	v.markDone(nil)
}

// booted is the domain as its test boot is watched: its console.
func (v *toolVM) booted() launch.Booted { return v.console }

func (v *toolVM) Addr(name string) string { return guestAddr(v.guest, v.ports, name) }

// guestAddr is the address of the port called name on a guest with its
// own address.
func guestAddr(guest string, ports []PortConfig, name string) string {
	for _, p := range ports {
		if p.Name == name {
			return net.JoinHostPort(guest, strconv.Itoa(p.Port))
		}
	}
	return net.JoinHostPort(guest, "0")
}

func (v *toolVM) Stop(ctx context.Context) error {
	v.mu.Lock()
	v.stopped = true
	v.mu.Unlock()
	err := v.xl.Shutdown(ctx)
	v.markDone(nil)
	if err != nil {
		return fmt.Errorf("jitsu: %w", err)
	}
	return nil
}

func (v *toolVM) Done() <-chan struct{} { return v.done }

func (v *toolVM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

func (v *toolVM) Suspend(ctx context.Context) error { return v.xl.Pause(ctx) }
func (v *toolVM) Resume(ctx context.Context) error  { return v.xl.Unpause(ctx) }

// FirecrackerLauncher boots an appliance as a Firecracker microVM (package
// launch) from the Firecracker configuration that nymote build writes
// (kernel, initramfs, data drive, TAP device). The guest has its own
// address (Guest) on the TAP device.
type FirecrackerLauncher struct {
	// Config is the Firecracker configuration file (--config-file).
	Config string
	// Guest is the guest's IP address.
	Guest string
	// Ports are the service's ports on the guest.
	Ports []PortConfig
	// Binary is the firecracker program; "" means firecracker.
	Binary string
	Log    *slog.Logger
	// Slots boots from the slots beside Disk, as the qemu launcher does
	// (Image installed when it changes, received updates picked up, the
	// try-once rule, a test boot committed on the appliance's good line
	// on Firecracker's console): each boot's configuration is Config
	// ("" means the slot image's firecracker.json) for the slot booted
	// (launch.FirecrackerSlotConfig), written beside the slots
	// (launch.SlotFirecrackerConfig). The update port is
	// Addr("update").
	Slots       bool
	Image, Disk string
}

// Command is the command line Start runs with its API socket at sock
// (with Slots, the configuration is the one written beside the slots).
func (l *FirecrackerLauncher) Command(sock string) []string {
	if l.Slots {
		return launch.FirecrackerCommand(l.Binary, filepath.Join(update.SlotsDir(l.Disk), launch.SlotFirecrackerConfig), sock)
	}
	return launch.FirecrackerCommand(l.Binary, l.Config, sock)
}

// Start runs Firecracker and waits for the guest's ports.
func (l *FirecrackerLauncher) Start(ctx context.Context) (_ Instance, err error) {
	if !l.Slots {
		return l.start(ctx, l.Config, false)
	}
	var template []byte
	if l.Config != "" {
		if template, err = os.ReadFile(l.Config); err != nil {
			return nil, fmt.Errorf("jitsu: %w", err)
		}
	}
	return startSlots(ctx, l.Disk, l.Image, l.Log, func(s *update.Slots, b update.Boot) (slotInstance, error) {
		cfg, err := launch.FirecrackerSlotConfig(template, b, l.Disk, s.UpdateDisk())
		if err != nil {
			return nil, fmt.Errorf("jitsu: %w", err)
		}
		path := filepath.Join(s.Dir, launch.SlotFirecrackerConfig)
		if err := os.WriteFile(path, cfg, 0o644); err != nil {
			return nil, fmt.Errorf("jitsu: %w", err)
		}
		inst, err := l.start(ctx, path, true)
		if err != nil {
			return nil, err
		}
		return inst.(*fcVM), nil
	})
}

// start runs Firecracker with the configuration file config and waits
// for the guest's ports (and with slots, the update port is one).
func (l *FirecrackerLauncher) start(ctx context.Context, config string, slots bool) (_ Instance, err error) {
	fc, err := launch.StartFirecracker(l.Binary, config, &lineLog{log: l.Log})
	if err != nil {
		return nil, fmt.Errorf("jitsu: %w", err)
	}
	v := &fcVM{fc: fc, guest: l.Guest, ports: l.Ports, done: make(chan struct{})}
	if slots {
		v.ports = append(append([]PortConfig(nil), l.Ports...), PortConfig{Name: app.UpdatePort.Name, Port: app.UpdatePort.Port})
	}
	go func() {
		<-fc.Done()
		v.mu.Lock()
		if !v.stopped {
			v.err = fmt.Errorf("firecracker exited: %v", fc.ExitErr())
		}
		v.mu.Unlock()
		close(v.done)
	}()
	defer func() {
		if err != nil {
			fc.Kill()
			<-v.done
		}
	}()
	for _, p := range l.Ports {
		if err := waitAccept(ctx, v.Addr(p.Name), v.done); err != nil {
			return nil, fmt.Errorf("jitsu: firecracker port %s: %w", p.Name, err)
		}
	}
	return v, nil
}

type fcVM struct {
	fc    *launch.Firecracker
	guest string
	ports []PortConfig
	done  chan struct{}

	mu      sync.Mutex
	stopped bool
	err     error
}

func (v *fcVM) Addr(name string) string { return guestAddr(v.guest, v.ports, name) }

func (v *fcVM) Stop(ctx context.Context) error {
	v.mu.Lock()
	v.stopped = true
	v.mu.Unlock()
	err := v.fc.PowerOff(ctx)
	<-v.done
	if err != nil {
		return fmt.Errorf("jitsu: %w", err)
	}
	return nil
}

func (v *fcVM) Done() <-chan struct{} { return v.done }

// kill stops Firecracker at once.
func (v *fcVM) kill() {
	v.fc.Kill()
	<-v.done
}

// booted is the microVM as its test boot is watched: its console.
func (v *fcVM) booted() launch.Booted { return v.fc }

func (v *fcVM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

func (v *fcVM) Suspend(ctx context.Context) error { return v.fc.API(ctx, "suspend") }
func (v *fcVM) Resume(ctx context.Context) error  { return v.fc.API(ctx, "resume") }

var (
	_ Suspender = (*toolVM)(nil)
	_ Suspender = (*fcVM)(nil)
)
