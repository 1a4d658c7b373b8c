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

// RebootRequested says whether the appliance in vm, which has exited,
// asked for a reboot (its runtime's last word was "rebooting": after a
// received update, or a crash), which QEMU's -no-reboot turns into an exit.
func RebootRequested(vm *VM) bool {
	lines := vm.Lines()
	for i := len(lines) - 1; i >= 0; i-- {
		t := lines[i].Text
		if strings.Contains(t, "nymote: rebooting at ") {
			return true
		}
		if strings.Contains(t, "nymote: powering off") {
			return false
		}
	}
	return false
}
