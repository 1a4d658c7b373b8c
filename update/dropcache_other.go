//go:build !linux

package update

import "os"

// dropCache does nothing where there is no posix_fadvise to call.
func dropCache(f *os.File, off, n int64) {}
