//go:build linux

package netstacktest

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolIoctl issues SIOCETHTOOL with val as the ethtool command block.
func ethtoolIoctl(fd int, ifr *unix.Ifreq, val *[2]uint32) error {
	// struct ifreq { char name[IFNAMSIZ]; union { void *data; ... } }
	var raw struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [24 - unsafe.Sizeof(uintptr(0))]byte
	}
	name := ifr.Name()
	copy(raw.name[:unix.IFNAMSIZ-1], name)
	raw.data = unsafe.Pointer(val)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&raw)))
	runtime.KeepAlive(&raw)
	runtime.KeepAlive(val)
	if errno != 0 {
		return fmt.Errorf("SIOCETHTOOL on %s: %w", name, errno)
	}
	return nil
}
