package jitsu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// A Launcher starts one appliance. The Server calls Start at most once at
// a time per appliance, so a launcher need not guard against concurrent
// boots of the same appliance.
type Launcher interface {
	// Start boots the appliance and returns once each of its service
	// ports accepts connections. ctx bounds the boot: when it ends
	// first, Start stops what it started and fails. On any failure
	// nothing is left running.
	Start(ctx context.Context) (Instance, error)
}

// An Instance is a running appliance.
type Instance interface {
	// Addr is the address (host:port) to connect to for the port called
	// name, as seen from the host running jitsu.
	Addr(name string) string
	// Stop powers the appliance off cleanly (its data flushed) and
	// waits until it has exited. When ctx ends first it kills it and
	// says so in the error.
	Stop(ctx context.Context) error
	// Done is closed when the appliance has exited, stopped or crashed.
	Done() <-chan struct{}
	// Err says why it exited once Done is closed: nil after a clean
	// Stop.
	Err() error
}

// A Suspender is an Instance that can be paused and resumed without
// losing its state (QEMU's stop/cont, xl pause, SIGSTOP for a process).
type Suspender interface {
	Instance
	Suspend(ctx context.Context) error
	Resume(ctx context.Context) error
}

// ErrNoLauncher is returned for a launcher kind this build cannot run.
var ErrNoLauncher = errors.New("jitsu: launcher not available")

// NewLauncher returns the launcher configured for a, logging to log.
func NewLauncher(a ApplianceConfig, log *slog.Logger) (Launcher, error) {
	ports := make([]string, len(a.Ports))
	for i, p := range a.Ports {
		ports[i] = p.Name
	}
	l := a.Launcher
	switch l.Kind {
	case "process":
		env := l.Env
		if a.ProxyProtocol != nil && *a.ProxyProtocol {
			// Before the configuration's own variables, which win.
			env = append([]string{"NYMOTE_PROXY=" + processProxyNetworks}, env...)
		}
		return &ProcessLauncher{Command: l.Command, Env: env, Data: a.Data, Ports: ports,
			Log: log.With("appliance", a.Name)}, nil
	case "xl":
		return &XLLauncher{Config: l.Config, Guest: l.Guest, Ports: a.Ports, Log: log.With("appliance", a.Name),
			Slots: l.Slots, Image: l.Image, Disk: a.Data}, nil
	case "firecracker":
		return &FirecrackerLauncher{Config: l.Config, Guest: l.Guest, Ports: a.Ports, Log: log.With("appliance", a.Name),
			Slots: l.Slots, Image: l.Image, Disk: a.Data}, nil
	case "qemu":
		return newQEMULauncher(a, log.With("appliance", a.Name))
	}
	return nil, fmt.Errorf("%w: %q", ErrNoLauncher, l.Kind)
}
