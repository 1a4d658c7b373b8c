// Package appliance is Nymote's runtime: it runs one service as PID 1 of an
// appliance VM, or as an ordinary process on a host (the Mirage "unix
// target"), handing the service the same things in both cases: a data
// directory, one net.Listener per named port, a logger and a console.
//
// An appliance's main is one call:
//
//	func main() { appliance.Main(hello.Service()) }
//
// As PID 1 (see init_linux.go) Main mounts /proc, /sys, /dev and /tmp,
// loads the image's kernel modules, waits for the kernel's entropy pool,
// sets the clock from the RTC, mounts the data disk (ext4) on /data and
// brings up the network at the same time (refusing to serve without a data
// disk), opens the service's listeners and prints one console line per
// listener:
//
//	nymote: hello hello listening on 10.0.2.15:7
//
// It powers the machine off cleanly on the ACPI power button (or the arm64
// virt power key), SIGTERM or SIGINT: it cancels the service's context,
// waits for Serve to return (the service flushes its store), syncs,
// unmounts /data and calls reboot(POWER_OFF). When Serve fails or panics it
// logs why and reboots (or powers off, with nymote.oncrash=poweroff).
//
// As a host process Main runs the app's own host-mode program when it has
// one (Service.Host, such as mail's --imap ADDR flags), else parses the
// runtime's flags (see RunHost): the service listens on host sockets, by
// default on 127.0.0.1 at its port plus 1000 for ports under 1024
// (app.HostPort). Either way --net tap:NAME puts it on a netstack over a
// TAP device instead (see Run).
//
// The app's descriptor (name, ports) is data in package appliance/app,
// which programs that never run an appliance (the host tool, jitsu)
// import instead of this package: this one links gVisor and u-root.
//
// The kernel command line configures the PID 1 runtime: nymote.ip=ADDR/LEN
// and nymote.gw=ADDR for a static address (DHCP otherwise), nymote.net=KIND,
// nymote.data=DEVICE, nymote.ephemeral=1 (serve from a tmpfs without a data
// disk), nymote.oncrash=reboot|poweroff, nymote.log=debug,
// nymote.proxy=CIDR[,CIDR] (the networks of a proxy such as jitsu that
// starts each connection with a PROXY protocol header: see ProxyListener),
// nymote.settle=DURATION (see below), nymote.updatedisk=DEVICE|auto,
// nymote.sdslot=a|b and nymote.testboot=DURATION (see below), nymote.trial=1
// (a host-booted image's test boot, set by its launcher), and any other
// nymote.KEY=VALUE reaches the service in Env.Config.
//
// Before the service starts, the runtime checks the data disk's format
// (package update, "Data formats") against the app's (app.App.Data): a
// fresh disk gets the app's format; an older format is served as it is
// on a test boot (nymote.trial, or an SD card board's test boot), and
// migrated forward, one logged step at a time with the service's
// Service.Migrations, on any other boot; a newer format (written by a
// newer image) makes the runtime refuse to serve, naming both formats.
// After the good line of a test boot whose image migrates, the runtime
// reboots (app.MigrateRebootLine) so that the committed image migrates at
// its next boot. Host mode (RunHost) migrates at once.
//
// Once the service has kept serving for the settle time (app.DefaultSettle)
// with /data mounted read-write, the runtime prints the good line
// (app.GoodMarker), on which a launcher test-booting a new image commits it
// (package update). With an update disk attached by the launcher and an
// image that trusts a signing key, the runtime serves updates on its own
// port (app.UpdatePort: update.Receiver over HTTPS, administrators named by
// the service through Env.SetUpdateAuth), and reboots into an update it
// has written to the update disk. On an SD card board with A/B slots
// (nymote.sdslot, passed by the card's boot script; package
// internal/sdboot) the runtime is its own launcher: it writes an update
// into the card's other slot and marks it for a test boot in U-Boot's
// environment, commits a test boot itself on its good line, and reboots a
// test boot that is not good within nymote.testboot (5 minutes), after
// which U-Boot boots the committed slot.
//
// As PID 1 it also sets the Go runtime's soft memory limit to 70% of the
// machine's memory, or less where the initramfs leaves less available,
// unless GOMEMLIMIT is set (see memoryLimit).
package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/update"
)

// Service is what an appliance runs: an app (its descriptor, declared in
// package app) and the functions that serve it.
type Service struct {
	// App is the app's descriptor: Name names it in console lines
	// ("mail"); each of its Ports gets a listener in Env.Listeners under
	// the port's Name.
	app.App
	// Serve runs the service on env's listeners until ctx is done, then
	// stops accepting, finishes in-flight writes, closes its store and
	// returns nil. Any other return is a crash.
	Serve func(ctx context.Context, env *Env) error
	// Host, when set, is the app's own host-mode program, with flags of
	// its own (mail's --imap ADDR): Main runs it on a host (see Run)
	// instead of RunHost's generic flags. Nil: RunHost serves Serve.
	Host func(ctx context.Context, h *HostEnv) error
	// Migrations are the code of the forward data migrations the app
	// declares (App.Data.Migrations), by name: each takes the data
	// directory from one format to the next, idempotently (see
	// update.MigrationFunc). The runtime runs them at the first boot of
	// a committed image whose format is newer than the data disk's,
	// before Serve.
	Migrations map[string]update.MigrationFunc
}

