//go:build !unix

package store

import (
	"io"
	"os"
)

// mapIdx reads f into memory where there is no mmap.
func mapIdx(f *os.File) (data []byte, unmap func(), err error) {
	data, err = io.ReadAll(f)
	return data, func() {}, err
}
