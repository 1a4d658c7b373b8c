package appliance

import (
	"os"
	"testing"
	"time"
)

func TestRunInitRecord(t *testing.T) {
	for _, tc := range []struct {
		rec  string
		want time.Duration
		ok   bool
	}{
		{"6,339,1046589,-;Run /init as init process", 1047 * time.Millisecond, true},
		{"6,412,2500000,-,caller=T1;Run /sbin/init as init process\n", 2500 * time.Millisecond, true},
		{"6,340,1046600,-;  with arguments:", 0, false},
		{"6,341,1046700,-;Run /init as something", 0, false},
		{"6,341,x,-;Run /init as init process", 0, false},
		{"no semicolon", 0, false},
	} {
		got, ok := runInitRecord([]byte(tc.rec))
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: got %v, %v; want %v, %v", tc.rec, got, ok, tc.want, tc.ok)
		}
	}
}

// TestExecUptimeReturns: on a machine whose log lacks the record (this
// host), execUptime reads to the end of the log and says "?" instead of
// waiting for more records.
func TestExecUptimeReturns(t *testing.T) {
	if f, err := os.Open("/dev/kmsg"); err != nil {
		t.Skipf("no /dev/kmsg to read here: %v", err)
	} else {
		f.Close()
	}
	done := make(chan string, 1)
	go func() { done <- execUptime() }()
	select {
	case s := <-done:
		if s != "?" {
			if _, err := time.ParseDuration(s); err != nil {
				t.Errorf("execUptime() = %q", s)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("execUptime is still reading the kernel log after 10s")
	}
}
