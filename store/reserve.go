package store

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The reserve: data writes (new mail, new objects a service is handed from
// outside) stop while the free space on the store's file system is below
// it, so that the store can always write its own records (a mailbox's
// metadata, a flag change, the commit log of a deletion that frees space)
// and the appliance is never stuck on a disk that data filled to the last
// block. The store does not know what is data: callers ask (CheckSpace),
// and Spool and PutBlobSpool, which carry the large blobs, check by
// themselves.

// ErrNoSpace: a data write was refused because the free space on the
// store's file system is below the reserve. It is temporary: deleting data
// (or growing the disk) ends it.
var ErrNoSpace = errors.New("store: the data disk is full")

const (
	reserveMin      = 64 << 20
	reservePercent  = 5
	reserveMaxShare = 4 // never more than a quarter of a small disk
)

// reserveFor is the reserve of a file system of total bytes under opts.
func reserveFor(opts Options, total uint64) uint64 {
	switch {
	case opts.Reserve < 0:
		return 0
	case opts.Reserve > 0:
		return uint64(opts.Reserve)
	}
	r := max(uint64(reserveMin), total*reservePercent/100)
	return min(r, total/reserveMaxShare)
}

// statFS returns the bytes available to the store and the size of its file
// system.
func statFS(path string) (avail, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// CheckSpace reports whether need more bytes of data fit on the store's
// file system above the reserve (Options.Reserve): nil if they do, an
// error wrapping ErrNoSpace that says how much is free if they do not.
func (s *Store) CheckSpace(need int64) error {
	if s.opts.Reserve < 0 {
		return nil
	}
	fsStat := statFS
	if s.opts.statFS != nil {
		fsStat = s.opts.statFS
	}
	avail, total, err := fsStat(s.path)
	if err != nil {
		return fmt.Errorf("store: free space of %s: %w", s.path, err)
	}
	reserve := reserveFor(s.opts, total)
	if need < 0 {
		need = 0
	}
	if avail < reserve || avail-reserve < uint64(need) {
		wanted := ""
		if need > 0 {
			wanted = fmt.Sprintf(", %d MiB more wanted", (uint64(need)+(1<<20)-1)>>20)
		}
		return fmt.Errorf("%w: %d MiB free, %d MiB kept for the store's own records%s",
			ErrNoSpace, avail>>20, reserve>>20, wanted)
	}
	return nil
}
