package metrics

import (
	"runtime"
	"runtime/debug"
	rm "runtime/metrics"
	"time"
)

// NewGoCollector returns a collector of the Go runtime's metrics under the
// names the Prometheus client's Go collector gave them (go_goroutines,
// go_threads, go_info, go_gc_duration_seconds, go_memstats_*,
// go_gc_gogc_percent, go_gc_gomemlimit_bytes,
// go_sched_gomaxprocs_threads). The memory statistics are read from
// runtime/metrics, which does not stop the world as
// runtime.ReadMemStats does.
func NewGoCollector() Collector { return CollectorFunc(collectGo) }

// runtimeSamples are the runtime/metrics the Go collector reads, in the
// order of the constants below.
var runtimeSamples = []string{
	"/memory/classes/heap/objects:bytes",
	"/gc/heap/allocs:bytes",
	"/memory/classes/profiling/buckets:bytes",
	"/gc/heap/frees:objects",
	"/gc/heap/tiny/allocs:objects",
	"/memory/classes/metadata/other:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/unused:bytes",
	"/gc/heap/objects:objects",
	"/gc/heap/allocs:objects",
	"/memory/classes/metadata/mcache/inuse:bytes",
	"/memory/classes/metadata/mcache/free:bytes",
	"/memory/classes/metadata/mspan/inuse:bytes",
	"/memory/classes/metadata/mspan/free:bytes",
	"/gc/heap/goal:bytes",
	"/memory/classes/other:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/memory/classes/os-stacks:bytes",
	"/memory/classes/total:bytes",
	"/gc/gogc:percent",
	"/gc/gomemlimit:bytes",
	"/sched/gomaxprocs:threads",
	"/sched/goroutines:goroutines",
}

const (
	rmHeapObjectsBytes = iota
	rmAllocsBytes
	rmBuckets
	rmFrees
	rmTinyAllocs
	rmMetadataOther
	rmHeapReleased
	rmHeapFree
	rmHeapUnused
	rmHeapObjects
	rmAllocsObjects
	rmMcacheInuse
	rmMcacheFree
	rmMspanInuse
	rmMspanFree
	rmHeapGoal
	rmOther
	rmStacks
	rmOSStacks
	rmTotal
	rmGOGC
	rmMemLimit
	rmGOMAXPROCS
	rmGoroutines
)

