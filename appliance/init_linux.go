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
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/u-root/u-root/pkg/kmodule"
	"github.com/u-root/u-root/pkg/libinit"
	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/internal/sdboot"
	"github.com/nymote/nymote/update"
)

// dataMount is where the data disk is mounted; it is the service's DataDir.
const dataMount = "/data"

// modulesFile lists (one per line) the kernel modules the image carries,
// for /init to load.
const modulesFile = "/etc/nymote/modules"

// poweroffByReset is the command line's nymote.poweroff=reset: halt
// powers off by a reset (for Firecracker, which ends the VM on one).
var poweroffByReset atomic.Bool

// haltAction is how PID 1 ends.
type haltAction int

const (
	powerOff haltAction = iota
	reboot
)

// poweroffHelper is the name of the image's /sbin/poweroff, a link to
// /init. The kernel runs it (as its poweroff_cmd) for an orderly power off
// it is asked for from outside: Xen's xl shutdown, for one. Main, called
// by that name, asks PID 1 to stop cleanly (SIGTERM) and exits.
const poweroffHelper = "poweroff"

// runPoweroffHelper is Main run as /sbin/poweroff.
func runPoweroffHelper() {
	if err := unix.Kill(1, unix.SIGTERM); err != nil {
		fmt.Fprintf(os.Stderr, "poweroff: signalling init: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runInit is Main as PID 1. It never returns.
func runInit(svc Service) {
	console := io.Writer(os.Stdout)
	fmt.Fprintf(console, "nymote: %s init started at %s\n", svc.Name, uptime())
	action := initMain(svc, console)
	halt(console, action)
}

// uptime is the time since the kernel started, as a duration string.
func uptime() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return "?"
	}
	return time.Duration(ts.Nano()).Round(time.Millisecond).String()
}

// execUptime is the time since the kernel started at which the kernel ran
// /init, from the kernel's log ("Run /init as init process", in the log
// buffer even when quiet keeps it off the console): what lies between it
// and "init started at" is the Go runtime's start and the program's
// package initialisation. (PID 1's start time in /proc is that of the
// kernel thread that later runs /init, so it cannot say.)
func execUptime() string {
	// Raw reads: through an os.File, Go's poller would wait at the end
	// of the log for the next record instead of returning EAGAIN.
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "?"
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	for {
		// One record per read; EAGAIN after the last.
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EPIPE:
			continue // records overwritten while reading
		case err == unix.EINTR:
			continue
		case err != nil || n <= 0:
			return "?"
		}
		if d, ok := runInitRecord(buf[:n]); ok {
			return d.String()
		}
	}
}

// runInitRecord returns the time of a /dev/kmsg record
// ("PRI,SEQ,USEC,FLAGS;MESSAGE") if it is the kernel's "Run PATH as init
// process".
func runInitRecord(rec []byte) (time.Duration, bool) {
	head, msg, ok := bytes.Cut(rec, []byte(";"))
	if !ok || !bytes.HasPrefix(msg, []byte("Run /")) || !bytes.Contains(msg, []byte(" as init process")) {
		return 0, false
	}
	f := strings.Split(string(head), ",")
	if len(f) < 3 {
		return 0, false
	}
	us, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return 0, false
	}
	return (time.Duration(us) * time.Microsecond).Round(time.Millisecond), true
}

// setMemoryLimit sets the Go runtime's soft memory limit from the
// machine's memory (see memoryLimit), so that the garbage collector works
// harder before the appliance outgrows its VM, and says so on the console.
func setMemoryLimit(say func(string, ...any)) {
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		say("memory limit not set: %v", err)
		return
	}
	limit, why, err := memoryLimit(meminfo, os.Getenv("GOMEMLIMIT"))
	if err != nil {
		say("memory limit not set: %v", err)
		return
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	say("memory limit %s (%s)", mib(debug.SetMemoryLimit(-1)), why)
}

