//go:build linux

package netstack

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Link is an open network link (an AF_PACKET socket on an interface, or a
// TAP device) that a Stack runs on. A Stack takes ownership of the Link it
// is given and closes it on Close; a Link that was never handed to a Stack
// must be closed by its opener.
//
// The kernel resources behind a Link belong to the network namespace that
// was current on the calling OS thread when it was opened, so a test can
// open one inside another namespace (see package netstacktest).
type Link struct {
	kind LinkKind
	name string
	fd   int
	mac  net.HardwareAddr // the netstack's MAC address on this link
	mtu  uint32
	gso  bool // frames carry a virtio-net header (PACKET_VNET_HDR)
	// txfd is a second AF_PACKET socket on the interface that only sends
	// (vnetrx.go); -1 if there is none.
	txfd  int
	notes []error // problems opening the link that did not stop it; New logs them
	close sync.Once
}

// Kind returns the kind of the link.
func (l *Link) Kind() LinkKind { return l.kind }

// Name returns the name of the interface.
func (l *Link) Name() string { return l.name }

// MAC returns the hardware address the netstack uses on the link.
func (l *Link) MAC() net.HardwareAddr { return l.mac }

// MTU returns the link's MTU.
func (l *Link) MTU() int { return int(l.mtu) }

// Close closes the link's file descriptor. It is safe to call more than
// once.
func (l *Link) Close() error {
	var err error
	l.close.Do(func() {
		err = unix.Close(l.fd)
		if l.txfd >= 0 {
			unix.Close(l.txfd)
		}
	})
	return err
}

// quiesce makes the kernel stop queueing frames for the link. gVisor's
// reader goroutine looks at its stop signal only when it finds the queue
// empty, so under a steady flood of frames a Stack's Close would wait for
// it forever; with nothing new queued it drains the queue and stops.
func (l *Link) quiesce() error {
	if l.kind == KindTAP {
		// Only frames to 00:00:00:00:00:00, that is none.
		return tapFilter(l.fd, make(net.HardwareAddr, 6), false)
	}
	return dropAll(l.fd)
}

// dropAll attaches a socket filter that drops every frame.
func dropAll(fd int) error {
	drop := []unix.SockFilter{{Code: 0x06, K: 0}} // BPF_RET|BPF_K 0
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop[0]})
}

// OpenLink opens the link that spec names (see ParseSpec).
func OpenLink(spec string) (*Link, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	switch s.Kind {
	case KindTAP:
		return OpenTAP(s.Name)
	default:
		return OpenPacket(s.Name)
	}
}

// socketRcvBuf is the receive buffer asked for on AF_PACKET sockets.
// The kernel default (~200 KiB) holds about 140 full-size frames; a burst
// from a 1 Gbit/s peer while the dispatcher goroutine is descheduled on a
// small board overflows it and costs retransmits. 4 MiB holds ~30 ms at
// 1 Gbit/s.
const socketRcvBuf = 4 << 20

// socketSndBuf is the send buffer asked for on AF_PACKET sockets. gVisor
// writes frames without blocking and drops a frame when the socket's
// buffer is full, which TCP then has to retransmit; the kernel default
// (~200 KiB) fills within one burst of a bulk transfer.
const socketSndBuf = 4 << 20

