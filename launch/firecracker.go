package launch

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// FirecrackerCommand is the command line that runs Firecracker (binary;
// "" means firecracker on $PATH) with the configuration file config (the
// one nymote build writes: kernel, initramfs, data drive, TAP device) and
// its API socket at sock.
func FirecrackerCommand(binary, config, sock string) []string {
	if binary == "" {
		binary = "firecracker"
	}
	return []string{binary, "--api-sock", sock, "--config-file", config}
}

// FirecrackerRequest is a call on Firecracker's API socket.
type FirecrackerRequest struct {
	Method, Path, Body string
}

// FirecrackerRequests are the API calls for a clean power-off
// (Ctrl-Alt-Del: the appliance stops cleanly and ends the VM by a reset),
// pause and resume.
var FirecrackerRequests = map[string]FirecrackerRequest{
	"stop":    {"PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`},
	"suspend": {"PATCH", "/vm", `{"state":"Paused"}`},
	"resume":  {"PATCH", "/vm", `{"state":"Resumed"}`},
}

// Firecracker is a running Firecracker microVM: its process (whose
// standard output is the guest's serial console, kept as a VM's is) and
// its API socket.
type Firecracker struct {
	*VM
	sock string
}

// StartFirecracker runs Firecracker (binary, "" for firecracker on $PATH)
// with the configuration file config, in its own process group, with its
// API socket in a temporary folder removed when it exits. Console lines
// are copied to console (if not nil) and kept for WaitLine.
func StartFirecracker(binary, config string, console io.Writer) (*Firecracker, error) {
	dir, err := os.MkdirTemp("", "nymote-fc-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "api.sock")
	args := FirecrackerCommand(binary, config, sock)
	vm, err := start(exec.Command(args[0], args[1:]...), "", dir, console)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Firecracker{VM: vm, sock: sock}, nil
}

// ExitErr is how Firecracker exited, once Done is closed.
func (f *Firecracker) ExitErr() error { return f.Wait(context.Background()) }

// PowerOff presses Ctrl-Alt-Del (the appliance stops cleanly and ends the
// VM) and waits for Firecracker to exit. If it has not when ctx ends,
// PowerOff kills it and says so.
func (f *Firecracker) PowerOff(ctx context.Context) error {
	err := f.API(ctx, "stop")
	if err == nil {
		select {
		case <-f.Done():
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	f.Kill()
	return fmt.Errorf("launch: firecracker did not power off, killed: %w", err)
}

// API makes the call FirecrackerRequests[name] on the API socket.
func (f *Firecracker) API(ctx context.Context, name string) error {
	r, ok := FirecrackerRequests[name]
	if !ok {
		return fmt.Errorf("launch: firecracker: no API call %q", name)
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", f.sock)
	}}}
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://firecracker"+r.Path, strings.NewReader(r.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("launch: firecracker %s: %w", name, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("launch: firecracker %s: %s", name, resp.Status)
	}
	return nil
}