// base is the file system PID 1 sets up before anything else.
var base = []libinit.Creator{
	libinit.Dir{Name: "/dev", Mode: 0o755},
	libinit.Mount{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs"},
	libinit.Dir{Name: "/proc", Mode: 0o555},
	libinit.Mount{Source: "proc", Target: "/proc", FSType: "proc"},
	libinit.Dir{Name: "/sys", Mode: 0o555},
	libinit.Mount{Source: "sysfs", Target: "/sys", FSType: "sysfs"},
	libinit.Dir{Name: "/tmp", Mode: 0o1777},
	libinit.Mount{Source: "tmpfs", Target: "/tmp", FSType: "tmpfs"},
	libinit.Dir{Name: dataMount, Mode: 0o700},
}

// initMain boots the appliance, serves until power-off or a crash, shuts
// down and says how to halt.
func initMain(svc Service, console io.Writer) haltAction {
	say := func(format string, args ...any) {
		fmt.Fprintf(console, "nymote: "+format+"\n", args...)
	}
	steps := newSteps()
	libinit.Create(base, false)
	// Ctrl-Alt-Del (Firecracker's SendCtrlAltDel, a keyboard's) then
	// sends PID 1 a SIGINT, a clean stop, instead of the kernel's
	// immediate restart.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		say("disabling the kernel's Ctrl-Alt-Del restart: %v", err)
	}
	steps.done("mounts")
	setMemoryLimit(say)
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		say("reading /proc/cmdline: %v (is /proc mounted?)", err)
		return powerOff
	}
	cfg, err := parseCmdline(string(cmdline))
	if err != nil {
		say("%v; powering off", err)
		return powerOff
	}
	poweroffByReset.Store(cfg.poweroffByReset)
	level := slog.LevelWarn
	if cfg.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: level}))
	crash := reboot
	if cfg.poweroffOnCrash {
		crash = powerOff
	}

	loadModules(cfg, say)
	steps.done("modules")
	// "entropy" is the time spent waiting for the kernel's pool; "seed"
	// the rest of the random seed's refresh on boards that carry one
	// (finding the partition, reading and rewriting it).
	waited := seedEntropy(cfg.seed, say)
	if cfg.seed != "" {
		steps.doneSplit("entropy", waited, "seed")
	} else {
		steps.done("entropy")
	}
	setClock(log)
	steps.done("clock")
	// An SD card board with A/B slots: which slot runs, and whether this
	// is a new image's test boot.
	var sd *sdSlots
	if cfg.sdSlot != "" {
		if sd, err = openSDSlots(cfg, say); err != nil {
			say("SD card slots: %v (no updates, no commit)", err)
			sd = nil
		} else {
			say("booted from %s", sd.describe())
		}
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGPWR)
	go func() {
		s := <-sigs
		cancel(fmt.Errorf("signal %v", s))
	}()
	watchPowerButton(func(dev string) { cancel(fmt.Errorf("power button (%s)", dev)) }, log)

	// The data disk and the network do not depend on each other: set
	// them up at once, so that the one's waits (the disk's I/O, the
	// NIC, DHCP) overlap the other's work. Without a data disk the
	// network's set-up is cancelled and the appliance refuses to serve,
	// as before.
	netCtx, netCancel := context.WithCancelCause(ctx)
	defer netCancel(nil)
	type diskResult struct {
		unmount func()
		err     error
		took    time.Duration
	}
	diskc := make(chan diskResult, 1)
	go func() {
		start := time.Now()
		unmount, err := mountData(cfg, say)
		if err != nil {
			netCancel(err)
		}
		diskc <- diskResult{unmount, err, time.Since(start)}
	}()
	netStart := time.Now()
	nw, addr, netErr := openNetwork(netCtx, cfg, log)
	netTook := time.Since(netStart)
	disk := <-diskc
	if disk.err != nil {
		if netErr == nil {
			closeWithin(nw, 3*time.Second, say)
		}
		say("%v: refusing to serve; powering off", disk.err)
		return powerOff
	}
	defer disk.unmount()
	if netErr != nil {
		say("network: %v; powering off", netErr)
		return crash
	}
	defer closeWithin(nw, 3*time.Second, say)
	steps.doneTogether([]string{"data disk", "network"}, []time.Duration{disk.took, netTook})
	// The data format (package update): a test boot serves the data as
	// it is and migrates only after its commit; a committed image
	// migrates here, before serving; an image older than the data
	// refuses to serve.
	trial := cfg.trial || (sd != nil && sd.testBoot())
	migrateAfterCommit, err := checkDataFormat(ctx, dataMount, svc, trial, say)
	if err != nil {
		if trial {
			say("%v: the test boot is not good; rebooting", err)
			return reboot
		}
		say("%v; powering off", err)
		return powerOff
	}
	sp, err := startSignpost(nw, dataMount, cfg.service, log)
	if err != nil {
		say("signpost: %v", err)
		return crash
	}
	listenAddr := addr.String()
	if sp != nil {
		defer sp.Close()
		listenAddr = "" // every address of the stack: the tunnel's too
		steps.done("signpost")
	}
	ls, err := openListeners(nw, svc, func(p app.Port) string { return net.JoinHostPort(listenAddr, itoa(p.Port)) }, cfg.proxy, log)
	if err != nil {
		say("%v", err)
		return crash
	}
	svcConsole := announce(console, svc, ls)
	if len(cfg.proxy) > 0 {
		say("%s reads a PROXY header on connections from %s", svc.Name, joinPrefixes(cfg.proxy))
	}
	steps.done("listeners")
	readyAt := uptime()
	say("%s ready at %s (%s; /init started by the kernel at %s)", svc.Name, readyAt, steps, execUptime())
	startDebugShell(ctx, say)

	env := &Env{
		DataDir: dataMount, Listeners: ls, Config: cfg.service, Log: log, Console: svcConsole,
		Dial: nw.DialContext, Resolver: nw.Resolver(),
	}
	// An update received: stop cleanly, then reboot into it. A test
	// boot committed whose image migrates the data: stop cleanly, then
	// reboot to migrate.
	var rebootAfterStop, migrateReboot atomic.Bool
	var sink func(*update.Image) error
	var stream func(*update.Image) (update.BundleSink, error)
	var where string
	var sinkErr error
	switch {
	case cfg.updateDisk != "":
		stream, where, sinkErr = updateDiskSink(cfg)
	case sd != nil:
		sink, where = sd.install, "into SD card slot "+sdboot.Other(sd.booted)
	}
	if sinkErr != nil {
		say("no updates: %v", sinkErr)
	} else if sink != nil || stream != nil {
		up, err := startUpdatePort(nw, addr, dataMount, sink, stream, where, func() {
			rebootAfterStop.Store(true)
			cancel(errors.New("an update was received"))
		}, say, log)
		if err != nil {
			say("no updates: %v", err)
		} else {
			defer up.close()
			env.SetUpdateAuth = up.setAuth
		}
	}
	// An SD card board's test boot that is not good within its bound
	// reboots: boot.scr then returns to the committed slot.
	var giveUp, good atomic.Bool
	if sd != nil && sd.testBoot() {
		bound := time.AfterFunc(cfg.testBootBound, func() {
			if !good.Load() {
				giveUp.Store(true)
				cancel(fmt.Errorf("the test boot was not good within %s", cfg.testBootBound))
			}
		})
		defer bound.Stop()
	}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, svc, env) }()
	// The good line: the service has kept serving for the settle time
	// and the data disk is mounted read-write. A launcher test-booting
	// a new image commits it on this line (package update).
	settled := time.NewTimer(cfg.settle)
	defer settled.Stop()
