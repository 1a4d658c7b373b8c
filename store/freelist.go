package store

// freeList keeps up to a few values for reuse, across garbage
// collections: a sync.Pool is emptied by every collection, which a node
// under a steady stream of APPENDs runs every few tens of milliseconds,
// and its zlib writers (1.2 MB each at the fastest level, most of it the compressor's
// tables, made at the first write) and 256 KiB pack write buffers were
// made again after each: 12 KB of garbage per APPEND in BenchmarkAppend
// for the writers alone, which brought the next collection closer.
type freeList[T any] struct {
	c    chan T
	make func() T
}

func newFreeList[T any](n int, mk func() T) *freeList[T] {
	return &freeList[T]{c: make(chan T, n), make: mk}
}

// get returns a kept value, or a new one.
func (f *freeList[T]) get() T {
	select {
	case v := <-f.c:
		return v
	default:
		return f.make()
	}
}

// put keeps v for a later get, unless enough are kept already.
func (f *freeList[T]) put(v T) {
	select {
	case f.c <- v:
	default:
	}
}
