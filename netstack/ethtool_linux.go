//go:build linux

package netstack

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtool commands and flags from linux/ethtool.h.
const (
	ethtoolGRXCSUM = 0x14
	ethtoolSRXCSUM = 0x15
	ethtoolGFLAGS  = 0x25
	ethtoolSFLAGS  = 0x26
	ethtoolGGRO    = 0x2b
	ethtoolSGRO    = 0x2c
	ethFlagLRO     = 1 << 15
)

// ifreqData is struct ifreq with its union used as a pointer.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte // the rest of the union
}

// ethtool issues SIOCETHTOOL with an ethtool_value {cmd, data} on the
// interface ifname and returns the data the kernel leaves in it.
func ethtool(sock int, ifname string, cmd, data uint32) (uint32, error) {
	val := [2]uint32{cmd, data}
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	ifr.data = unsafe.Pointer(&val)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(sock), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	runtime.KeepAlive(&val)
	if errno != 0 {
		return 0, errno
	}
	return val[1], nil
}

// errRXCsumOn marks rawReceive's note that receive checksum offload
// stays on (virtio-net cannot turn it off). It is harmless on a link
// read with virtio-net headers: the vnetReceiver finishes the checksums
// the host left partial.
var errRXCsumOn = errors.New("receive checksum offload stays on")

// rawReceive turns off the receive offloads that hand a raw AF_PACKET
// reader frames other than those on the wire: GRO and LRO merge TCP
// segments into one large frame whose TCP checksum covers only the
// pseudo-header, and receive checksum offload lets a virtio-net host send
// frames with partial checksums. gVisor verifies every checksum itself
// and would drop such frames. Features a driver does not have, or cannot
// change, are skipped; the problems are returned for logging.
func rawReceive(ifname string) []error {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return []error{err}
	}
	defer unix.Close(sock)
	var errs []error
	off := func(name string, get, set uint32) error {
		v, err := ethtool(sock, ifname, get, 0)
		if err != nil || v == 0 {
			return nil // no such feature, or already off
		}
		if _, err := ethtool(sock, ifname, set, 0); err != nil {
			return fmt.Errorf("turn off %s on %s: %w", name, ifname, err)
		}
		return nil
	}
	if err := off("GRO", ethtoolGGRO, ethtoolSGRO); err != nil {
		errs = append(errs, err)
	}
	if err := off("receive checksum offload", ethtoolGRXCSUM, ethtoolSRXCSUM); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", errRXCsumOn, err))
	}
	if flags, err := ethtool(sock, ifname, ethtoolGFLAGS, 0); err == nil && flags&ethFlagLRO != 0 {
		if _, err := ethtool(sock, ifname, ethtoolSFLAGS, flags&^ethFlagLRO); err != nil {
			errs = append(errs, fmt.Errorf("turn off LRO on %s: %w", ifname, err))
		}
	}
	return errs
}
