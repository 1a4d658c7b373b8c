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
	// struct ifreq { char name[16]; union { void *data; ... } }
	var raw [40]byte
	name := ifr.Name()
	copy(raw[:unix.IFNAMSIZ-1], name)
	*(*uintptr)(unsafe.Pointer(&raw[unix.IFNAMSIZ])) = uintptr(unsafe.Pointer(val))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&raw[0])))
	runtime.KeepAlive(val)
	if errno != 0 {
		return fmt.Errorf("SIOCETHTOOL on %s: %w", name, errno)
	}
	return nil
}
