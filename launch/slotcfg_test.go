package launch

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/internal/slottest"
	"github.com/nymote/nymote/update"
)

// console starts a process whose console prints lines, for
// WatchTestBoot: the appliance's good line, or a crash.
func console(t *testing.T, lines ...string) *VM {
	t.Helper()
	vm, err := StartCommand([]string{"printf", "%s\\n", strings.Join(lines, "\n")}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// TestSlotConfigs boots Firecracker and xl appliances from the slots
// beside their data disk, as the launchers do (DiskSlots, NextBoot,
// WatchTestBoot), through an update that commits and one whose test boot
// fails: each boot's configuration names the kernel, the initramfs and
// the command line of the slot the try-once rule chose, the data disk and
// the update disk.
func TestSlotConfigs(t *testing.T) {
	signer := slottest.Signer(t)
	v1, v2, v3 := slottest.Image(t, "v1", false, signer), slottest.Image(t, "v2", false, signer), slottest.Image(t, "v3", false, signer)
	for _, kind := range []string{"firecracker", "xl"} {
		t.Run(kind, func(t *testing.T) {
			disk := filepath.Join(t.TempDir(), "data.img")
			if err := os.WriteFile(disk, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := DiskSlots(disk, v1, nil)
			if err != nil {
				t.Fatal(err)
			}
			// boot checks the configuration of the next boot and
			// returns the slot it boots.
			boot := func(wantSlot, wantVersion string, wantTest bool) update.Boot {
				t.Helper()
				b, err := NextBoot(s, t.Logf)
				if err != nil {
					t.Fatal(err)
				}
				if b.Slot != wantSlot || b.Test != wantTest {
					t.Fatalf("boot: slot %s (test %v), want %s (test %v)", b.Slot, b.Test, wantSlot, wantTest)
				}
				dir := update.SlotsDir(disk)
				var kernel, initrd, cmdline string
				var disks []string
				switch kind {
				case "firecracker":
					b, err := FirecrackerSlotConfig(nil, b, disk, s.UpdateDisk())
					if err != nil {
						t.Fatal(err)
					}
					var c struct {
						Boot struct {
							Kernel  string `json:"kernel_image_path"`
							Initrd  string `json:"initrd_path"`
							Cmdline string `json:"boot_args"`
						} `json:"boot-source"`
						Drives []struct {
							ID   string `json:"drive_id"`
							Path string `json:"path_on_host"`
						} `json:"drives"`
						Machine struct {
							Mem int `json:"mem_size_mib"`
						} `json:"machine-config"`
						Net []struct {
							Tap string `json:"host_dev_name"`
						} `json:"network-interfaces"`
					}
					if err := json.Unmarshal(b, &c); err != nil {
						t.Fatal(err)
					}
					kernel, initrd, cmdline = c.Boot.Kernel, c.Boot.Initrd, c.Boot.Cmdline
					for _, d := range c.Drives {
						disks = append(disks, d.ID+"="+d.Path)
					}
					if c.Machine.Mem != 128 || len(c.Net) != 1 || c.Net[0].Tap != "nymote0" {
						t.Errorf("the image's other settings are lost: %s", b)
					}
				case "xl":
					src, err := XLSlotConfig("", b, disk, s.UpdateDisk())
					if err != nil {
						t.Fatal(err)
					}
					c, err := ParseXLConfig(src)
					if err != nil {
						t.Fatalf("%v\n%s", err, src)
					}
					kernel, initrd, cmdline, disks = c["kernel"].Atom, c["ramdisk"].Atom, c["extra"].Atom, c["disk"].List
					if c["name"].Atom != "nymote-hello" || c["memory"].Atom != "256" || c["type"].Atom != "pvh" || c["vif"].List[0] != "bridge=xenbr0" || c["on_reboot"].Atom != "destroy" {
						t.Errorf("the image's other settings are lost:\n%s", src)
					}
				}
				if want := filepath.Join(dir, wantSlot, "vmlinux"); kernel != want {
					t.Errorf("kernel %s, want %s", kernel, want)
				}
				if want := filepath.Join(dir, wantSlot, "initrd.cpio.zst"); initrd != want {
					t.Errorf("initramfs %s, want %s", initrd, want)
				}
				for path, want := range map[string]string{kernel: "vmlinux " + wantVersion, initrd: "initramfs " + wantVersion} {
					if got, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(got)) != want {
						t.Errorf("%s: %q (%v), want %q", path, got, err, want)
					}
				}
				want := "panic=-1 quiet nymote.release=" + wantVersion + " " + UpdateDiskCmdline
				if b.Test {
					want += " " + TestBootCmdline
				}
				if cmdline != want {
					t.Errorf("command line %q, want %q", cmdline, want)
				}
				wantDisks := []string{"data=" + disk, "update=" + s.UpdateDisk()}
				if kind == "xl" {
					wantDisks = []string{"format=raw, vdev=xvda, access=rw, target=" + disk, "format=raw, vdev=xvdb, access=rw, target=" + s.UpdateDisk()}
				}
				if strings.Join(disks, "|") != strings.Join(wantDisks, "|") {
					t.Errorf("disks %q, want %q", disks, wantDisks)
				}
				return b
			}
			boot("a", "v1", false)
			boot("a", "v1", false) // booting again changes nothing
			// v2 is received: its test boot reports good and commits.
			slottest.Receive(t, s, v2)
			b := boot("b", "v2", true)
			if err := WatchTestBoot(context.Background(), console(t, "nymote: hello listening on :80", "nymote: hello "+app.GoodMarker+" for 5s"), s, b, time.Minute); err != nil {
				t.Fatal(err)
			}
			boot("b", "v2", false)
			// v3 is received: its service exits at start, the VM
			// ends without the good line.
			slottest.Receive(t, s, v3)
			b = boot("a", "v3", true)
			if err := WatchTestBoot(context.Background(), console(t, "nymote: hello exited: crash"), s, b, time.Minute); !errors.Is(err, ErrNotGood) {
				t.Fatalf("a test boot without the good line: %v, want ErrNotGood", err)
			}
			boot("b", "v2", false)
			st, infos, err := s.Status()
			if err != nil {
				t.Fatal(err)
			}
			if st.Committed != "b" || st.RolledBack == nil || st.RolledBack.Slot != "a" || !strings.HasPrefix(infos[0].Version, "v3 ") || !strings.HasPrefix(infos[1].Version, "v2 ") {
				t.Errorf("status: %+v %+v", st, infos)
			}
			// Starting again with the first image does not undo the
			// update.
			if _, err := DiskSlots(disk, v1, nil); err != nil {
				t.Fatal(err)
			}
			boot("b", "v2", false)
			// Rollback by hand (nymote update rollback --disk).
			if _, err := s.RollbackByHand(); err != nil {
				t.Fatal(err)
			}
			boot("a", "v3", false)
		})
	}
}

// TestXLSlotConfigLibxlu reads a slot boot's xl configuration with Xen's
// own parser (libxlutil, the library xl create reads its file with;
// slottest.XLUCheck): the kernel, initramfs,
// command line, on_reboot and both disks are what XLSlotConfig meant.
// It skips without gcc or libxen-dev (Debian: the headers, libxlutil and
// libxenlight); xl itself does not run without Xen.
func TestXLSlotConfigLibxlu(t *testing.T) {
	xlucheck, why := slottest.XLUCheck(t)
	if xlucheck == nil {
		t.Skip(why)
	}
	tmp := t.TempDir()
	signer := slottest.Signer(t)
	disk := filepath.Join(tmp, "data disk, 1.img") // a comma and a space: target= takes the rest
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := DiskSlots(disk, slottest.Image(t, "v1", false, signer), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NextBoot(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	read := func(src string) (string, error) {
		f := filepath.Join(tmp, "boot.xl.cfg")
		if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return xlucheck(f)
	}
	src, err := XLSlotConfig("", b, disk, s.UpdateDisk())
	if err != nil {
		t.Fatal(err)
	}
	got, err := read(src)
	if err != nil {
		t.Fatalf("libxlutil refuses the configuration: %v\n%s\n%s", err, got, src)
	}
	slot := filepath.Join(update.SlotsDir(disk), "a")
	want := "kernel " + filepath.Join(slot, "vmlinux") + "\nramdisk " + filepath.Join(slot, "initrd.cpio.zst") +
		"\nextra panic=-1 quiet nymote.release=v1 " + UpdateDiskCmdline + "\non_reboot destroy\n" +
		"disk xvda " + disk + " raw rw\ndisk xvdb " + s.UpdateDisk() + " raw rw\n"
	if got != want {
		t.Errorf("libxlutil reads:\n%s\nwant:\n%s", got, want)
	}
	// The checker does refuse what xl refuses.
	if out, err := read("disk = [ \"format=raw, vdev=xvda, colour=blue, target=/d\" ]\n"); err == nil {
		t.Errorf("a disk with an unknown parameter: accepted (%s)", out)
	}
}

// TestSlotConfigErrors: configurations a slot boot cannot be made of are
// refused, naming what is wrong.
func TestSlotConfigErrors(t *testing.T) {
	signer := slottest.Signer(t)
	dir := slottest.Image(t, "v1", false, signer)
	b := update.Boot{Slot: "a", Dir: dir}
	for _, tc := range []struct {
		name, template, want string
	}{
		{"not JSON", "{", "Firecracker configuration"},
		{"drives not a list", `{"drives": 1}`, "drives: want a list"},
		{"update drive taken", `{"drives": [{"drive_id": "update", "path_on_host": "x"}]}`, `the drive id "update" is the update disk's`},
	} {
		if _, err := FirecrackerSlotConfig([]byte(tc.template), b, "/d/data.img", "/d/u.img"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("firecracker, %s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name, template, want string
	}{
		{"no disk", "name = \"x\"\n", "no disk = [ ... ] list"},
		{"no target", "disk = [ \"phy:/dev/vg/x,xvda,w\" ]\n", "has no target="},
		{"not xvd", "disk = [ \"format=raw, vdev=hda, target=/x\" ]\n", "want vdev=xvdX"},
		{"xvdb taken", "disk = [ \"format=raw, vdev=xvda, target=/x\", \"vdev=xvdb, target=/y\" ]\n", "the update disk's"},
		{"does not parse", "disk = [ 'a' 'b' ]\n", "xl configuration"},
	} {
		if _, err := XLSlotConfig(tc.template, b, "/d/data.img", "/d/u.img"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("xl, %s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := XLSlotConfig("", b, "/d/data \"1\".img", "/d/u.img"); err == nil || !strings.Contains(err.Error(), "quote") {
		t.Errorf("xl, a data disk path with a quote: %v", err)
	}
	// An image whose own configuration names a kernel outside it.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, FirecrackerConfigFile), []byte(`{"boot-source": {"kernel_image_path": "/boot/vmlinuz", "initrd_path": "initrd.cpio.zst"}}`), 0o644)
	os.WriteFile(filepath.Join(bad, XLConfigFile), []byte("kernel = \"../vmlinux\"\nramdisk = \"initrd.cpio.zst\"\ndisk = [ \"vdev=xvda, target=data.img\" ]\n"), 0o644)
	bb := update.Boot{Slot: "b", Dir: bad}
	if _, err := FirecrackerSlotConfig(nil, bb, "/d/data.img", "/d/u.img"); err == nil || !strings.Contains(err.Error(), `kernel "/boot/vmlinuz": want a file of the image`) {
		t.Errorf("firecracker, a kernel outside the slot: %v", err)
	}
	if _, err := XLSlotConfig("", bb, "/d/data.img", "/d/u.img"); err == nil || !strings.Contains(err.Error(), `kernel "../vmlinux": want a file of the image`) {
		t.Errorf("xl, a kernel outside the slot: %v", err)
	}
	empty := update.Boot{Slot: "a", Dir: t.TempDir()}
	if _, err := FirecrackerSlotConfig(nil, empty, "/d/data.img", "/d/u.img"); err == nil || !strings.Contains(err.Error(), "firecracker output") {
		t.Errorf("firecracker, an image without firecracker.json: %v", err)
	}
	if _, err := XLSlotConfig("", empty, "/d/data.img", "/d/u.img"); err == nil || !strings.Contains(err.Error(), "xen output") {
		t.Errorf("xl, an image without xl.cfg: %v", err)
	}
	if _, err := DiskSlots("", dir, nil); err == nil || !strings.Contains(err.Error(), "beside the data disk") {
		t.Errorf("DiskSlots without a disk: %v", err)
	}
}
