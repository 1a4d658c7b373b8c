package mailstore_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/mailstore/mailfill"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/store"
)

// BenchmarkIndexMemory measures the heap a mail user's index costs per
// message once loaded: a store whose INBOX holds n messages (2000 a
// commit, repacked, as a data disk that grew), opened afresh, the user
// loaded and INBOX selected. It reports heap bytes a message (after a GC,
// the mail caches off), and the peaks while the index loads: of the live
// heap (heap/live after each GC, sampled every 2 ms) and of the heap's
// objects (live or not yet swept), in MiB. Under a memory limit the GC
// runs often enough for the live peak to be close to what is held. It
// reports too the process's CPU time (user and system) to open the store,
// load the index and select INBOX, less noisy than the wall time on a
// loaded machine. NYMOTE_MEM_N sets n (default 5000);
// NYMOTE_MEM_LIMIT a Go memory limit in MiB, as the appliance sets (the
// store sizes its caches from it); NYMOTE_MEM_DIR
// keeps the filled store there between runs; NYMOTE_MEM_PROFILE writes a
// heap profile.
func BenchmarkIndexMemory(b *testing.B) {
	ctx := context.Background()
	n := 5000
	if v := os.Getenv("NYMOTE_MEM_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("NYMOTE_MEM_N=%q: want a positive count", v)
		}
	}
	dir := os.Getenv("NYMOTE_MEM_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	if _, err := os.Stat(filepath.Join(dir, store.RepoDir)); err != nil {
		if err := mailfill.Fill(ctx, dir, n, true, nil); err != nil {
			b.Fatal(err)
		}
	}
	if v := os.Getenv("NYMOTE_MEM_LIMIT"); v != "" {
		lim, err := strconv.ParseInt(v, 10, 64)
		if err != nil || lim < 1 {
			b.Fatalf("NYMOTE_MEM_LIMIT=%q: want a positive count of MiB", v)
		}
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(lim << 20))
	}
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var st *store.Store
		var ms *mailstore.Store
		var v *mailstore.View
		var cpu time.Duration
		peaks := testutil.SampleHeap(func() {
			cpu0 := cpuTime()
			var err error
			st, err = store.OpenData(dir, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			ms, err = mailstore.Open(st, mailstore.Options{RawCacheBytes: -1, SummaryCacheBytes: -1})
			if err != nil {
				b.Fatal(err)
			}
			u, err := ms.User(ctx, "alice")
			if err != nil {
				b.Fatal(err)
			}
			inbox, _ := u.Mailbox("INBOX")
			v, _ = inbox.Open(false)
			if got := len(v.Items(imap.SeqSet{{Start: 1, Stop: 0}})); got != n {
				b.Fatalf("INBOX has %d messages, want %d (remove %s)", got, n, dir)
			}
			cpu = cpuTime() - cpu0
		})
		peakHeap, peakLive := peaks.Heap, peaks.Live
		runtime.ReadMemStats(&after)
		if p := os.Getenv("NYMOTE_MEM_PROFILE"); p != "" {
			f, err := os.Create(p)
			if err != nil {
				b.Fatal(err)
			}
			pprof.WriteHeapProfile(f)
			f.Close()
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heapB/msg")
		b.ReportMetric(float64(peakLive-before.HeapAlloc)/(1<<20), "peakLiveMiB")
		b.ReportMetric(float64(peakHeap-before.HeapAlloc)/(1<<20), "peakHeapMiB")
		b.ReportMetric(cpu.Seconds(), "cpu-s")
		v.Close()
		ms.Close()
		st.Close()
	}
}

// cpuTime is the process's CPU time so far (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