// HostEnv is what the runtime hands an app's own host-mode program
// (Service.Host).
type HostEnv struct {
	// Args are the command line arguments, without the program name and
	// without the runtime's network flags (--net, --ip, --gw).
	Args []string
	// Stdout takes console lines ("nymote: mail imap listening on ...");
	// Stderr takes logs.
	Stdout, Stderr io.Writer
	// Network is where the program listens and dials: host sockets, or
	// with --net tap:NAME a netstack on that TAP device. The runtime
	// closes it when Host returns.
	Network Network
	// Addr is the network's own address: 127.0.0.1 on host sockets, the
	// netstack's (--ip, or from DHCP) on a TAP device; the unspecified
	// address when DHCP has given none yet.
	Addr netip.Addr
}

// Env is what the runtime hands a service.
type Env struct {
	// DataDir is the data directory (on the data disk inside an
	// appliance): the service keeps its store in DataDir/store.git.
	DataDir string
	// Listeners are the service's listeners by port name. The service
	// owns them: it closes them when it stops.
	Listeners map[string]net.Listener
	// Config holds the nymote.KEY=VALUE options of the kernel command
	// line (on a host: --set KEY=VALUE), without the "nymote." prefix.
	Config map[string]string
	// Log is the service's logger.
	Log *slog.Logger
	// Console is where the service prints lines meant for the person
	// watching the console (a certificate fingerprint).
	Console io.Writer
	// Dial opens outbound connections over the appliance's network.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Resolver resolves names over the appliance's network.
	Resolver *net.Resolver
	// SetUpdateAuth, when the runtime serves updates (app.UpdatePort),
	// tells it who may send one: check returns nil for an
	// administrator's name and password (the apps: a store user with git
	// write access). Until it is called, updates are refused. Nil when
	// the runtime serves no updates.
	SetUpdateAuth func(check func(user, password string) error)
}

// Errors callers and tests branch on.
var (
	// ErrNoDataDisk: the appliance has no data disk and was not built
	// for ephemeral data, so it refuses to serve.
	ErrNoDataDisk = errors.New("no data disk")
)

// InImage reports whether this process is one that Main runs as the
// image's runtime, whatever an app's own host-mode flags would say: the
// appliance's init (PID 1), or its poweroff helper (/sbin/poweroff, a link
// to /init that the kernel runs for an orderly power off, on Xen's xl
// shutdown for one).
func InImage() bool {
	return filepath.Base(os.Args[0]) == poweroffHelper || os.Getpid() == 1
}

// Main is an app program's whole main function: the runtime decides what
// the process is. It runs svc as the appliance's init when the process is
// PID 1 (it never returns then), as the poweroff helper when called
// poweroff (see InImage), else as a host process with os.Args' flags (see
// Run) until SIGINT or SIGTERM. It exits the process.
func Main(svc Service) {
	if filepath.Base(os.Args[0]) == poweroffHelper {
		runPoweroffHelper() // does not return
	}
	if os.Getpid() == 1 {
		runInit(svc) // does not return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, svc, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", svc.Name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// listenLine is the console line printed for each listener.
func listenLine(svc, port string, addr net.Addr) string {
	return fmt.Sprintf("nymote: %s %s listening on %s", svc, port, addr)
}

// openListeners opens svc's ports on nw, calling addr for each port's
// address; on error it closes those already open. With proxy networks
// each listener reads the PROXY header of connections from them (see
// ProxyListener), so that every service sees its clients' addresses.
func openListeners(nw Network, svc Service, addr func(app.Port) string, proxy []netip.Prefix, log *slog.Logger) (_ map[string]net.Listener, err error) {
	ls := map[string]net.Listener{}
	defer func() {
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
		}
	}()
	for _, p := range svc.Ports {
		if _, dup := ls[p.Name]; dup {
			return nil, fmt.Errorf("appliance: port name %q used twice", p.Name)
		}
		l, err := nw.Listen("tcp", addr(p))
		if err != nil {
			return nil, fmt.Errorf("appliance: %s %s: %w", svc.Name, p.Name, err)
		}
		ls[p.Name] = ProxyListener(l, proxy, log.With("port", p.Name))
	}
	return ls, nil
}

// serve runs svc.Serve, turning a panic into an error.
func serve(ctx context.Context, svc Service, env *Env) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return svc.Serve(ctx, env)
}

func itoa(i int) string { return strconv.Itoa(i) }

// dedupWriter passes lines through to w, except lines the runtime has
// already printed (a service may announce its own listeners too).
type dedupWriter struct {
	w    io.Writer
	mu   sync.Mutex
	seen map[string]bool
	buf  []byte
}

func newDedupWriter(w io.Writer, printed []string) *dedupWriter {
	d := &dedupWriter{w: w, seen: map[string]bool{}}
	for _, l := range printed {
		d.seen[l] = true
	}
	return d
}

// Write writes whole lines; a partial line waits for its end.
func (d *dedupWriter) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf = append(d.buf, p...)
	for {
		i := bytes.IndexByte(d.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := d.buf[:i+1]
		if !d.seen[strings.TrimRight(string(line), "\r\n")] {
			if _, err := d.w.Write(line); err != nil {
				return len(p), err
			}
		}
		d.buf = d.buf[i+1:]
	}
}

// announce prints the listener lines of svc and returns the console the
// service gets: the same console, without those lines should the service
// print them again.
func announce(console io.Writer, svc Service, ls map[string]net.Listener) io.Writer {
	var lines []string
	for _, p := range svc.Ports {
		l := listenLine(svc.Name, p.Name, ls[p.Name].Addr())
		fmt.Fprintln(console, l)
		lines = append(lines, l)
	}
	return newDedupWriter(console, lines)
}
