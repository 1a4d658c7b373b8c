package jitsu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Runner runs a command to completion and returns its combined output.
// ExecRunner runs it for real; tests hand in one that records.
type Runner func(ctx context.Context, args ...string) ([]byte, error)

// ExecRunner runs args with os/exec.
func ExecRunner(ctx context.Context, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// XLLauncher boots an appliance as a Xen guest with the xl toolstack, from
// the xl configuration that nymote build writes for Xen boards. The guest
// is on a bridge with its own address (Guest), so readiness is a TCP
// connection to Guest:port.
type XLLauncher struct {
	// Config is the xl configuration file; its name = "..." line names
	// the domain.
	Config string
	// Guest is the guest's IP address.
	Guest string
	// Ports are the service's ports on the guest.
	Ports []PortConfig
	// Run runs xl; nil means ExecRunner.
	Run Runner
	// Poll is how often a running domain is checked; zero means 1s.
	Poll time.Duration
	Log  *slog.Logger
}

var nameRE = regexp.MustCompile(`(?m)^\s*name\s*=\s*["']([^"']+)["']`)

// Domain reads the domain's name from the configuration.
func (l *XLLauncher) Domain() (string, error) {
	b, err := os.ReadFile(l.Config)
	if err != nil {
		return "", fmt.Errorf("jitsu: xl: %w", err)
	}
	m := nameRE.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("jitsu: xl: %s has no name = \"...\" line", l.Config)
	}
	return string(m[1]), nil
}

// XLCommands are the xl command lines for a domain: create, clean
// shutdown (waiting), destroy, pause, unpause and the liveness check.
func XLCommands(config, domain string) map[string][]string {
	return map[string][]string{
		"create":  {"xl", "create", "-q", config},
		"stop":    {"xl", "shutdown", "-w", domain},
		"kill":    {"xl", "destroy", domain},
		"suspend": {"xl", "pause", domain},
		"resume":  {"xl", "unpause", domain},
		"alive":   {"xl", "domid", domain},
	}
}

// Start creates the domain and waits for its ports.
func (l *XLLauncher) Start(ctx context.Context) (_ Instance, err error) {
	run := l.Run
	if run == nil {
		run = ExecRunner
	}
	dom, err := l.Domain()
	if err != nil {
		return nil, err
	}
	cmds := XLCommands(l.Config, dom)
	if _, err := run(ctx, cmds["create"]...); err != nil {
		return nil, fmt.Errorf("jitsu: %w", err)
	}
	poll := l.Poll
	if poll == 0 {
		poll = time.Second
	}
	v := &toolVM{run: run, cmds: cmds, guest: l.Guest, ports: l.Ports, done: make(chan struct{})}
	go v.watch(poll)
	defer func() {
		if err != nil {
			run(context.Background(), cmds["kill"]...)
			v.markDone(nil)
		}
	}()
	for _, p := range l.Ports {
		if err := waitAccept(ctx, v.Addr(p.Name), v.done); err != nil {
			return nil, fmt.Errorf("jitsu: xl domain %s port %s: %w", dom, p.Name, err)
		}
	}
	return v, nil
}

// toolVM is a guest run by a toolstack command (xl).
type toolVM struct {
	run   Runner
	cmds  map[string][]string
	guest string
	ports []PortConfig

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
		if _, err := v.run(context.Background(), v.cmds["alive"]...); err != nil {
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
		v.mu.Lock()
		v.err = err
		v.mu.Unlock()
		close(v.done)
	})
}

func (v *toolVM) Addr(name string) string {
	for _, p := range v.ports {
		if p.Name == name {
			return net.JoinHostPort(v.guest, strconv.Itoa(p.Port))
		}
	}
	return net.JoinHostPort(v.guest, "0")
}