wait:
	select {
	case <-settled.C:
		if err := dataWritable(); err != nil {
			say("not good: %v", err)
		} else {
			say("%s %s for %s, data disk mounted read-write", svc.Name, app.GoodMarker, cfg.settle)
			good.Store(true)
			committed := true
			if sd != nil && sd.testBoot() {
				if _, err := sd.commit(); err != nil {
					committed = false
					say("committing slot %s: %v (the next boot returns to slot %s)", sd.booted, err, sd.committed())
				} else {
					say("slot %s committed: the new image boots from now on (slot %s keeps the previous one)", sd.booted, sdboot.Other(sd.booted))
				}
			}
			// On a host-booted VM the launcher commits on the good
			// line: the next boot is the committed image, or, had
			// it not committed, the previous one on the data as it
			// is.
			if migrateAfterCommit && committed {
				migrateReboot.Store(true)
				cancel(errors.New("the new image migrates the data at its next boot"))
			}
		}
		goto wait
	case err := <-done:
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("Serve returned without being asked to stop")
			}
			if crash == reboot {
				say("%s failed: %v; rebooting", svc.Name, err)
			} else {
				say("%s failed: %v; powering off", svc.Name, err)
			}
			return crash
		}
	case <-ctx.Done():
		if rebootAfterStop.Load() {
			say("%s: stopping %s", app.UpdateRebootLine, svc.Name)
		} else if migrateReboot.Load() {
			say("%s: stopping %s", app.MigrateRebootLine, svc.Name)
		} else if giveUp.Load() {
			say("%v: stopping %s, rebooting into the committed slot %s", context.Cause(ctx), svc.Name, sd.committed())
		} else {
			say("power off requested by %v: stopping %s", context.Cause(ctx), svc.Name)
		}
		// Whatever hangs from here on, the machine goes off: sync and
		// power off 45 s after the request.
		time.AfterFunc(45*time.Second, func() {
			say("shutdown took more than 45s; powering off without unmounting")
			halt(console, powerOff)
		})
		select {
		case err := <-done:
			if err != nil {
				say("%s stopped with an error: %v", svc.Name, err)
			}
		case <-time.After(20 * time.Second):
			say("%s did not stop within 20s; powering off anyway", svc.Name)
		}
	}
	if rebootAfterStop.Load() || migrateReboot.Load() || giveUp.Load() {
		return reboot
	}
	return powerOff
}

