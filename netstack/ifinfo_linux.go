//go:build linux

package netstack

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifInfo is what opening a link needs to know of an interface.
type ifInfo struct {
	Index        int
	HardwareAddr net.HardwareAddr
	MTU          int
}

// interfaceInfo reads an interface's index, hardware address and MTU with
// three ioctls. It does what net.InterfaceByName does for us, which dumps
// every interface over netlink and parses the dump: at an appliance's
// boot under QEMU's TCG, where code that runs for the first time is
// expensive, that took 17 to 30 ms; these take a few.
func interfaceInfo(name string) (ifInfo, error) {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ifInfo{}, err
	}
	defer unix.Close(sock)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return ifInfo{}, err
	}
	if err := unix.IoctlIfreq(sock, unix.SIOCGIFINDEX, ifr); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return ifInfo{}, errors.New("no such network interface")
		}
		return ifInfo{}, fmt.Errorf("SIOCGIFINDEX: %w", err)
	}
	info := ifInfo{Index: int(int32(ifr.Uint32()))}
	if err := unix.IoctlIfreq(sock, unix.SIOCGIFMTU, ifr); err != nil {
		return ifInfo{}, fmt.Errorf("SIOCGIFMTU: %w", err)
	}
	info.MTU = int(int32(ifr.Uint32()))
	// struct ifreq with its union as a struct sockaddr (ifr_hwaddr).
	var hw struct {
		name   [unix.IFNAMSIZ]byte
		family uint16
		data   [14]byte
		_      [8]byte // the rest of the union on 64-bit platforms
	}
	copy(hw.name[:unix.IFNAMSIZ-1], name)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(sock), unix.SIOCGIFHWADDR, uintptr(unsafe.Pointer(&hw))); errno != 0 {
		return ifInfo{}, fmt.Errorf("SIOCGIFHWADDR: %w", errno)
	}
	runtime.KeepAlive(&hw)
	if hw.family != unix.ARPHRD_ETHER {
		return ifInfo{}, fmt.Errorf("not an Ethernet interface (hardware type %d)", hw.family)
	}
	info.HardwareAddr = net.HardwareAddr(bytes.Clone(hw.data[:6]))
	return info, nil
}

// kernelAddress returns an address the kernel has on the interface other
// than a link-local one, if it has any: its primary IPv4 address
// (SIOCGIFADDR), or an IPv6 address of wider scope than the link
// (/proc/net/if_inet6 of the calling thread's network namespace).
func kernelAddress(name string) (netip.Addr, bool) {
	if a, ok := kernelIPv4(name); ok {
		return a, true
	}
	// Lines of "ADDRESS IFINDEX PREFIXLEN SCOPE FLAGS NAME", in hex;
	// no such file without IPv6.
	b, err := os.ReadFile("/proc/thread-self/net/if_inet6")
	if err != nil {
		return netip.Addr{}, false
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) != 6 || string(f[5]) != name || len(f[0]) != 32 {
			continue
		}
		if scope, err := strconv.ParseUint(string(f[3]), 16, 8); err == nil && scope == 0x20 { // IPV6_ADDR_LINKLOCAL
			continue
		}
		var a [16]byte
		for i := range a {
			v, err := strconv.ParseUint(string(f[0][2*i:2*i+2]), 16, 8)
			if err != nil {
				break
			}
			a[i] = byte(v)
		}
		return netip.AddrFrom16(a), true
	}
	return netip.Addr{}, false
}

// kernelIPv4 returns the interface's primary IPv4 address, unless it has
// none or a link-local one.
func kernelIPv4(name string) (netip.Addr, bool) {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return netip.Addr{}, false
	}
	defer unix.Close(sock)
	ifr, err := unix.NewIfreq(name)
	if err != nil || unix.IoctlIfreq(sock, unix.SIOCGIFADDR, ifr) != nil {
		return netip.Addr{}, false
	}
	ip, err := ifr.Inet4Addr()
	if err != nil {
		return netip.Addr{}, false
	}
	a := netip.AddrFrom4([4]byte(ip))
	return a, !a.IsLinkLocalUnicast()
}
