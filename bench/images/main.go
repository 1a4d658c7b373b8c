// Command images benchmarks appliance images: it builds each app for a
// board, boots it under QEMU several times and reports the boot timeline
// (QEMU start, /init started, listener up, first greeting received over the
// forwarded port), the size of every artefact, and the smallest memory at
// which the appliance boots and serves. It prints Markdown for
// bench/README.md, with the time /init waited for the kernel's entropy pool
// shown apart, and the mail/hello ratio when both are measured.
//
//	go run ./bench/images -apps hello,mail -runs 3
//	go run ./bench/images -board cubieboard -apps hello,mail -mem-search ""
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/boards"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/flash"
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/launch"
)

// cpus is the -cpus flag.
var cpus int

// prebuilt is the -prebuilt flag.
var prebuilt string

func main() {
	apps := flag.String("apps", "hello", "comma-separated apps to measure")
	board := flag.String("board", "qemu-x86_64", "board")
	runs := flag.Int("runs", 3, "boots per app")
	kvm := flag.Bool("kvm", false, "boot under KVM instead of TCG")
	mem := flag.Int("m", 256, "guest memory in MiB for the timeline")
	flag.IntVar(&cpus, "cpus", 1, "vCPUs of the guest")
	memSearch := flag.String("mem-search", "64,80,96,128", "memory sizes (MiB) to try for the smallest that serves; empty skips")
	guestNet := flag.String("guest-net", map[bool]string{true: "netstack", false: "kernel"}[app.NetstackBuiltIn], "the appliance's network (kernel or netstack)")
	dhcp := flag.Bool("dhcp", false, "with the netstack, configure by DHCP instead of QEMU's fixed user-network addresses")
	set := flag.String("set", "", "comma-separated KEY=VALUE service options (nymote.KEY=VALUE)")
	flag.BoolVar(&sdBoot, "sd", false, "boot the board's SD card image through U-Boot (cubieboard, QEMU 10) instead of the kernel directly")
	flag.StringVar(&prebuilt, "prebuilt", "", "folder with APP/ (from nymote build) and APP.img (from nymote disk create) for each app: boot those instead of building (for a machine without Go)")
	flag.Parse()
	netArgs := []string{"nymote.net=" + *guestNet}
	if *guestNet == "netstack" && !*dhcp {
		netArgs = append(netArgs, "nymote.ip=10.0.2.15/24", "nymote.gw=10.0.2.2", "nymote.dns=10.0.2.3")
	}
	if err := run(context.Background(), os.Stdout, strings.Split(*apps, ","), *board, *runs, *kvm, *mem, *memSearch, netArgs, *set); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// sdBoot boots SD card images (flag -sd).
var sdBoot bool

// boot is one measured boot, as times since QEMU was started.
type boot struct {
	// greeting is on the host's clock, since QEMU was started.
	greeting time.Duration
	// exec is the guest's uptime when the kernel ran /init (from its
	// log, as the ready line reports it); kernel when /init's main started (after the
	// Go runtime's start and the package inits); init the time main took
	// to the listeners (the guest's clock: the console lines reach the
	// host in bursts under TCG, so their arrival says little).
	exec, kernel, init time.Duration
	// entropy is /init's wait for the kernel's entropy pool (guest
	// clock, part of init).
	entropy time.Duration
	// uboot is U-Boot's part of an SD card boot (SPL start to kernel
	// start, host clock).
	uboot time.Duration
	ready string
}

func run(ctx context.Context, w io.Writer, apps []string, board string, runs int, kvm bool, mem int, memSearch string, netArgs []string, set string) error {
	tmp, err := os.MkdirTemp("", "nymote-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var extra []string
	for _, kv := range strings.Split(set, ",") {
		if kv != "" {
			extra = append(extra, "nymote."+kv)
		}
	}
	type result struct {
		app    string
		m      *images.Manifest
		boots  []boot
		minMem int
	}
	var results []result
	for _, app := range apps {
		dir := filepath.Join(tmp, app)
		disk := filepath.Join(tmp, app+".img")
		var m *images.Manifest
		if prebuilt != "" {
			dir = filepath.Join(prebuilt, app)
			if m, err = images.ReadManifest(dir); err != nil {
				return err
			}
			// QEMU writes to the disk: boot a copy.
			b, err := os.ReadFile(filepath.Join(prebuilt, app+".img"))
			if err != nil {
				return err
			}
			if err := os.WriteFile(disk, b, 0o600); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(os.Stderr, "bench: building %s for %s\n", app, board)
			bd, err := boards.Get(board)
			if err != nil {
				return err
			}
			opts := images.Options{App: app, Board: board, OutDir: dir, Cmdline: extra, Outputs: launch.QEMUOutputs(bd)}
			if sdBoot {
				// The card boots with the command line it carries.
				opts.Outputs = []boards.Output{boards.OutputSDCard}
				opts.Cmdline = append(opts.Cmdline, netArgs...)
				opts.SDDataSize = 64 << 20
			}
			m, err = images.Build(ctx, opts)
			if err != nil {
				return err
			}
			empty := filepath.Join(tmp, "data-"+app)
			if err := os.MkdirAll(empty, 0o700); err != nil {
				return err
			}
			if err := datadisk.Create(ctx, empty, disk, 256<<20); err != nil {
				return err
			}
		}
		r := result{app: app, m: m}
		for i := 0; i < runs; i++ {
			b, err := measure(ctx, m, dir, disk, kvm, mem, netArgs)
			if err != nil {
				return fmt.Errorf("%s boot %d: %w", app, i+1, err)
			}
			fmt.Fprintf(os.Stderr, "bench: %s boot %d: greeting %s after QEMU start; %s\n", app, i+1, b.greeting, b.ready)
			r.boots = append(r.boots, b)
		}
		if bd, err := boards.Get(board); err == nil && bd.QEMU != nil && bd.QEMU.FixedMemoryMiB != 0 {
			memSearch = "" // the machine takes one size only
		}
		if memSearch != "" && !sdBoot {
			for _, s := range strings.Split(memSearch, ",") {
				var mib int
				fmt.Sscan(s, &mib)
				_, err := measure(ctx, m, dir, disk, kvm, mib, netArgs)
				fmt.Fprintf(os.Stderr, "bench: %s with -m %d: %v\n", app, mib, errOK(err))
				if err == nil {
					r.minMem = mib
					break
				}
			}
		}
		results = append(results, r)
	}

	accel := "TCG"
	if kvm {
		accel = "KVM"
	}
	if bd, err := boards.Get(board); err == nil && bd.QEMU != nil && bd.QEMU.FixedMemoryMiB != 0 {
		mem = bd.QEMU.FixedMemoryMiB // what QEMUCommand gives the machine
	}
	fmt.Fprintf(w, "### Boot timeline (%s, %s, -m %d, median of %d boots, %s)\n\n", board, accel, mem, runs, strings.Join(netArgs, " "))
	if sdBoot {
		fmt.Fprintln(w, "SD card boot through U-Boot; U-Boot column: SPL start → kernel start (host clock).")
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "/init exec: when the kernel ran /init (its log record \"Run /init as init process\"); main: when /init's main began, after the Go runtime's start and the package inits. Guest clock.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| app | QEMU start → first greeting (host clock) | U-Boot | kernel start → /init exec | /init exec → main | main → listening | /init exec → listening | of which entropy wait |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	type medians struct{ greeting, init time.Duration }
	meds := map[string]medians{}
	for _, r := range results {
		gr := median(r.boots, func(b boot) time.Duration { return b.greeting })
		ex := median(r.boots, func(b boot) time.Duration { return b.exec })
		rt := median(r.boots, func(b boot) time.Duration { return b.kernel - b.exec })
		in := median(r.boots, func(b boot) time.Duration { return b.init })
		all := median(r.boots, func(b boot) time.Duration { return b.kernel + b.init - b.exec })
		en := median(r.boots, func(b boot) time.Duration { return b.entropy })
		ub := median(r.boots, func(b boot) time.Duration { return b.uboot })
		meds[r.app] = medians{gr, all}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.app, ms(gr), ms(ub), ms(ex), ms(rt), ms(in), ms(all), msFrac(en))
	}
	fmt.Fprintln(w)
	if h, ok := meds["hello"]; ok && h.greeting > 0 && h.init > 0 {
		if m, ok := meds["mail"]; ok {
			fmt.Fprintf(w, "mail/hello: QEMU start → greeting %.2f×, /init exec → listening %.2f×\n\n",
				float64(m.greeting)/float64(h.greeting), float64(m.init)/float64(h.init))
		}
	}
	for _, r := range results {
		fmt.Fprintf(w, "%s, last boot: `%s`\n\n", r.app, r.boots[len(r.boots)-1].ready)
	}
	fmt.Fprintf(w, "### Sizes (%s)\n\n", board)
	fmt.Fprintln(w, "| app | /init | initramfs (cpio) | initramfs (compressed) | kernel | smallest -m that serves |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		ird, ok := r.m.File(images.InitrdFile)
		if !ok {
			continue // an SD card image only
		}
		k, _ := r.m.File(images.KernelFile)
		minMem := "not measured"
		if r.minMem > 0 {
			minMem = fmt.Sprintf("%d MiB", r.minMem)
		} else if memSearch != "" {
			minMem = "none of " + memSearch
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.app, mib(r.m.InitSize), mib(r.m.InitramfsSize), mib(ird.Size), mib(k.Size), minMem)
	}
	return nil
}

func errOK(err error) string {
	if err == nil {
		return "serves"
	}
	return err.Error()
}

// measure boots the image once and times it; the first port's greeting is
// read by a client that keeps dialling from the moment QEMU starts.
func measure(ctx context.Context, m *images.Manifest, dir, disk string, kvm bool, mem int, netArgs []string) (boot, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return boot{}, err
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var vm *launch.VM
	if sdBoot {
		vm, err = startSD(ctx, dir, addr, m.Ports[0].Port)
	} else {
		var img launch.Image
		if img, err = qemuImage(m, dir); err != nil {
			return boot{}, err
		}
		vm, err = launch.StartQEMU(ctx, img, launch.QEMU{
			Disk: disk, KVM: kvm, MemoryMiB: mem, CPUs: cpus,
			Forwards:     []launch.Forward{{Host: addr, Guest: m.Ports[0].Port}},
			ExtraCmdline: netArgs,
		}, nil)
	}
	if err != nil {
		return boot{}, err
	}
	start := time.Now()
	defer vm.Kill()
	greeted := make(chan time.Duration, 1)
	go func() {
		for ctx.Err() == nil {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.SetDeadline(time.Now().Add(250 * time.Millisecond))
				line, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if err == nil && line != "" {
					greeted <- time.Since(start)
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var b boot
	li, err := vm.WaitLine(ctx, "listening on")
	if err != nil {
		return b, fmt.Errorf("%w\n%s", err, tail(vm.Console(), 15))
	}
	select {
	case b.greeting = <-greeted:
	case <-ctx.Done():
		return b, fmt.Errorf("no greeting: %w", ctx.Err())
	}
	_ = li
	in, _ := vm.WaitLine(ctx, "init started at ")
	rd, _ := vm.WaitLine(ctx, " ready at ")
	b.ready = strings.TrimPrefix(rd.Text, "nymote: ")
	_, at, _ := strings.Cut(in.Text, "init started at ")
	b.kernel, _ = time.ParseDuration(strings.TrimSpace(at))
	if _, rest, ok := strings.Cut(rd.Text, "(init "); ok {
		d, _, _ := strings.Cut(rest, ":")
		b.init, _ = time.ParseDuration(d)
	}
	if _, rest, ok := strings.Cut(rd.Text, "/init started by the kernel at "); ok {
		b.exec, _ = time.ParseDuration(strings.TrimSuffix(strings.TrimSpace(rest), ")"))
	}
	if _, rest, ok := strings.Cut(rd.Text, " entropy "); ok {
		d, _, _ := strings.Cut(rest, ",")
		b.entropy, _ = time.ParseDuration(d)
	}
	if sdBoot {
		b.uboot = vm.UBootTime()
		vm.Kill() // no power button on the cubieboard
		return b, nil
	}
	if bd, err := boards.Get(m.Board); err == nil && bd.QEMU.NoPowerButton {
		// Nothing to press (cubieboard): cut the power.
		vm.Kill()
		return b, nil
	}
	pctx, pcancel := context.WithTimeout(context.Background(), time.Minute)
	defer pcancel()
	if err := vm.PowerOff(pctx); err != nil {
		return b, fmt.Errorf("%w\n%s", err, tail(vm.Console(), 30))
	}
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l.Text, "nymote: ") && (strings.Contains(l.Text, "did not") || strings.Contains(l.Text, "took more than")) {
			fmt.Fprintf(os.Stderr, "bench: shutdown warning: %s\n", l.Text)
		}
	}
	return b, nil
}

// startSD flashes the build's SD card image onto a fresh card file (with a
// random seed, as nymote flash does), grows it as QEMU wants and boots it.
func startSD(ctx context.Context, dir, addr string, port int) (*launch.VM, error) {
	q, err := launch.FindSDQEMU(ctx)
	if err != nil {
		return nil, err
	}
	card := filepath.Join(dir, "card.img")
	os.Remove(card)
	if err := flash.Write(ctx, filepath.Join(dir, images.SDCardFile), card, flash.Options{}); err != nil {
		return nil, err
	}
	if err := launch.PowerOfTwo(card); err != nil {
		return nil, err
	}
	return launch.StartSDCard(q, launch.SDRun{Card: card, Forwards: []launch.Forward{{Host: addr, Guest: port}}}, nil)
}

// qemuImage returns the image in dir that m describes, as QEMU boots it.
func qemuImage(m *images.Manifest, dir string) (launch.Image, error) {
	b, err := boards.Get(m.Board)
	if err != nil {
		return launch.Image{}, err
	}
	return m.QEMUImage(dir, b)
}

func tail(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

func median(bs []boot, f func(boot) time.Duration) time.Duration {
	var ds []time.Duration
	for _, b := range bs {
		ds = append(ds, f(b))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// msFrac formats a short duration with a tenth of a millisecond.
func msFrac(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
