package jitsu

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/internal/slottest"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/update"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeVMM is a stand-in for firecracker and xl (neither runs here): a
// guest "boots" the configuration it is given: it logs the kernel that
// configuration names (the bytes of the file, which say the release) to
// boots.log, and its console says the service is serving and then the
// appliance's good line, or, for an image whose command line says
// nymote.crash=now, that the service exited, and the VM ends.
const fakeVMM = `#!/bin/sh
dir=$(dirname "$0")
boot() { # config file: kernel, command line
	kernel=$(grep -o '"kernel_image_path": *"[^"]*"\|^kernel = "[^"]*"' "$1" | sed 's/.*"\([^"]*\)"$/\1/')
	echo "$(cat "$kernel") from $kernel" >> "$dir/boots.log"
	if grep -q nymote.crash=now "$1"; then
		echo "nymote: hello: exited: crash=now"
		rm -f "$dir/running"
		exit 1
	fi
	echo "nymote: hello listening on :80"
	echo "nymote: hello GOOD for 5s, data disk mounted read-write"
	exec sleep 600
}
case "$(basename "$0") $1" in
"firecracker --api-sock") boot "$4" ;;
"xl create") echo "$3" > "$dir/config"; touch "$dir/running" ;;
"xl console") boot "$(cat "$dir/config")" ;;
"xl domid") test -e "$dir/running" ;;
"xl destroy"|"xl shutdown") rm -f "$dir/running" ;;
*) echo "fake: $*" >&2; exit 2 ;;
esac
`

// TestVMLauncherSlots starts Firecracker and xl appliances with slots
// (firecracker and xl are stand-ins, see fakeVMM): the first image boots
// from slot a; an update received by the appliance (written to the update
// disk by the appliance's sink) test-boots from slot b within Start, is
// committed on the good line; a broken update test-boots from slot a,
// fails, and Start boots the committed slot b again; a restart with the
// first image boots slot b; nymote update rollback --disk (RollbackByHand)
// makes the next start boot slot a.
func TestVMLauncherSlots(t *testing.T) {
	signer := slottest.Signer(t)
	v1, v2, v3 := slottest.Image(t, "v1", false, signer), slottest.Image(t, "v2", false, signer), slottest.Image(t, "v3", true, signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // the guest's port
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, kind := range []string{"firecracker", "xl"} {
		t.Run(kind, func(t *testing.T) {
			bin := t.TempDir()
			if err := os.WriteFile(filepath.Join(bin, kind), []byte(strings.Replace(fakeVMM, "GOOD", app.GoodMarker, 1)), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
			disk := filepath.Join(t.TempDir(), "data.img")
			if err := os.WriteFile(disk, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			slotsDir := update.SlotsDir(disk)
			ports := []PortConfig{{Name: "hello", Port: port}}
			var l Launcher
			switch kind {
			case "firecracker":
				l = &FirecrackerLauncher{Guest: "127.0.0.1", Ports: ports, Log: discardLog(), Slots: true, Image: v1, Disk: disk}
			case "xl":
				l = &XLLauncher{Guest: "127.0.0.1", Ports: ports, Log: discardLog(), Slots: true, Image: v1, Disk: disk, Poll: 10 * time.Millisecond}
			}
			if fc, ok := l.(*FirecrackerLauncher); ok {
				if got, want := strings.Join(fc.Command("/s"), " "), "firecracker --api-sock /s --config-file "+filepath.Join(slotsDir, launch.SlotFirecrackerConfig); got != want {
					t.Errorf("command %q, want %q", got, want)
				}
			}
			// start starts the appliance and checks the kernels
			// booted since the last start, then stops it.
			start := func(boots ...string) {
				t.Helper()
				os.Remove(filepath.Join(bin, "boots.log"))
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				inst, err := l.Start(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := inst.Addr(app.UpdatePort.Name), "127.0.0.1:"+strconv.Itoa(app.UpdatePort.Port); got != want {
					t.Errorf("update port %s, want %s", got, want)
				}
				// A boot from the committed slot is not watched:
				// Start returns once its port accepts, which may be
				// before the stand-in logs its kernel.
				var b []byte
				for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
					if b, _ = os.ReadFile(filepath.Join(bin, "boots.log")); bytes.Count(b, []byte("\n")) >= len(boots) {
						break
					}
				}
				var want []string
				for _, bt := range boots {
					slot, release, _ := strings.Cut(bt, "=")
					want = append(want, "vmlinux "+release+" from "+filepath.Join(slotsDir, slot, "vmlinux"))
				}
				if got := strings.Split(strings.TrimSpace(string(b)), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("boots:\n got  %q\n want %q", got, want)
				}
				switch inst := inst.(type) {
				case *fcVM:
					inst.kill() // the stand-in has no API socket to power off with
				case *toolVM:
					if err := inst.Stop(ctx); err != nil {
						t.Error(err)
					}
				}
			}
			s, err := update.OpenSlots(slotsDir)
			if err != nil {
				t.Fatal(err)
			}
			start("a=v1")
			start("a=v1")
			slottest.Receive(t, s, v2)
			start("b=v2")
			if st, _ := s.State(); st.Committed != "b" || st.Next != "" {
				t.Errorf("after v2's test boot: %+v, want b committed", st)
			}
			slottest.Receive(t, s, v3)
			start("a=v3", "b=v2")
			if st, _ := s.State(); st.Committed != "b" || st.RolledBack == nil || st.RolledBack.Slot != "a" {
				t.Errorf("after v3's test boot: %+v, want b committed, a rolled back", st)
			}
			start("b=v2")
			if _, err := s.RollbackByHand(); err != nil {
				t.Fatal(err)
			}
			start("a=v3") // committed by hand, not tried again: its crash ends the VM after Start
		})
	}
}
