package launch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
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

// XLDomain reads the domain's name (name = "...") from the xl
// configuration file config, which must parse as xl reads it
// (ParseXLConfig).
func XLDomain(config string) (string, error) {
	b, err := os.ReadFile(config)
	if err != nil {
		return "", fmt.Errorf("launch: xl: %w", err)
	}
	cfg, err := ParseXLConfig(string(b))
	if err != nil {
		return "", fmt.Errorf("launch: xl: %s: %w", config, err)
	}
	name := cfg["name"]
	if name.IsList || name.Atom == "" {
		return "", fmt.Errorf("launch: xl: %s has no name = \"...\" line", config)
	}
	return name.Atom, nil
}

// XLCommands are the xl command lines for a domain: create, clean
// shutdown (waiting), destroy, pause, unpause, the liveness check and the
// console (xl console: the guest's console on its standard output).
func XLCommands(config, domain string) map[string][]string {
	return map[string][]string{
		"create":  {"xl", "create", "-q", config},
		"stop":    {"xl", "shutdown", "-w", domain},
		"kill":    {"xl", "destroy", domain},
		"suspend": {"xl", "pause", domain},
		"resume":  {"xl", "unpause", domain},
		"alive":   {"xl", "domid", domain},
		"console": {"xl", "console", domain},
	}
}

// XL is a Xen guest run by the xl toolstack from an xl configuration (the
// one nymote build writes for Xen boards, or the user's own).
type XL struct {
	// Domain is the domain's name.
	Domain string
	run    Runner
	cmds   map[string][]string
}

// CreateXL creates the domain of the xl configuration file config (xl
// create -q) with run (nil means ExecRunner) and returns once xl has.
func CreateXL(ctx context.Context, config string, run Runner) (*XL, error) {
	if run == nil {
		run = ExecRunner
	}
	dom, err := XLDomain(config)
	if err != nil {
		return nil, err
	}
	x := &XL{Domain: dom, run: run, cmds: XLCommands(config, dom)}
	if _, err := x.xl(ctx, "create"); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *XL) xl(ctx context.Context, op string) ([]byte, error) {
	out, err := x.run(ctx, x.cmds[op]...)
	if err != nil {
		return out, fmt.Errorf("launch: %w", err)
	}
	return out, nil
}

// Shutdown asks the guest to power off cleanly (xl shutdown -w: the
// kernel runs /sbin/poweroff, the appliance's own) and waits for it. When
// that fails it destroys the domain and says so.
func (x *XL) Shutdown(ctx context.Context) error {
	if _, err := x.xl(ctx, "stop"); err != nil {
		x.Destroy(context.Background())
		return fmt.Errorf("launch: xl: clean shutdown of %s failed, destroyed: %w", x.Domain, err)
	}
	return nil
}

// XLConsole is a domain's console, read by xl console (run as its own
// process), as WatchTestBoot watches it: its Kill destroys the domain.
type XLConsole struct {
	*VM
	x *XL
}

// Console starts xl console on the domain, keeping its lines (copied to
// console, if not nil) as a VM's. What the guest printed before it
// attached may be missing; the appliance's good line comes seconds after
// its service started. End it with Close (or Kill, which destroys the
// domain too).
func (x *XL) Console(console io.Writer) (*XLConsole, error) {
	vm, err := StartCommand(x.cmds["console"], "", console)
	if err != nil {
		return nil, err
	}
	return &XLConsole{VM: vm, x: x}, nil
}

// Kill destroys the domain and ends the console.
func (c *XLConsole) Kill() {
	c.x.Destroy(context.Background())
	c.VM.Kill()
}

// PowerOff shuts the domain down cleanly (XL.Shutdown: destroyed when
// that fails) and ends the console.
func (c *XLConsole) PowerOff(ctx context.Context) error {
	err := c.x.Shutdown(ctx)
	c.Close()
	return err
}

// Close ends the console, leaving the domain as it is.
func (c *XLConsole) Close() { c.VM.Kill() }

// Destroy stops the domain at once (like pulling the plug).
func (x *XL) Destroy(ctx context.Context) error {
	_, err := x.xl(ctx, "kill")
	return err
}

// Pause and Unpause stop and continue the guest's vCPUs.
func (x *XL) Pause(ctx context.Context) error {
	_, err := x.xl(ctx, "suspend")
	return err
}

func (x *XL) Unpause(ctx context.Context) error {
	_, err := x.xl(ctx, "resume")
	return err
}

// Alive says whether the domain exists (xl domid).
func (x *XL) Alive(ctx context.Context) bool {
	_, err := x.xl(ctx, "alive")
	return err == nil
}