// OpenPacket brings the named interface up without giving the kernel an
// address, disables the kernel's IPv6 on it (so the kernel neither claims
// the link-local address the netstack will use nor answers neighbour
// solicitations), turns off the NIC's receive offloads that would hand
// it merged frames (GRO, LRO, checksum offload), and binds an AF_PACKET
// socket to it. The netstack uses the interface's own MAC address.
//
// The interface must be unused by the kernel: OpenPacket fails with
// ErrInterfaceInUse if the kernel has an address on it other than an
// IPv6 link-local one.
func OpenPacket(ifname string) (l *Link, err error) {
	if err := checkIfName(ifname); err != nil {
		return nil, fmt.Errorf("netstack: open packet link: %w", err)
	}
	ifc, err := interfaceInfo(ifname)
	if err != nil {
		return nil, fmt.Errorf("netstack: open packet link %s: %w", ifname, err)
	}
	// The netstack takes the interface over, sharing its MAC address: a
	// kernel still using it (a host's own eth0) would answer for it too,
	// and lose its IPv6 below.
	if a, ok := kernelAddress(ifname); ok {
		return nil, fmt.Errorf("netstack: open packet link %s: %w: the kernel has address %s on it", ifname, ErrInterfaceInUse, a)
	}
	// Best effort: a kernel built without IPv6 has no such file.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/disable_ipv6", []byte("1\n"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("netstack: open packet link %s: disable kernel IPv6: %w", ifname, err)
	}
	notes := rawReceive(ifname)
	if err := setUp(ifname); err != nil {
		return nil, fmt.Errorf("netstack: open packet link %s: %w", ifname, err)
	}

	// Protocol 0: the socket receives nothing until it is bound, so no
	// frame from another interface slips in before the filter and bind.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netstack: open packet link %s: socket: %w", ifname, err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	if err := attachMACFilter(fd, ifc.HardwareAddr); err != nil {
		return nil, fmt.Errorf("netstack: open packet link %s: %w", ifname, err)
	}
	// Our own transmitted frames would otherwise be looped back to us.
	// The filter drops them too; this saves the copies. (Optional: Linux
	// 4.20 and later; qemu-user does not translate it.)
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		notes = append(notes, fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err))
	}
	// The kernel joins no multicast groups on the interface (its IPv6 is
	// off), so a NIC with a multicast filter would drop NDP and MLD traffic
	// the netstack needs: ask for all multicast.
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &unix.PacketMreq{
		Ifindex: int32(ifc.Index),
		Type:    unix.PACKET_MR_ALLMULTI,
	}); err != nil {
		notes = append(notes, fmt.Errorf("PACKET_MR_ALLMULTI: %w", err))
	}
	// SO_RCVBUFFORCE needs CAP_NET_ADMIN, which opening an AF_PACKET socket
	// already required; fall back to the capped SO_RCVBUF.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketRcvBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketRcvBuf)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketSndBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketSndBuf)
	}
	// A virtio-net header on each frame lets the netstack hand the kernel
	// TCP segments of up to 64 KiB for it to cut into frames (GSO), as
	// gVisor's runsc does: one pass through the stack and one system
	// call per 45 frames instead of one per frame. Without it (qemu-user
	// does not translate the option) the stack sends frame by frame.
	gso := true
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		notes = append(notes, fmt.Errorf("PACKET_VNET_HDR (no GSO): %w", err))
		gso = false
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
		return nil, fmt.Errorf("netstack: open packet link %s: bind: %w", ifname, err)
	}
	txfd := -1
	if gso {
		// Opened here, in the interface's network namespace.
		if txfd, err = openTXSocket(ifc.Index); err != nil {
			return nil, fmt.Errorf("netstack: open packet link %s: %w", ifname, err)
		}
	}
	return &Link{
		kind:  KindPacket,
		name:  ifname,
		fd:    fd,
		txfd:  txfd,
		mac:   ifc.HardwareAddr,
		mtu:   uint32(ifc.MTU),
		gso:   gso,
		notes: notes,
	}, nil
}

// OpenTAP opens the TAP device name through /dev/net/tun, creating it if it
// does not exist (a device created here disappears when the Link is
// closed; one created beforehand with `ip tuntap add` stays), and brings it
// up. The netstack gets its own MAC address, derived from the device name
// so that it is stable across restarts (a DHCP server on the host side
// then hands out the same lease). The host side's addresses, if any, are
// the caller's business.
func OpenTAP(name string) (l *Link, err error) {
	if err := checkIfName(name); err != nil {
		return nil, fmt.Errorf("netstack: open tap: %w", err)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netstack: open tap %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("netstack: open tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("netstack: open tap %s: TUNSETIFF: %w", name, err)
	}
	mac := tapMAC(name)
	if err := setTAPFilter(fd, mac); err != nil {
		return nil, fmt.Errorf("netstack: open tap %s: %w", name, err)
	}
	if err := setUp(name); err != nil {
		return nil, fmt.Errorf("netstack: open tap %s: %w", name, err)
	}
	ifc, err := interfaceInfo(name)
	if err != nil {
		return nil, fmt.Errorf("netstack: open tap %s: %w", name, err)
	}
	return &Link{
		kind: KindTAP,
		name: name,
		fd:   fd,
		txfd: -1,
		mac:  mac,
		mtu:  uint32(ifc.MTU),
	}, nil
}

// tapMAC derives a locally administered unicast MAC address from name.
func tapMAC(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("nymote netstack tap " + name))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	return mac
}

