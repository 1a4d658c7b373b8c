package launch

import (
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/nymote/nymote/boards"
)

// TestTCGCmdline: an x86-64 guest under TCG gets the host's TSC frequency;
// one under KVM, or of another architecture, gets nothing.
func TestTCGCmdline(t *testing.T) {
	mv, _ := boards.Get("microvm-x86_64")
	arm, _ := boards.Get("qemu-arm64")
	if got := TCGCmdline(mv, true); got != nil {
		t.Errorf("KVM: got %q", got)
	}
	if got := TCGCmdline(arm, false); got != nil {
		t.Errorf("arm64: got %q", got)
	}
	got := TCGCmdline(mv, false)
	if _, ok := TCGTSCkHz(); !ok || runtime.GOARCH != "amd64" {
		if got != nil {
			t.Errorf("no invariant TSC here, got %q", got)
		}
		t.Skip("no invariant TSC on this host")
	}
	if len(got) != 1 || !strings.HasPrefix(got[0], "tsc_early_khz=") {
		t.Fatalf("got %q", got)
	}
	t.Log(got[0])
	khz, err := strconv.Atoi(strings.TrimPrefix(got[0], "tsc_early_khz="))
	if err != nil || khz < 500_000 || khz > 10_000_000 {
		t.Errorf("%s: want a frequency between 0.5 and 10 GHz", got[0])
	}
}
