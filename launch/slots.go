package launch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/update"
)

// DefaultTestBootBound is how long a test boot may take to report the
// appliance good before the launcher gives up on it (WatchTestBoot).
const DefaultTestBootBound = 5 * time.Minute

// ErrNotGood is returned by WatchTestBoot when the test boot ended without
// the appliance reporting itself good.
var ErrNotGood = errors.New("the new image did not report the appliance good")

// Booted is a booted appliance as WatchTestBoot watches it: its console
// and how to pull its plug. *VM (QEMU), *Firecracker and *XLConsole are
// ones.
type Booted interface {
	// WaitLine waits for a console line containing substr; it fails
	// when the appliance has exited or ctx ends.
	WaitLine(ctx context.Context, substr string) (Line, error)
	// Kill stops the appliance at once.
	Kill()
}

// WatchTestBoot watches the test boot b of slots s in vm: when the console
// shows the runtime's good line (app.GoodMarker) it commits the slot and
// returns nil. When the VM exits first, or bound (0: DefaultTestBootBound)
// passes, or ctx ends, it kills the VM and fails with ErrNotGood: the next
// Boot of s returns to the committed slot. Every launcher (QEMU,
// Firecracker, xl) watches its test boots with it.
func WatchTestBoot(ctx context.Context, vm Booted, s *update.Slots, b update.Boot, bound time.Duration) error {
	if bound <= 0 {
		bound = DefaultTestBootBound
	}
	wctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	if _, err := vm.WaitLine(wctx, " "+app.GoodMarker); err != nil {
		vm.Kill()
		return fmt.Errorf("launch: slot %s: %w (%v)", b.Slot, ErrNotGood, err)
	}
	if err := s.Commit(b.Slot); err != nil {
		return err
	}
	return nil
}

// DiskSlots opens the slots beside the data disk disk (update.SlotsDir)
// and their update disk (creating them if need be), and installs image,
// the image folder the launcher is configured with, unless it is the one
// installed that way last (update.Slots.Given: into empty slots it is
// committed at once, else it waits for its test boot; starting again with
// the same image never undoes the updates received since). say (if not
// nil) is told what was installed. nymote run and jitsu's launchers (QEMU,
// Firecracker, xl) all start from it.
func DiskSlots(disk, image string, say func(format string, args ...any)) (*update.Slots, error) {
	if disk == "" {
		return nil, errors.New("launch: slots are kept beside the data disk: there is none")
	}
	s, err := update.OpenSlots(update.SlotsDir(disk))
	if err != nil {
		return nil, err
	}
	if err := update.CreateUpdateDisk(s.UpdateDisk()); err != nil {
		return nil, err
	}
	slot, err := s.Given(image, update.InstallOptions{AllowUnsigned: true})
	if err != nil {
		return nil, err
	}
	if slot != "" && say != nil {
		say("installed the image of %s in slot %s", image, slot)
	}
	return s, nil
}

// NextBoot is the slot to boot now, by the try-once rule
// (update.Slots.Boot), once an update the appliance left on the update
// disk is installed in the inactive slot (update.Slots.PickUp; one that
// fails its checks is dropped and said so). say (if not nil) is told what
// happened: an update installed or refused, a rollback, a test boot.
func NextBoot(s *update.Slots, say func(format string, args ...any)) (update.Boot, error) {
	if say == nil {
		say = func(string, ...any) {}
	}
	if v, err := s.PickUp(update.InstallOptions{}); err != nil {
		say("the update the appliance received is refused: %v", err)
	} else if v != "" {
		say("installed the received update %s in the inactive slot", v)
	}
	b, err := s.Boot()
	if err != nil {
		return b, err
	}
	if b.RolledBack != "" {
		say("the test boot of slot %s did not report good: back to slot %s", b.RolledBack, b.Slot)
	}
	if b.Test {
		say("test boot of the new image in slot %s", b.Slot)
	}
	return b, nil
}

// UpdateReboot says whether the appliance in vm (QEMU, Firecracker, an xl
// console), which has exited, stopped to reboot into an update it received
// (the runtime's app.UpdateRebootLine), which QEMU's -no-reboot turns into
// an exit: the
// launcher then boots it again, the update first installed from the update
// disk. A reboot after a crash is not one: the launcher stops there, as
// without slots.
//
// A reboot to migrate the data (app.MigrateRebootLine: after the good line
// of a test boot whose image migrates the data, which the launcher has
// committed) is one too: the next boot is the committed image, which
// migrates the data before serving.
func UpdateReboot(vm interface{ Lines() []Line }) bool {
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "nymote: "+app.UpdateRebootLine) || strings.Contains(l.Text, "nymote: "+app.MigrateRebootLine) {
			return true
		}
	}
	return false
}
