package testutil

import (
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// HeapPeaks are what the heap came to while a piece of work ran
// (SampleHeap).
type HeapPeaks struct {
	// Heap is the peak of the heap's objects, live or not yet swept;
	// Live the peak of the live heap as each GC found it; Alloc the
	// bytes allocated meanwhile.
	Heap, Live, Alloc uint64
}

// SampleHeap runs fn while it reads the heap every 2 ms, then collects
// garbage and reads it once more: the peaks the memory benchmarks report.
func SampleHeap(fn func()) HeapPeaks {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	var p HeapPeaks
	read := func() {
		metrics.Read(samples)
		p.Heap = max(p.Heap, samples[0].Value.Uint64())
		p.Live = max(p.Live, samples[1].Value.Uint64())
	}
	read()
	alloc0 := samples[2].Value.Uint64()
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			read()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	func() {
		// (Also when fn ends its goroutine: a benchmark's b.Fatal.)
		defer func() {
			stop.Store(true)
			<-done
		}()
		fn()
	}()
	runtime.GC()
	read()
	p.Alloc = samples[2].Value.Uint64() - alloc0
	return p
}
