package store

import "sync"

// freeList keeps values for reuse: up to a few across garbage collections,
// the rest in a sync.Pool, which every collection empties. A node under a
// steady stream of APPENDs collects every few tens of milliseconds, and its
// zlib writers (1.2 MB each at the fastest level, most of it the
// compressor's tables, made at the first write) and 256 KiB pack write
// buffers were made again after each: 12 KB of garbage per APPEND in
// BenchmarkAppend for the writers alone, which brought the next collection
// closer. How many are kept is set at the first use, from the memory limit
// (an appliance sets it at boot): none under 48 MiB (a 64 MiB VM, where a
// few MB kept idle would be a tenth of its room), as many as asked above.
type freeList[T any] struct {
	want int
	once sync.Once
	c    chan T
	pool sync.Pool
	make func() T
}

func newFreeList[T any](n int, mk func() T) *freeList[T] {
	return &freeList[T]{want: n, make: mk}
}

func (f *freeList[T]) kept() chan T {
	f.once.Do(func() { f.c = make(chan T, int(underMemoryLimit(int64(f.want), 0, 48<<20))) })
	return f.c
}

// get returns a kept value, or a new one.
func (f *freeList[T]) get() T {
	select {
	case v := <-f.kept():
		return v
	default:
	}
	if v := f.pool.Get(); v != nil {
		return v.(T)
	}
	return f.make()
}

// put keeps v for a later get.
func (f *freeList[T]) put(v T) {
	select {
	case f.kept() <- v:
	default:
		f.pool.Put(v)
	}
}