// steps times the boot steps of PID 1 for the console's ready line.
type steps struct {
	last  time.Time
	start time.Time
	parts []string
}

func newSteps() *steps { now := time.Now(); return &steps{last: now, start: now} }

func (s *steps) done(name string) {
	now := time.Now()
	s.parts = append(s.parts, fmt.Sprintf("%s %s", name, now.Sub(s.last).Round(100*time.Microsecond)))
	s.last = now
}

// doneSplit ends a step of which part (the first name's share) is known:
// the rest is the second name's.
func (s *steps) doneSplit(name string, part time.Duration, rest string) {
	now := time.Now()
	s.parts = append(s.parts, fmt.Sprintf("%s %s", name, part.Round(100*time.Microsecond)),
		fmt.Sprintf("%s %s", rest, (now.Sub(s.last)-part).Round(100*time.Microsecond)))
	s.last = now
}

// doneTogether ends a step made of parts that ran at the same time, with
// each part's own time: "data disk + network 90ms (data disk 45ms,
// network 88ms)".
func (s *steps) doneTogether(names []string, took []time.Duration) {
	now := time.Now()
	var each []string
	for i, n := range names {
		each = append(each, fmt.Sprintf("%s %s", n, took[i].Round(100*time.Microsecond)))
	}
	s.parts = append(s.parts, fmt.Sprintf("%s %s (%s)", strings.Join(names, " + "), now.Sub(s.last).Round(100*time.Microsecond), strings.Join(each, ", ")))
	s.last = now
}

func (s *steps) String() string {
	return fmt.Sprintf("init %s: %s", s.last.Sub(s.start).Round(100*time.Microsecond), strings.Join(s.parts, ", "))
}

// closeWithin closes c, giving up after d (the power-off must not hang on
// a network that does not close).
func closeWithin(c io.Closer, d time.Duration, say func(string, ...any)) {
	done := make(chan struct{})
	go func() {
		c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		say("the network did not close within %s; going on", d)
	}
}

// halt syncs and powers off or reboots. If the kernel refuses, PID 1 exits,
// which makes the kernel panic (and, with panic=-1, reboot): it never hangs.
func halt(console io.Writer, action haltAction) {
	unix.Sync()
	cmd, what := unix.LINUX_REBOOT_CMD_POWER_OFF, "powering off"
	switch {
	case action == reboot:
		cmd, what = unix.LINUX_REBOOT_CMD_RESTART, "rebooting"
	case poweroffByReset.Load():
		cmd, what = unix.LINUX_REBOOT_CMD_RESTART, "powering off (by a reset, nymote.poweroff=reset)"
	}
	fmt.Fprintf(console, "nymote: %s at %s\n", what, uptime())
	err := unix.Reboot(cmd)
	fmt.Fprintf(console, "nymote: reboot(2): %v; exiting\n", err)
	os.Exit(1)
}