// setUp sets IFF_UP on the interface.
func setUp(ifname string) error {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up: %w", err)
	}
	defer unix.Close(sock)
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return fmt.Errorf("bring up: %w", err)
	}
	if err := unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up: SIOCGIFFLAGS: %w", err)
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(sock, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up: SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// attachMACFilter attaches a classic BPF filter to an AF_PACKET socket that
// passes only whole Ethernet frames addressed to mac or to a group
// (multicast or broadcast) address, and not sent from mac.
//
// The filter is needed for correctness, not only speed: gVisor's readv
// packet dispatcher (the one used on 32-bit platforms, see dispatchMode)
// stops for good when it reads a frame shorter than an Ethernet header or
// one addressed to another station, which a switch flooding unknown
// unicast delivers in normal operation. Dropping frames from our own
// address keeps our own multicast (duplicate address detection above
// all) from coming back to us where PACKET_IGNORE_OUTGOING is missing.
func attachMACFilter(fd int, mac net.HardwareAddr) error {
	prog, err := bpf.Assemble(macFilter(mac))
	if err != nil {
		return fmt.Errorf("assemble BPF filter: %w", err)
	}
	raw := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		raw[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(raw)), Filter: &raw[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("attach BPF filter: %w", err)
	}
	runtime.KeepAlive(raw)
	return nil
}

// macFilter is the program attachMACFilter attaches.
func macFilter(mac net.HardwareAddr) []bpf.Instruction {
	hi, lo := be32(mac[0:4]), uint32(mac[4])<<8|uint32(mac[5])
	return []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtLen},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpLessThan, Val: 14, SkipTrue: 10}, // short: drop
		/* 2 */ bpf.LoadAbsolute{Off: 6, Size: 4}, // src[0:4]
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: hi, SkipTrue: 2},
		/* 4 */ bpf.LoadAbsolute{Off: 10, Size: 2}, // src[4:6]
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: lo, SkipTrue: 6}, // from us: drop
		/* 6 */ bpf.LoadAbsolute{Off: 0, Size: 1}, // dst[0]
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 1, SkipTrue: 5}, // group: accept
		/* 8 */ bpf.LoadAbsolute{Off: 0, Size: 4}, // dst[0:4]
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: hi, SkipTrue: 2}, // not us: drop
		/* 10 */ bpf.LoadAbsolute{Off: 4, Size: 2}, // dst[4:6]
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: lo, SkipTrue: 1}, // us: accept
		/* 12 */ bpf.RetConstant{Val: 0}, // drop
		/* 13 */ bpf.RetConstant{Val: 0x40000}, // accept
	}
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// setTAPFilter makes the TAP driver pass only frames addressed to mac or to
// a group address, for the same reason as attachMACFilter: TAP devices are
// read with gVisor's readv dispatcher on every platform.
func setTAPFilter(fd int, mac net.HardwareAddr) error {
	return tapFilter(fd, mac, true)
}

// tapFilter sets the TAP driver's filter to pass frames to mac and, if
// allMulti, to group addresses.
func tapFilter(fd int, mac net.HardwareAddr, allMulti bool) error {
	// struct tun_filter { __u16 flags; __u16 count; __u8 addr[][ETH_ALEN]; }
	var f [10]byte
	if allMulti {
		binary.NativeEndian.PutUint16(f[0:], tunFltAllMulti)
	}
	binary.NativeEndian.PutUint16(f[2:], 1)
	copy(f[4:], mac)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETTXFILTER, uintptr(unsafe.Pointer(&f[0]))); errno != 0 {
		return fmt.Errorf("TUNSETTXFILTER: %w", errno)
	}
	return nil
}

// tunFltAllMulti is TUN_FLT_ALLMULTI from linux/if_tun.h.
const tunFltAllMulti = 0x0001

// htons converts v to network byte order.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
