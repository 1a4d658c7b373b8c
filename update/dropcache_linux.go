package update

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to drop n bytes at off of f, written and
// synced, from the page cache (best effort).
func dropCache(f *os.File, off, n int64) {
	unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
}
