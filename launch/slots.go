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

// WatchTestBoot watches the test boot b of slots s in vm: when the console
// shows the runtime's good line (app.GoodMarker) it commits the slot and
// returns nil. When the VM exits first, or bound (0: DefaultTestBootBound)
// passes, or ctx ends, it kills the VM and fails with ErrNotGood: the next
// Boot of s returns to the committed slot.
func WatchTestBoot(ctx context.Context, vm *VM, s *update.Slots, b update.Boot, bound time.Duration) error {
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

// UpdateReboot says whether the appliance in vm, which has exited, stopped
// to reboot into an update it received (the runtime's
// app.UpdateRebootLine), which QEMU's -no-reboot turns into an exit: the
// launcher then boots it again, the update first installed from the update
// disk. A reboot after a crash is not one: the launcher stops there, as
// without slots.
//
// A reboot to migrate the data (app.MigrateRebootLine: after the good line
// of a test boot whose image migrates the data, which the launcher has
// committed) is one too: the next boot is the committed image, which
// migrates the data before serving.
func UpdateReboot(vm *VM) bool {
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "nymote: "+app.UpdateRebootLine) || strings.Contains(l.Text, "nymote: "+app.MigrateRebootLine) {
			return true
		}
	}
	return false
}