func collectGo(emit func(Family)) {
	s := make([]rm.Sample, len(runtimeSamples))
	for i, n := range runtimeSamples {
		s[i].Name = n
	}
	rm.Read(s)
	v := func(i int) float64 {
		switch s[i].Value.Kind() {
		case rm.KindUint64:
			return float64(s[i].Value.Uint64())
		case rm.KindFloat64:
			return s[i].Value.Float64()
		}
		return 0 // not in this Go version
	}
	gauge := func(name, help string, x float64) {
		emit(Family{Name: name, Help: help, Type: TypeGauge, Metrics: []Metric{{Value: x}}})
	}
	counter := func(name, help string, x float64) {
		emit(Family{Name: name, Help: help, Type: TypeCounter, Metrics: []Metric{{Value: x}}})
	}

	gauge("go_goroutines", "Goroutines that exist now.", v(rmGoroutines))
	threads, _ := runtime.ThreadCreateProfile(nil)
	gauge("go_threads", "Operating system threads created.", float64(threads))
	emit(Family{Name: "go_info", Help: "The Go version the program was built with.", Type: TypeGauge,
		Labels: []string{"version"}, Metrics: []Metric{{LabelValues: []string{runtime.Version()}, Value: 1}}})
	gauge("go_gc_gogc_percent", "The garbage collector's heap growth target (GOGC, debug.SetGCPercent).", v(rmGOGC))
	gauge("go_gc_gomemlimit_bytes", "The runtime's memory limit (GOMEMLIMIT, debug.SetMemoryLimit).", v(rmMemLimit))
	gauge("go_sched_gomaxprocs_threads", "GOMAXPROCS: threads that may run Go code at once.", v(rmGOMAXPROCS))

	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&gc)
	pauses := Metric{Sum: gc.PauseTotal.Seconds(), Count: uint64(gc.NumGC)}
	for i, q := range []float64{0, 0.25, 0.5, 0.75, 1} {
		pauses.Quantiles = append(pauses.Quantiles, Quantile{Quantile: q, Value: gc.PauseQuantiles[i].Seconds()})
	}
	emit(Family{Name: "go_gc_duration_seconds", Help: "Stop-the-world pauses of garbage collections, in seconds.", Type: TypeSummary,
		Metrics: []Metric{pauses}})
	last := 0.0
	if !gc.LastGC.IsZero() {
		last = float64(gc.LastGC.UnixNano()) / 1e9
	}
	gauge("go_memstats_last_gc_time_seconds", "When the last garbage collection ended, in seconds since 1970.", last)

	heap := v(rmHeapObjectsBytes)
	gauge("go_memstats_alloc_bytes", "Bytes of heap objects allocated and not yet freed.", heap)
	gauge("go_memstats_heap_alloc_bytes", "Bytes of heap objects allocated and not yet freed (as go_memstats_alloc_bytes).", heap)
	counter("go_memstats_alloc_bytes_total", "Bytes of heap objects allocated, freed or not.", v(rmAllocsBytes))
	counter("go_memstats_mallocs_total", "Heap objects allocated.", v(rmAllocsObjects)+v(rmTinyAllocs))
	counter("go_memstats_frees_total", "Heap objects freed.", v(rmFrees)+v(rmTinyAllocs))
	gauge("go_memstats_heap_objects", "Heap objects allocated and not yet freed.", v(rmHeapObjects))
	gauge("go_memstats_heap_idle_bytes", "Bytes of heap spans with no objects (free or released).", v(rmHeapReleased)+v(rmHeapFree))
	gauge("go_memstats_heap_inuse_bytes", "Bytes of heap spans with objects.", heap+v(rmHeapUnused))
	gauge("go_memstats_heap_released_bytes", "Bytes of heap returned to the operating system.", v(rmHeapReleased))
	gauge("go_memstats_heap_sys_bytes", "Bytes of heap obtained from the operating system.", heap+v(rmHeapUnused)+v(rmHeapReleased)+v(rmHeapFree))
	gauge("go_memstats_next_gc_bytes", "Heap size at which the next garbage collection starts.", v(rmHeapGoal))
	gauge("go_memstats_buck_hash_sys_bytes", "Bytes of the profiling bucket hash table.", v(rmBuckets))
	gauge("go_memstats_gc_sys_bytes", "Bytes of garbage collection metadata.", v(rmMetadataOther))
	gauge("go_memstats_mcache_inuse_bytes", "Bytes of mcache structures in use.", v(rmMcacheInuse))
	gauge("go_memstats_mcache_sys_bytes", "Bytes of mcache structures obtained from the operating system.", v(rmMcacheInuse)+v(rmMcacheFree))
	gauge("go_memstats_mspan_inuse_bytes", "Bytes of mspan structures in use.", v(rmMspanInuse))
	gauge("go_memstats_mspan_sys_bytes", "Bytes of mspan structures obtained from the operating system.", v(rmMspanInuse)+v(rmMspanFree))
	gauge("go_memstats_other_sys_bytes", "Bytes of other runtime allocations.", v(rmOther))
	gauge("go_memstats_stack_inuse_bytes", "Bytes of goroutine stacks in heap spans.", v(rmStacks))
	gauge("go_memstats_stack_sys_bytes", "Bytes of stacks obtained from the operating system.", v(rmStacks)+v(rmOSStacks))
	gauge("go_memstats_sys_bytes", "Bytes obtained from the operating system in all.", v(rmTotal))
}
