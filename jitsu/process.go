package jitsu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// processProxyNetworks is where jitsu's connections to a host process
// come from (it dials the loopback address the process printed): the
// NYMOTE_PROXY the process launcher sets with proxy_protocol, which
// the appliance runtime's --proxy takes as its default.
const processProxyNetworks = "127.0.0.1/32,::1/128"

// ProcessLauncher runs an appliance program as an ordinary host process on
// host sockets (the Mirage "unix target"): the same program that is /init
// in an image, e.g. nymote's mail appliance with --data DIR --port imap=0.
//
// The program must print one line per listener on standard output ending
// in "NAME listening on ADDR" (as package appliance does); Start waits for
// a line for every port and for ADDR to accept a connection.
type ProcessLauncher struct {
	// Command is the program and its arguments; ${data} is replaced by
	// Data and ${port:NAME} by 0 (the program picks a free port and
	// prints it).
	Command []string
	// Env are extra KEY=VALUE variables added to jitsu's environment.
	Env []string
	// Data is the data directory.
	Data string
	// Ports are the names of the service's ports.
	Ports []string
	// Log receives the program's output at debug level and its exits.
	Log *slog.Logger
}

var _ Launcher = (*ProcessLauncher)(nil)

// listenRE matches a listener line: "... NAME listening on ADDR".
var listenRE = regexp.MustCompile(`(\S+) listening on (\S+)\s*$`)

// Args returns the command line Start runs, placeholders replaced.
func (l *ProcessLauncher) Args() []string {
	args := make([]string, len(l.Command))
	for i, a := range l.Command {
		args[i] = os.Expand(a, func(k string) string {
			switch {
			case k == "data":
				return l.Data
			case strings.HasPrefix(k, "port:"):
				return "0"
			}
			return "${" + k + "}"
		})
	}
	return args
}

// Start runs the program and waits for its listeners.
func (l *ProcessLauncher) Start(ctx context.Context) (_ Instance, err error) {
	args := l.Args()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), l.Env...)
	// Its own process group, so that Stop reaches the children of a
	// wrapper (go run, a shell script) too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	p := &process{cmd: cmd, addrs: map[string]string{}, done: make(chan struct{}), listening: make(chan struct{}), want: len(l.Ports), log: l.Log}
	for _, n := range l.Ports {
		p.addrs[n] = ""
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("jitsu: starting %s: %w", args[0], err)
	}
	l.Log.Info("process started", "pid", cmd.Process.Pid, "command", strings.Join(args, " "))
	defer func() {
		if err != nil {
			p.kill()
			<-p.done
		}
	}()
	go p.read(out)
	select {
	case <-p.listening:
	case <-p.done:
		return nil, fmt.Errorf("jitsu: %s exited before listening: %v%s", args[0], p.Err(), p.tail())
	case <-ctx.Done():
		return nil, fmt.Errorf("jitsu: %s did not listen on %s in time: %w%s", args[0], strings.Join(p.missing(), ", "), ctx.Err(), p.tail())
	}
	for _, n := range l.Ports {
		if err := waitAccept(ctx, p.Addr(n), p.done); err != nil {
			return nil, fmt.Errorf("jitsu: %s port %s (%s): %w%s", args[0], n, p.Addr(n), err, p.tail())
		}
	}
	return p, nil
}

// waitAccept dials addr until a connection is accepted, ctx ends or done
// is closed.
func waitAccept(ctx context.Context, addr string, done <-chan struct{}) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections: %w (last: %v)", ctx.Err(), err)
		case <-done:
			return errors.New("exited")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// process is a running ProcessLauncher program.
type process struct {
	cmd       *exec.Cmd
	log       *slog.Logger
	want      int
	listening chan struct{}
	done      chan struct{}

	mu      sync.Mutex
	addrs   map[string]string
	found   int
	lines   []string // the last lines of output
	stopped bool
	err     error
}

var _ Suspender = (*process)(nil)

func (p *process) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.log.Debug("output", "line", line)
		p.mu.Lock()
		if len(p.lines) == 20 {
			p.lines = p.lines[1:]
		}
		p.lines = append(p.lines, line)
		if m := listenRE.FindStringSubmatch(line); m != nil {
			if a, ok := p.addrs[m[1]]; ok && a == "" {
				p.addrs[m[1]] = m[2]
				p.found++
				if p.found == p.want {
					close(p.listening)
				}
			}
		}
		p.mu.Unlock()
	}
	io.Copy(io.Discard, out)
	err := p.cmd.Wait()
	p.mu.Lock()
	if !(p.stopped && err == nil) {
		if err == nil {
			err = errors.New("exited with status 0")
		}
		p.err = err
	}
	p.mu.Unlock()
	close(p.done)
}

func (p *process) Addr(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[name]
}

func (p *process) missing() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var m []string
	for n, a := range p.addrs {
		if a == "" {
			m = append(m, n)
		}
	}
	return m
}

// tail is the last lines of output, for error messages.
func (p *process) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lines) == 0 {
		return " (no output)"
	}
	l := p.lines
	if len(l) > 5 {
		l = l[len(l)-5:]
	}
	return "; last output: " + strings.Join(l, " | ")
}

func (p *process) signal(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

func (p *process) kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM (the appliance runtime's clean power-off: stop
// accepting, flush the store) and waits; SIGKILL when ctx ends.
func (p *process) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.signal(syscall.SIGCONT) // a suspended process must run to stop
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.Err()
	case <-ctx.Done():
		p.kill()
		<-p.done
		return fmt.Errorf("jitsu: did not exit after SIGTERM, killed: %w", ctx.Err())
	}
}

func (p *process) Done() <-chan struct{} { return p.done }

func (p *process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Suspend stops the process group (SIGSTOP): it keeps its memory and its
// sockets, and the kernel queues new connections in its listen backlog.
func (p *process) Suspend(ctx context.Context) error { return p.signal(syscall.SIGSTOP) }

// Resume continues a suspended process (SIGCONT).
func (p *process) Resume(ctx context.Context) error { return p.signal(syscall.SIGCONT) }
