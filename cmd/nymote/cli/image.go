package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/boards"
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/update"
)

// imageFlags are the flags of build and run that say what to build.
type imageFlags struct {
	board     string
	out       string
	ephemeral bool
	debug     bool
	set       []string
	formats   []string
	sdData    string
	sign      string
}

func (f *imageFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.board, "board", "qemu-x86_64", "board to build for: "+strings.Join(boards.Names(), ", "))
	cmd.Flags().StringVarP(&f.out, "output", "o", "", "output folder (default: the user cache, nymote/images/APP-BOARD)")
	cmd.Flags().BoolVar(&f.ephemeral, "ephemeral", false, "serve from memory when there is no data disk (data is lost at power-off)")
	cmd.Flags().BoolVar(&f.debug, "debug", false, "add u-root's shell (gosh) and core commands in /bbin; the shell runs on the console")
	cmd.Flags().StringArrayVar(&f.set, "set", nil, "KEY=VALUE: a service option, passed as nymote.KEY=VALUE on the kernel command line (repeatable)")
	cmd.Flags().StringVar(&f.sdData, "sd-data", "", "data disk image (nymote disk create) for the SD card's data partition (default: an empty 256 MiB one)")
	cmd.Flags().StringVar(&f.sign, "sign", "", "signing key (nymote key create): sign the image (manifest.sig) and make it trust only this key's updates")
	cmd.Flags().StringSliceVar(&f.formats, "format", nil, "outputs to write, of the board's (qemu, firecracker, sdcard, xen; default: all of the board's)")
}

func (f *imageFlags) options(g *globals, app string) (images.Options, error) {
	out := f.out
	if out == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return images.Options{}, usageError{fmt.Errorf("no user cache folder (%v): give --output", err)}
		}
		out = filepath.Join(cache, "nymote", "images", app+"-"+f.board)
	}
	var cmdline []string
	for _, kv := range f.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return images.Options{}, usageError{fmt.Errorf("--set %q: want KEY=VALUE", kv)}
		}
		cmdline = append(cmdline, "nymote."+k+"="+v)
	}
	if err := checkPeerSet(f.set); err != nil {
		return images.Options{}, usageError{err}
	}
	var outs []boards.Output
	for _, o := range f.formats {
		outs = append(outs, boards.Output(o))
	}
	var signer *update.Signer
	if f.sign != "" {
		var err error
		if signer, err = update.LoadSigner(f.sign); err != nil {
			return images.Options{}, err
		}
	}
	return images.Options{App: app, Board: f.board, OutDir: out, Ephemeral: f.ephemeral, Debug: f.debug,
		Cmdline: cmdline, Outputs: outs, SDData: f.sdData, Progress: g.stdio.Err, Signer: signer}, nil
}

