package appliance

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// debugShell is u-root's shell in an image built with nymote build --debug
// (images.DebugShell); other images have no shell at all.
const debugShell = "/bbin/gosh"

// startDebugShell runs the debug image's shell on the console, again each
// time it exits, until ctx ends. It does nothing in other images.
func startDebugShell(ctx context.Context, say func(string, ...any)) {
	if !exists(debugShell) {
		return
	}
	tty := consoleTTY()
	say("debug image: shell (u-root gosh, commands in /bbin) on %s", tty)
	go func() {
		for ctx.Err() == nil {
			if err := runShell(tty); err != nil {
				say("debug shell: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
}

// consoleTTY is the device behind /dev/console (the last console= of the
// kernel command line, such as ttyS0), which can be a controlling terminal;
// /dev/console itself if it cannot be found.
func consoleTTY() string {
	b, err := os.ReadFile("/sys/class/tty/console/active")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		if dev := filepath.Join("/dev", f[len(f)-1]); exists(dev) {
			return dev
		}
	}
	return "/dev/console"
}

// runShell runs one shell session in a new session with tty as its
// controlling terminal.
func runShell(tty string) error {
	f, err := os.OpenFile(tty, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(debugShell)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bbin", "HOME=/tmp", "TERM=linux", "SHELL=" + debugShell}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	return cmd.Run()
}
