package store

import (
	"io"
	"sync"
)

// copyBufs recycles the buffers of copyBuffered.
var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// copyBuffered is io.Copy with a recycled buffer: io.Copy makes one of 32
// KiB for each call where neither side copies by itself (a hasher, a
// compressor, a spool's reader), which for every object of every commit
// (the commit log, the pack writer, the spool's hash) was most of what
// the commit path allocated.
func copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(dst, src, *bp)
}
