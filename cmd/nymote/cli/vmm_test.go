package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/internal/slottest"
	"github.com/nymote/nymote/update"
)

// standInVMM stands in for firecracker and xl (neither runs here): a
// guest "boots" the configuration it is given: it logs the kernel that
// configuration names (the file's content, which says the release, and
// its path) to boots.log beside the script; its console says the service
// is serving, prints the appliance's good line and powers off, or, for an
// image whose command line has nymote.crash=now, says the service exited
// and ends with an error.
const standInVMM = `#!/bin/sh
dir=$(dirname "$0")
boot() { # the configuration file
	kernel=$(grep -o '"kernel_image_path": *"[^"]*"\|^kernel = "[^"]*"' "$1" | sed 's/.*"\([^"]*\)"$/\1/')
	echo "$(cat "$kernel") from $kernel" >> "$dir/boots.log"
	if grep -q nymote.crash=now "$1"; then
		echo "nymote: hello: exited: crash=now"
		exit 1
	fi
	echo "nymote: hello listening on :80"
	echo "nymote: hello GOOD for 5s, data disk mounted read-write"
	echo "nymote: powering off"
}
case "$(basename "$0") $1" in
"firecracker --api-sock") boot "$4" ;;
"xl create") echo "$3" > "$dir/config" ;;
"xl console") boot "$(cat "$dir/config")" ;;
"xl destroy"|"xl shutdown"|"xl domid") ;;
*) echo "stand-in: $*" >&2; exit 2 ;;
esac
`

// TestRunVMM runs nymote run --vmm firecracker and xl (with stand-ins for
// both, see standInVMM) from the slots beside the data disk, with the
// slot files the real code writes (the appliance's sink writes updates to
// the update disk): the first image boots from slot a; a received update
// test-boots from slot b and is committed on the good line; a broken one
// test-boots from slot a, fails, and run boots slot b again; nymote update
// status --disk shows it; rollback --disk makes slot a boot. Without
// --slots the image folder boots.
func TestRunVMM(t *testing.T) {
	signer := slottest.Signer(t)
	v1, v2, v3 := slottest.Image(t, "v1", false, signer), slottest.Image(t, "v2", false, signer), slottest.Image(t, "v3", true, signer)
	for _, vmm := range []string{"firecracker", "xl"} {
		t.Run(vmm, func(t *testing.T) {
			bin := t.TempDir()
			if err := os.WriteFile(filepath.Join(bin, vmm), []byte(strings.Replace(standInVMM, "GOOD", app.GoodMarker, 1)), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
			disk := filepath.Join(t.TempDir(), "data.img")
			if err := os.WriteFile(disk, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			slots := update.SlotsDir(disk)
			board := "firecracker-x86_64"
			if vmm == "xl" {
				board = "xen-pvh-x86_64"
			}
			// boot runs nymote run and checks the kernels booted.
			boot := func(wantCode int, image string, slotsFlag bool, boots ...string) string {
				t.Helper()
				os.Remove(filepath.Join(bin, "boots.log"))
				args := []string{"run", "hello", "--board", board, "--vmm", vmm, "--no-build", "-o", image, "--disk", disk}
				if slotsFlag {
					args = append(args, "--slots")
				}
				code, out, errs := run(t, "", args...)
				if code != wantCode {
					t.Fatalf("nymote %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errs)
				}
				b, _ := os.ReadFile(filepath.Join(bin, "boots.log"))
				var want []string
				for _, bt := range boots {
					slot, release, _ := strings.Cut(bt, "=")
					dir := filepath.Join(slots, slot)
					if slot == "image" {
						dir = image
					}
					want = append(want, "vmlinux "+release+" from "+filepath.Join(dir, "vmlinux"))
				}
				if got := strings.Split(strings.TrimSpace(string(b)), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("boots:\n got  %q\n want %q\n%s", got, want, errs)
				}
				return errs
			}
			boot(0, v1, false, "image=v1")
			boot(0, v1, true, "a=v1")
			s, err := update.OpenSlots(slots)
			if err != nil {
				t.Fatal(err)
			}
			slottest.Receive(t, s, v2)
			if errs := boot(0, v1, true, "b=v2"); !strings.Contains(errs, "slot b reported good: committed") {
				t.Errorf("v2's test boot:\n%s", errs)
			}
			slottest.Receive(t, s, v3)
			if errs := boot(0, v1, true, "a=v3", "b=v2"); !strings.Contains(errs, "the test boot of slot a did not report good: back to slot b") {
				t.Errorf("v3's test boot:\n%s", errs)
			}
			out := mustRun(t, "", "update", "status", "--disk", disk)
			for _, want := range []string{"slot a  hello    v3 ", "slot b  hello    v2 ", "committed", "last rollback: from slot a"} {
				if !strings.Contains(out, want) {
					t.Errorf("update status: no %q in\n%s", want, out)
				}
			}
			mustRun(t, "", "update", "rollback", "--disk", disk)
			boot(1, v1, true, "a=v3") // committed by hand: its crash ends run
		})
	}
}