func newBuildCmd(g *globals) *cobra.Command {
	var f imageFlags
	cmd := &cobra.Command{
		Use:   "build APP",
		Short: "Build the appliance image of APP for a board (" + strings.Join(images.Apps(), ", ") + ")",
		Long: `build cross-compiles APP as a static /init, packs it into an initramfs
and writes the board's artefacts (kernel, initramfs, QEMU launch script or
Firecracker configuration) with manifest.json. Two builds of the same
commit are byte-identical. Run it inside the nymote source tree.`,
		Args: exactArgs("APP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options(g, args[0])
			if err != nil {
				return err
			}
			m, err := images.Build(cmd.Context(), opts)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Built %s for %s in %s:\n", m.App, m.Board, opts.OutDir)
			for _, file := range m.Files {
				fmt.Fprintf(w, "  %-16s %10d  %s\n", file.Name, file.Size, file.SHA256[:16])
			}
			if opts.Signer != nil {
				fmt.Fprintf(w, "Signed by key %s (%s); the image trusts its updates only\n", update.Fingerprint(opts.Signer.Public()), update.SignatureFile)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newRunCmd(g *globals) *cobra.Command {
	var f imageFlags
	var disk, kvm, guestNet string
	var mem, offset int
	var noBuild, slots bool
	var testBound time.Duration
	var updateHost, vmm, vmConfig string
	cmd := &cobra.Command{
		Use:   "run APP",
		Short: "Build APP's appliance and boot it under QEMU with a data disk, ports forwarded to localhost",
		Long: `run builds the image (unless --no-build), boots it under QEMU (with KVM when
a probe boot works, TCG otherwise) with the data disk attached, forwards the
service's ports to 127.0.0.1 (port + 1000 for ports under 1024: IMAP on 1143,
SMTP on 1025, submission on 1587, IMAPS on 1993, submissions on 1465) and
streams the console.
Ctrl-C presses the appliance's power button: it stops cleanly and powers off.
With --vmm firecracker or xl it boots the board's Firecracker or Xen image
(firecracker-x86_64, xen-pvh-x86_64) with firecracker or xl instead, from
the image's own configuration (or --vm-config), the data disk at --disk;
the appliance is then on its own address (the configuration's TAP device or
vif), not behind forwarded ports.`,
		Args: exactArgs("APP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			opts, err := f.options(g, args[0])
			if err != nil {
				return err
			}
			b, err := boards.Get(f.board)
			if err != nil {
				return usageError{err}
			}
			if vmm != "qemu" {
				return runVMM(ctx, g, cmd, opts, b, vmRun{vmm: vmm, config: vmConfig, disk: disk, noBuild: noBuild, slots: slots, bound: testBound})
			}
			if vmConfig != "" {
				return usageError{errors.New("--vm-config is for --vmm firecracker or xl")}
			}
			if b.QEMU == nil {
				return usageError{fmt.Errorf("board %s does not boot under QEMU", b.Name)}
			}
			if len(opts.Outputs) == 0 {
				opts.Outputs = launch.QEMUOutputs(b) // only what QEMU boots
			}
			if err := launch.CheckKVMMode(kvm); err != nil {
				return usageError{fmt.Errorf("--kvm %q: want auto, on or off", kvm)}
			}
			if disk == "" && !f.ephemeral {
				return usageError{errors.New("--disk is required (create one with: nymote disk create --data DIR -o data.img), or build with --ephemeral")}
			}
			if disk != "" {
				if _, err := os.Stat(disk); err != nil {
					return fmt.Errorf("--disk: %w (create one with: nymote disk create --data DIR -o %s)", err, disk)
				}
			}
			var m *images.Manifest
			if noBuild {
				m, err = images.ReadManifest(opts.OutDir)
			} else {
				m, err = images.Build(ctx, opts)
			}
			if err != nil {
				return err
			}
			if slots {
				return runSlots(ctx, g, cmd, b, opts.OutDir, m, disk, kvm, slotRun{mem: mem, offset: offset, guestNet: guestNet, bound: testBound, updateHost: updateHost})
			}
			// The board resolved above is the one the launcher uses.
			img, err := m.QEMUImage(opts.OutDir, b)
			if err != nil {
				return err
			}
			useKVM, err := chooseKVM(ctx, g, img, kvm)
			if err != nil {
				return err
			}
			vm, err := startRun(ctx, g, cmd, m, img, b, disk, "", useKVM, slotRun{mem: mem, offset: offset, guestNet: guestNet})
			if err != nil {
				return err
			}
			return waitRun(ctx, g, b.QEMU.NoPowerButton, vm)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&disk, "disk", "", "data disk image (from nymote disk create)")
	cmd.Flags().StringVar(&kvm, "kvm", "auto", "use KVM: auto (when a probe boot works), on or off")
	cmd.Flags().IntVarP(&mem, "memory", "m", launch.DefaultMemoryMiB, "guest memory in MiB")
	cmd.Flags().IntVar(&offset, "port-offset", app.HostPortOffset, "added to the service's ports under 1024 for the forwarded host ports")
	cmd.Flags().BoolVar(&noBuild, "no-build", false, "boot the image already in the output folder")
	cmd.Flags().BoolVar(&slots, "slots", false, "keep two image slots beside the data disk (DISK.slots): a new image boots once for a test and is kept only if the appliance reports good; serves updates (nymote update)")
	cmd.Flags().StringVar(&updateHost, "update-port", fmt.Sprintf("127.0.0.1:%d", app.UpdatePort.Port), "with --slots: the host address the appliance's update port is forwarded to")
	cmd.Flags().DurationVar(&testBound, "test-boot-timeout", launch.DefaultTestBootBound, "with --slots: how long a new image's test boot may take to report good")
	cmd.Flags().StringVar(&vmm, "vmm", "qemu", "what boots the image: qemu, firecracker (firecracker on $PATH) or xl (Xen's toolstack, in dom0)")
	cmd.Flags().StringVar(&vmConfig, "vm-config", "", "with --vmm firecracker or xl: the configuration to boot with (default: the image's firecracker.json or xl.cfg); its kernel, initramfs, command line and data disk are the image's and --disk")
	defaultNet := "kernel"
	if app.NetstackBuiltIn {
		defaultNet = "netstack"
	}
	cmd.Flags().StringVar(&guestNet, "guest-net", defaultNet, "the appliance's network: netstack, or kernel (the guest kernel's own stack, for tests)")
	cmd.Flags().MarkHidden("guest-net")
	return cmd
}

// mailDomain is the mail domain a kernel command line gives the mail app
// (the first of nymote.domain=D[,D...]), or the app's default, localhost.
func mailDomain(cmdline string) string {
	d := "localhost"
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "nymote.domain="); ok {
			if first, _, _ := strings.Cut(v, ","); first != "" {
				d = strings.ToLower(first)
			}
		}
	}
	return d
}

// slotRun are nymote run's VM settings.
type slotRun struct {
	mem, offset int
	guestNet    string
	bound       time.Duration
	// updateHost is where the update port is forwarded to.
	updateHost string
	// testBoot marks a new image's test boot (launch.QEMU.TestBoot).
	testBoot bool
}

// chooseKVM decides KVM or TCG for img (see launch.UseKVM).
func chooseKVM(ctx context.Context, g *globals, img launch.Image, kvm string) (bool, error) {
	if kvm == launch.KVMAuto {
		fmt.Fprintln(g.stdio.Err, "run: probing KVM (a boot without disk, at most 10s; --kvm off skips it)")
	}
	return launch.UseKVM(ctx, img, kvm, 10*time.Second)
}

// startRun boots img with the data disk (and an update disk, if not ""),
// the app's ports forwarded (and the update port, with an update disk).
func startRun(ctx context.Context, g *globals, cmd *cobra.Command, m *images.Manifest, img launch.Image, b boards.Board, disk, updateDisk string, useKVM bool, r slotRun) (*launch.VM, error) {
	accel := "TCG (no working KVM: slower)"
	if useKVM {
		accel = "KVM"
	}
	var fw []launch.Forward
	for _, p := range m.Ports {
		host := fmt.Sprintf("127.0.0.1:%d", app.HostPort(p.Port, r.offset))
		fw = append(fw, launch.Forward{Host: host, Guest: p.Port})
		fmt.Fprintf(g.stdio.Err, "run: %s on %s\n", p.Name, host)
	}
	if m.App == app.Mail.Name {
		d := mailDomain(m.Cmdline)
		fmt.Fprintf(g.stdio.Err, "run: mail addresses are USER@%s (user demo is demo@%s; the appliance console lists the disk's users)\n", d, d)
	}
	if updateDisk != "" {
		fw = append(fw, launch.Forward{Host: r.updateHost, Guest: app.UpdatePort.Port})
		fmt.Fprintf(g.stdio.Err, "run: updates (nymote update --to %s) on %s\n", r.updateHost, r.updateHost)
	}
	fmt.Fprintf(g.stdio.Err, "run: booting %s on %s under %s; Ctrl-C powers it off\n", m.App, m.Board, accel)
	return launch.StartQEMU(context.WithoutCancel(ctx), img, launch.QEMU{
		Disk: disk, UpdateDisk: updateDisk, TestBoot: r.testBoot, KVM: useKVM, MemoryMiB: r.mem, Forwards: fw, GuestNet: r.guestNet,
	}, cmd.OutOrStdout())
}

// waitRun waits for Ctrl-C (then powers the VM off, or with
// noPowerButton cuts its power) or for the VM's exit.
func waitRun(ctx context.Context, g *globals, noPowerButton bool, vm runVM) error {
	select {
	case <-ctx.Done():
		if noPowerButton {
			// Acknowledged writes are synced and the journal
			// keeps the file system consistent.
			fmt.Fprintln(g.stdio.Err, "run: the board has no power button QEMU can press: cutting the power")
			vm.Kill()
			return nil
		}
		fmt.Fprintln(g.stdio.Err, "run: pressing the power button; waiting for the appliance to stop cleanly")
		pctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if err := vm.PowerOff(pctx); err != nil {
			return err
		}
		fmt.Fprintln(g.stdio.Err, "run: powered off")
		return nil
	case <-vm.Done():
		if err := vm.Wait(context.Background()); err != nil {
			return fmt.Errorf("the VM: %w", err)
		}
		return nil
	}
}

// runSlots is nymote run --slots under QEMU: the image in dir goes into
// the data disk's slots unless it is the one run last installed there
// (launch.DiskSlots), then the appliance boots from its slots (slotLoop).
func runSlots(ctx context.Context, g *globals, cmd *cobra.Command, b boards.Board, dir string, m *images.Manifest, disk, kvm string, r slotRun) error {
	if disk == "" {
		return usageError{errors.New("--slots keeps the slots beside the data disk: give --disk")}
	}
	s, err := launch.DiskSlots(disk, dir, runSay(g))
	if err != nil {
		return err
	}
	var useKVM *bool
	return slotLoop(ctx, g, s, r.bound, b.QEMU.NoPowerButton, func(bt update.Boot) (runVM, error) {
		sm, err := images.ReadManifest(bt.Dir)
		if err != nil {
			return nil, err
		}
		img, err := sm.QEMUImage(bt.Dir, b)
		if err != nil {
			return nil, err
		}
		if useKVM == nil {
			k, err := chooseKVM(ctx, g, img, kvm)
			if err != nil {
				return nil, err
			}
			useKVM = &k
		}
		rb := r
		rb.testBoot = bt.Test
		return startRun(ctx, g, cmd, sm, img, b, disk, s.UpdateDisk(), *useKVM, rb)
	})
}

// runSay reports on nymote run's standard error.
func runSay(g *globals) func(string, ...any) {
	return func(format string, args ...any) { fmt.Fprintf(g.stdio.Err, "run: "+format+"\n", args...) }
}

// runVM is a VM nymote run boots: QEMU, Firecracker or an xl domain (its
// console).
type runVM interface {
	launch.Booted
	Done() <-chan struct{}
	Wait(context.Context) error
	PowerOff(context.Context) error
	Lines() []launch.Line
}

// slotLoop boots the appliance from the slots s with boot, again after
// it reboots into a received update: an update left on the update disk
// is installed first and the slot chosen by the try-once rule
// (launch.NextBoot), a new image is committed when the appliance reports
// good within bound (launch.WatchTestBoot), and a test boot that does not
// report good is followed by a boot of the committed image. Every VM
// nymote run boots goes through it.
func slotLoop(ctx context.Context, g *globals, s *update.Slots, bound time.Duration, noPowerButton bool, boot func(update.Boot) (runVM, error)) error {
	say := runSay(g)
	for {
		bt, err := launch.NextBoot(s, say)
		if err != nil {
			return err
		}
		if bt.Test {
			say("the new image is kept if the appliance reports good within %s", bound)
		}
		vm, err := boot(bt)
		if err != nil {
			return err
		}
		watched := make(chan struct{})
		if bt.Test {
			go func() {
				defer close(watched)
				if err := launch.WatchTestBoot(context.WithoutCancel(ctx), vm, s, bt, bound); err != nil {
					say("%v", err)
				} else {
					say("slot %s reported good: committed", bt.Slot)
				}
			}()
		} else {
			close(watched)
		}
		werr := waitRun(ctx, g, noPowerButton, vm)
		<-watched // the VM has exited: the watcher has committed or given up
		if ctx.Err() != nil {
			return werr
		}
		st, err := s.State()
		if err != nil {
			return err
		}
		// A test boot that ended without a commit (killed at its bound,
		// crashed, powered off) is followed by the committed image.
		testFailed := bt.Test && st.Next == bt.Slot
		switch {
		case testFailed:
		case werr != nil:
			return werr
		case !launch.UpdateReboot(vm):
			return nil
		}
		say("booting again")
	}
}

// vmRun are nymote run's settings for a VMM other than QEMU.
type vmRun struct {
	vmm, config, disk string
	noBuild, slots    bool
	bound             time.Duration
}

// vmmOutputs are the board outputs the VMMs other than QEMU boot.
var vmmOutputs = map[string]boards.Output{"firecracker": boards.OutputFirecracker, "xl": boards.OutputXen}

// runVMM is nymote run --vmm firecracker|xl: the board's Firecracker or
// Xen image booted by firecracker or xl with the data disk, from its slots
// with --slots (the same slot loop as under QEMU: launch.DiskSlots,
// slotLoop), each boot's configuration made for the slot
// (launch.FirecrackerSlotConfig, launch.XLSlotConfig) and written beside
// the slots (a temporary folder without slots).
func runVMM(ctx context.Context, g *globals, cmd *cobra.Command, opts images.Options, b boards.Board, r vmRun) error {
	out, ok := vmmOutputs[r.vmm]
	if !ok {
		return usageError{fmt.Errorf("--vmm %q: want qemu, firecracker or xl", r.vmm)}
	}
	if !slices.Contains(b.Outputs, out) {
		return usageError{fmt.Errorf("--vmm %s: board %s has no %s output", r.vmm, b.Name, out)}
	}
	if r.disk == "" {
		return usageError{fmt.Errorf("--vmm %s: give --disk (create one with: nymote disk create --data DIR -o data.img)", r.vmm)}
	}
	disk, err := filepath.Abs(r.disk)
	if err != nil {
		return err
	}
	if _, err := os.Stat(disk); err != nil {
		return fmt.Errorf("--disk: %w (create one with: nymote disk create --data DIR -o %s)", err, r.disk)
	}
	var template []byte
	if r.config != "" {
		if template, err = os.ReadFile(r.config); err != nil {
			return fmt.Errorf("--vm-config: %w", err)
		}
	}
	if len(opts.Outputs) == 0 {
		opts.Outputs = []boards.Output{out}
	}
	if r.noBuild {
		_, err = images.ReadManifest(opts.OutDir)
	} else {
		_, err = images.Build(ctx, opts)
	}
	if err != nil {
		return err
	}
	say := runSay(g)
	// boot boots bt (a slot, or the image folder) with the configuration
	// written in dir.
	boot := func(bt update.Boot, dir, updateDisk string) (runVM, error) {
		say("booting %s under %s; the appliance is on its own address (the configuration's network); Ctrl-C powers it off", bt.Dir, r.vmm)
		if updateDisk != "" {
			say("updates (nymote update --to ADDRESS) on the appliance's address, port %d", app.UpdatePort.Port)
		}
		switch r.vmm {
		case "firecracker":
			cfg, err := launch.FirecrackerSlotConfig(template, bt, disk, updateDisk)
			if err != nil {
				return nil, err
			}
			path := filepath.Join(dir, launch.SlotFirecrackerConfig)
			if err := os.WriteFile(path, cfg, 0o644); err != nil {
				return nil, err
			}
			fc, err := launch.StartFirecracker("", path, cmd.OutOrStdout())
			if err != nil {
				return nil, err
			}
			return fc, nil
		}
		cfg, err := launch.XLSlotConfig(string(template), bt, disk, updateDisk)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, launch.SlotXLConfig)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		x, err := launch.CreateXL(context.WithoutCancel(ctx), path, nil)
		if err != nil {
			return nil, err
		}
		c, err := x.Console(cmd.OutOrStdout())
		if err != nil {
			x.Destroy(context.Background())
			return nil, err
		}
		return c, nil
	}
	if !r.slots {
		tmp, err := os.MkdirTemp("", "nymote-run-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		vm, err := boot(update.Boot{Dir: opts.OutDir}, tmp, "")
		if err != nil {
			return err
		}
		return waitRun(ctx, g, false, vm)
	}
	s, err := launch.DiskSlots(disk, opts.OutDir, say)
	if err != nil {
		return err
	}
	return slotLoop(ctx, g, s, r.bound, false, func(bt update.Boot) (runVM, error) {
		return boot(bt, s.Dir, s.UpdateDisk())
	})
}

// checkPeerSet checks the peer options among --set's (see
// replica.ParseBoot) as far as a build can: the peers' names and URLs and
// this node's name; the token and CA files are on the data disk, read at
// boot. Secrets have no place on the kernel command line: a token is a
// file's name there, never a token.
func checkPeerSet(set []string) error {
	vals := map[string]string{}
	for _, kv := range set {
		k, v, _ := strings.Cut(kv, "=")
		vals[k] = v
	}
	_, err := replica.ParseBoot(func(k string) string {
		if k == replica.BootToken || k == replica.BootCA {
			return "" // on the data disk
		}
		return vals[k]
	}, func(k string) string { return "--set " + k }, "")
	if err == nil && vals[replica.BootPeer] == "" && (vals[replica.BootToken] != "" || vals[replica.BootCA] != "") {
		err = fmt.Errorf("--set %s and --set %s need --set %s=NAME=URL", replica.BootToken, replica.BootCA, replica.BootPeer)
	}
	return err
}
