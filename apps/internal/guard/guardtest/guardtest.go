// Package guardtest helps the hostile-client tests of the services (issue
// 21): it measures the growth of the process's peak memory while an attack
// runs, and connects from distinct loopback addresses, as distinct client
// hosts would.
package guardtest

import (
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RSSMeter resets the process's peak resident size (VmHWM, through
// /proc/self/clear_refs) and returns a function giving how far the peak
// has risen above the resident size of now, in bytes. It skips the test
// where the kernel cannot reset the peak.
func RSSMeter(t testing.TB) func() int64 {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS (/proc/self/clear_refs: %v); skipping the memory budget", err)
	}
	base := procStatus(t, "VmRSS")
	return func() int64 { return procStatus(t, "VmHWM") - base }
}

func procStatus(t testing.TB, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("/proc/self/status: %s: %v", field, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// DialFrom connects to addr over TCP from the loopback address 127.0.0.N.
func DialFrom(n int, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(n))}, Timeout: timeout}
	return d.Dial("tcp", addr)
}
