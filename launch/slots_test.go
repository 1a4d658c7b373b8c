package launch

import (
	"strings"
	"testing"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/boards"
)

// TestTestBootCmdline: a test boot tells the runtime so (nymote.trial=1),
// other boots do not.
func TestTestBootCmdline(t *testing.T) {
	b, err := boards.Get("microvm-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Dir: "/img", Board: b, Kernel: "vmlinux", Initrd: "initrd.cpio.zst", Cmdline: "console=X"}
	for _, test := range []bool{false, true} {
		args, err := QEMUCommand(img, QEMU{TestBoot: test})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(argAfter(args, "-append"), "nymote.trial=1"); got != test {
			t.Errorf("TestBoot %v: -append %q", test, argAfter(args, "-append"))
		}
	}
}

// TestUpdateReboot: the launcher boots the appliance again after a reboot
// into a received update and after a reboot to migrate the data, not
// after a crash's reboot.
func TestUpdateReboot(t *testing.T) {
	for _, c := range []struct {
		line string
		want bool
	}{
		{"nymote: " + app.UpdateRebootLine + ": stopping hello", true},
		{"nymote: " + app.MigrateRebootLine + ": stopping hello", true},
		{"nymote: hello failed: boom; rebooting", false},
	} {
		vm := &VM{lines: []Line{{Text: "nymote: hello good: serving for 5s"}, {Text: c.line}}}
		if got := UpdateReboot(vm); got != c.want {
			t.Errorf("UpdateReboot after %q = %v, want %v", c.line, got, c.want)
		}
	}
}