func (v *toolVM) Stop(ctx context.Context) error {
	v.mu.Lock()
	v.stopped = true
	v.mu.Unlock()
	_, err := v.run(ctx, v.cmds["stop"]...)
	if err != nil {
		v.run(context.Background(), v.cmds["kill"]...)
		err = fmt.Errorf("jitsu: clean shutdown failed, destroyed: %w", err)
	}
	v.markDone(nil)
	return err
}

func (v *toolVM) Done() <-chan struct{} { return v.done }

func (v *toolVM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

func (v *toolVM) Suspend(ctx context.Context) error {
	_, err := v.run(ctx, v.cmds["suspend"]...)
	return err
}

func (v *toolVM) Resume(ctx context.Context) error {
	_, err := v.run(ctx, v.cmds["resume"]...)
	return err
}

// FirecrackerLauncher boots an appliance as a Firecracker microVM from the
// Firecracker configuration that nymote build writes (kernel, initramfs,
// data drive, TAP device). The guest has its own address (Guest) on the
// TAP device.
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
}

// Command is the command line Start runs with its API socket at sock.
func (l *FirecrackerLauncher) Command(sock string) []string {
	bin := l.Binary
	if bin == "" {
		bin = "firecracker"
	}
	return []string{bin, "--api-sock", sock, "--config-file", l.Config}
}

// FirecrackerRequest is a call on Firecracker's API socket.
type FirecrackerRequest struct {
	Method, Path, Body string
}

// FirecrackerRequests are the API calls for a clean power-off (Ctrl-Alt-Del:
// the guest's init powers off), pause and resume.
var FirecrackerRequests = map[string]FirecrackerRequest{
	"stop":    {"PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`},
	"suspend": {"PATCH", "/vm", `{"state":"Paused"}`},
	"resume":  {"PATCH", "/vm", `{"state":"Resumed"}`},
}

// Start runs Firecracker and waits for the guest's ports.
func (l *FirecrackerLauncher) Start(ctx context.Context) (_ Instance, err error) {
	dir, err := os.MkdirTemp("", "nymote-fc-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "api.sock")
	args := l.Command(sock)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("jitsu: starting %s: %w", args[0], err)
	}
	v := &fcVM{cmd: cmd, sock: sock, guest: l.Guest, ports: l.Ports, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		os.RemoveAll(dir)
		v.mu.Lock()
		if !v.stopped {
			v.err = fmt.Errorf("firecracker exited: %v", err)
		}
		v.mu.Unlock()
		close(v.done)
	}()
	defer func() {
		if err != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
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
	cmd   *exec.Cmd
	sock  string
	guest string
	ports []PortConfig
	done  chan struct{}

	mu      sync.Mutex
	stopped bool
	err     error
}

func (v *fcVM) api(ctx context.Context, name string) error {
	r := FirecrackerRequests[name]
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", v.sock)
	}}}
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://firecracker"+r.Path, strings.NewReader(r.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("jitsu: firecracker %s: %w", name, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("jitsu: firecracker %s: %s", name, resp.Status)
	}
	return nil
}

func (v *fcVM) Addr(name string) string {
	for _, p := range v.ports {
		if p.Name == name {
			return net.JoinHostPort(v.guest, strconv.Itoa(p.Port))
		}
	}
	return net.JoinHostPort(v.guest, "0")
}

func (v *fcVM) Stop(ctx context.Context) error {
	v.mu.Lock()
	v.stopped = true
	v.mu.Unlock()
	err := v.api(ctx, "stop")
	if err == nil {
		select {
		case <-v.done:
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
	<-v.done
	return fmt.Errorf("jitsu: firecracker did not power off, killed: %w", err)
}

func (v *fcVM) Done() <-chan struct{} { return v.done }

func (v *fcVM) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

func (v *fcVM) Suspend(ctx context.Context) error { return v.api(ctx, "suspend") }
func (v *fcVM) Resume(ctx context.Context) error  { return v.api(ctx, "resume") }

var (
	_ Suspender = (*toolVM)(nil)
	_ Suspender = (*fcVM)(nil)
)
