package launch

import (
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func rdtsc() uint64

// hostTSC measures this machine's TSC frequency once (in kHz), for
// TCGTSCkHz.
var hostTSC = sync.OnceValues(func() (int, bool) {
	// Only an invariant TSC ticks at one rate: constant_tsc (not scaled
	// with the core's frequency) and nonstop_tsc (not stopped in idle).
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0, false
	}
	_, flags, _ := strings.Cut(string(b), "\nflags")
	flags, _, _ = strings.Cut(flags, "\n")
	f := strings.Fields(flags)
	if !slices.Contains(f, "constant_tsc") || !slices.Contains(f, "nonstop_tsc") {
		return 0, false
	}
	// Against the monotonic clock over 20 ms, three times: the median
	// is within a few parts per million.
	var khz []int
	for range 3 {
		t0, c0 := time.Now(), rdtsc()
		time.Sleep(20 * time.Millisecond)
		c1, t1 := rdtsc(), time.Now()
		khz = append(khz, int(float64(c1-c0)/float64(t1.Sub(t0).Nanoseconds())*1e6))
	}
	slices.Sort(khz)
	return khz[1], khz[1] > 0
})

// TCGTSCkHz returns the frequency of the TSC that QEMU's TCG shows an x86
// guest: the host's own (TCG's rdtsc reads the host's TSC), measured here,
// or false when the host's TSC is not invariant.
func TCGTSCkHz() (int, bool) { return hostTSC() }