// loadModules loads the image's kernel modules and those named on the
// command line, with their dependencies (kmodule reads modules.dep).
func loadModules(cfg bootConfig, say func(string, ...any)) {
	mods := cfg.modules
	if b, err := os.ReadFile(modulesFile); err == nil {
		mods = append(strings.Fields(string(b)), mods...)
	}
	for _, m := range mods {
		// ENODEV: the module's hardware is not there (an image for
		// Xen carries xen-netfront and virtio-net, and boots under
		// Xen or QEMU): not worth a line on the console.
		if err := kmodule.Probe(m, ""); err != nil && !errors.Is(err, unix.ENODEV) {
			say("loading kernel module %s: %v", m, err)
		}
	}
}

// waitEntropy waits until the kernel's random pool is initialised, so that
// Go's crypto/rand (getrandom) does not block later at an awkward moment.
// With virtio-rng, random.trust_cpu or a bootloader seed (rng-seed in the
// device tree) it is ready at once. Otherwise a blocking getrandom makes
// the kernel gather jitter entropy (Linux 5.18 and later), which a
// non-blocking poll would not; the boot timeline shows the wait as its
// "entropy" step.
func waitEntropy(say func(string, ...any)) time.Duration {
	buf := make([]byte, 1)
	if _, err := unix.Getrandom(buf, unix.GRND_NONBLOCK); err != unix.EAGAIN {
		return 0
	}
	start := time.Now()
	say("waiting for the kernel's entropy pool (give the VM a virtio-rng device, or the board a seed)")
	done := make(chan struct{})
	go func() {
		for {
			if _, err := unix.Getrandom(buf, 0); err != unix.EINTR {
				break
			}
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		say("entropy pool still not ready after 30s; going on")
	}
	return time.Since(start)
}

// setClock sets the system clock from the RTC (the kernel does not when
// built without RTC_HCTOSYS).
func setClock(log *slog.Logger) {
	f, err := os.Open("/dev/rtc0")
	if err != nil {
		log.Warn("no RTC: the clock starts at the epoch", "err", err)
		return
	}
	defer f.Close()
	rt, err := unix.IoctlGetRTCTime(int(f.Fd()))
	if err != nil {
		log.Warn("reading the RTC", "err", err)
		return
	}
	t := time.Date(int(rt.Year)+1900, time.Month(rt.Mon+1), int(rt.Mday), int(rt.Hour), int(rt.Min), int(rt.Sec), 0, time.UTC)
	if d := time.Since(t); d > -2*time.Second && d < 2*time.Second {
		return
	}
	tv := unix.NsecToTimeval(t.UnixNano())
	if err := unix.Settimeofday(&tv); err != nil {
		log.Warn("setting the clock from the RTC", "err", err)
	}
}

// mountData mounts the data disk on /data (or a tmpfs for an ephemeral
// appliance) and returns how to unmount it.
func mountData(cfg bootConfig, say func(string, ...any)) (func(), error) {
	dev, found := findDataDisk(cfg.data, 3*time.Second)
	if !found && cfg.ephemeral {
		say("no data disk at %s: serving from memory (ephemeral image); data is lost at power-off", dev)
		if _, err := mount.Mount("tmpfs", dataMount, "tmpfs", "mode=0700", 0); err != nil {
			return nil, fmt.Errorf("mounting a tmpfs on %s: %w", dataMount, err)
		}
		return func() {}, nil
	}
	if !found && exists(dev) {
		return nil, fmt.Errorf("%w: %s is the image's code disk (attach a data disk made with: nymote disk create)", ErrNoDataDisk, dev)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s does not exist (attach one made with: nymote disk create)", ErrNoDataDisk, dev)
	}
	mp, err := mount.Mount(dev, dataMount, "ext4", "", unix.MS_NOATIME)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot mount %s as ext4 (is it a data disk made with nymote disk create?): %v", ErrNoDataDisk, dev, err)
	}
	return func() {
		unix.Sync()
		for i := 0; i < 10; i++ {
			if err = mp.Unmount(0); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Still busy: remount read-only so that the journal is clean.
		if rerr := unix.Mount("", dataMount, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); rerr != nil {
			say("unmounting %s: %v; remounting read-only: %v", dataMount, err, rerr)
		}
	}, nil
}

// dataWritable says whether /data is mounted read-write (ext4 remounts
// read-only on errors).
func dataWritable() error {
	var st unix.Statfs_t
	if err := unix.Statfs(dataMount, &st); err != nil {
		return fmt.Errorf("%s: %w", dataMount, err)
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		return fmt.Errorf("%s is mounted read-only", dataMount)
	}
	return nil
}

// waitFor waits up to d for path to exist.
func waitFor(path string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openNetwork brings up the appliance's network and returns the address
// to listen on.
func openNetwork(ctx context.Context, cfg bootConfig, log *slog.Logger) (Network, netip.Addr, error) {
	if !waitFor(filepath.Join("/sys/class/net", cfg.nic), 3*time.Second) {
		return nil, netip.Addr{}, fmt.Errorf("no network interface %s", cfg.nic)
	}
	if cfg.net == "kernel" {
		ip := cfg.ip
		if !ip.IsValid() {
			// No DHCP client in this mode: QEMU's user network's
			// default guest address.
			ip = netip.MustParsePrefix("10.0.2.15/24")
		}
		if err := configureKernelNIC(cfg.nic, ip); err != nil {
			return nil, netip.Addr{}, err
		}
		return hostNetwork{}, ip.Addr(), nil
	}
	hostname, _ := os.Hostname()
	nw, err := openNetstack(ctx, netstackConfig{link: "packet:" + cfg.nic, ip: cfg.ip, gw: cfg.gw, dns: cfg.dns, hostname: hostname}, log)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	if a, ok := nw.(interface {
		WaitIPv4(context.Context) (netip.Prefix, error)
	}); ok {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		p, err := a.WaitIPv4(wctx)
		if err != nil {
			nw.Close()
			return nil, netip.Addr{}, fmt.Errorf("no IPv4 address (DHCP): %w", err)
		}
		return nw, p.Addr(), nil
	}
	return nw, netip.IPv4Unspecified(), nil
}

// configureKernelNIC gives the guest kernel's own stack an address on nic
// and brings nic and lo up (the nymote.net=kernel test path).
func configureKernelNIC(nic string, ip netip.Prefix) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	up := func(name string) error {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("%s: get flags: %w", name, err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("%s: up: %w", name, err)
		}
		return nil
	}
	set := func(req uint, a netip.Addr) error {
		ifr, err := unix.NewIfreq(nic)
		if err != nil {
			return err
		}
		if err := ifr.SetInet4Addr(a.AsSlice()); err != nil {
			return err
		}
		return unix.IoctlIfreq(fd, req, ifr)
	}
	if err := set(unix.SIOCSIFADDR, ip.Addr()); err != nil {
		return fmt.Errorf("%s: address %s: %w", nic, ip, err)
	}
	mask := net.CIDRMask(ip.Bits(), 32)
	if err := set(unix.SIOCSIFNETMASK, netip.AddrFrom4([4]byte(mask))); err != nil {
		return fmt.Errorf("%s: netmask: %w", nic, err)
	}
	if err := up("lo"); err != nil {
		return err
	}
	return up(nic)
}

// watchPowerButton calls press when a power key (KEY_POWER: the ACPI power
// button on x86, gpio-keys on arm64 virt) is pressed on any input device.
func watchPowerButton(press func(dev string), log *slog.Logger) {
	devs, _ := filepath.Glob("/dev/input/event*")
	if len(devs) == 0 {
		log.Warn("no input devices: the power button will not be seen (SIGTERM still powers off)")
	}
	var once sync.Once
	for _, dev := range devs {
		f, err := os.Open(dev)
		if err != nil {
			log.Warn("opening input device", "dev", dev, "err", err)
			continue
		}
		go func() {
			defer f.Close()
			// struct input_event: a timeval, then u16 type, u16 code,
			// s32 value.
			tv := int(sizeofTimeval)
			buf := make([]byte, tv+8)
			for {
				if _, err := io.ReadFull(f, buf); err != nil {
					return
				}
				typ := nativeUint16(buf[tv:])
				code := nativeUint16(buf[tv+2:])
				value := int32(nativeUint32(buf[tv+4:]))
				if typ == evKey && code == keyPower && value == 1 {
					once.Do(func() { press(dev) })
				}
			}
		}()
	}
}
