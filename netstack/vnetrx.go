//go:build linux

package netstack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// vnetReceiver reads the frames of an AF_PACKET link whose socket has
// PACKET_VNET_HDR, using the virtio-net header the kernel puts before each
// frame, which gVisor's fdbased readers skip unread:
//
//   - a frame the kernel built and left for checksum offload to finish
//     (NEEDS_CSUM: from a peer on the same host, such as a veth's other end
//     or a VM's host, with transmit checksum offload on) gets its checksum
//     finished here, as the kernel would before handing it to a raw
//     socket's reader that cannot offload; the stack then checks every
//     checksum of every frame, as before;
//   - a TCP segment the kernel left unsegmented (GSO TCPv4/TCPv6, up to
//     64 KiB: a local peer with TSO) goes through the stack once, not as
//     45 frames. Other GSO kinds (UDP) are dropped and counted.
//
// So a peer keeps its transmit checksum offload and TSO, which before had
// to be off for the netstack to see correct checksums, and bulk receive
// goes several times faster (bench/netstack, 2026-11-26; in the git
// history of bench/README.md).
//
// gVisor's fdbased endpoint keeps sending (with host GSO), on a second
// AF_PACKET socket that receives nothing.
type vnetReceiver struct {
	nested.Endpoint
	fd  int
	mac tcpip.LinkAddress
	// closed is called if the reader stops on an error (the socket went
	// away), as fdbased's ClosedFunc.
	closed func(tcpip.Error)

	mu   sync.Mutex
	file *os.File // the socket as the reader polls it (see pollable)
	done chan struct{}

	// gro coalesces the TCP segments of one read (see read); only the
	// reader goroutine uses it.
	gro gro.GRO

	rxGSO, droppedGSO, badCsum atomic.Uint64
}

// virtio_net_hdr (linux/virtio_net.h): flags, gso_type, hdr_len, gso_size,
// csum_start, csum_offset.
const (
	vnetHdrLen    = 10
	vnetNeedsCsum = 1
	vnetGSONone   = 0
	vnetGSOTCPv4  = 1
	vnetGSOTCPv6  = 4
	vnetGSOECN    = 0x80
	vnetFrameMax  = 1<<16 + header.EthernetMinimumSize
	// vnetFramesPerRead is how many frames one recvmmsg may take. Under
	// bulk receive from a peer without TSO the socket always has a
	// backlog and every read fills: 32 frames per system call and per
	// GRO batch instead of 8 cut the CPU time per MiB received by a
	// quarter (bench/netstack, 2026-11-26; in the git history of
	// bench/README.md). It costs 2 MiB of buffers, each big
	// enough for an unsegmented 64 KiB TCP segment.
	vnetFramesPerRead = 32
)

func newVnetReceiver(fd int, mac tcpip.LinkAddress, child stack.LinkEndpoint, closed func(tcpip.Error)) *vnetReceiver {
	r := &vnetReceiver{fd: fd, mac: mac, closed: closed}
	r.Endpoint.Init(child, r)
	r.gro.Init(true)
	return r
}

// openTXSocket opens the sending socket for fdbased: an AF_PACKET socket
// on the interface with virtio-net headers, which receives nothing. The
// filter is attached before the bind, so no frame is ever queued on it.
func openTXSocket(ifindex int) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("transmit socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("transmit socket: PACKET_VNET_HDR: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketSndBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketSndBuf)
	}
	// It receives nothing: a filter drops every frame. (Bound with
	// protocol 0 it would receive nothing either, but the kernel would
	// then send our frames with protocol 0, and a peer drops them.)
	if err := dropAll(fd); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("transmit socket: filter: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("transmit socket: bind: %w", err)
	}
	return fd, nil
}

// Attach implements stack.LinkEndpoint: with a dispatcher it starts the
// reader; with nil (the NIC is being removed) it stops it and waits.
func (r *vnetReceiver) Attach(d stack.NetworkDispatcher) {
	r.Endpoint.Attach(d)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.file != nil {
		// A deadline in the past wakes the parked reader, and fails
		// its next read even while frames keep arriving.
		r.file.SetReadDeadline(time.Unix(1, 0))
		<-r.done
		r.file.Close()
		r.file, r.done = nil, nil
	}
	if d == nil {
		return
	}
	f, rc, err := pollable(r.fd)
	if err != nil {
		if r.closed != nil {
			r.closed(tcpip.TranslateErrno(errnoOf(err)))
		}
		return
	}
	r.file, r.done = f, make(chan struct{})
	go r.read(d, rc, r.done)
}

// pollable returns a duplicate of the socket fd, non-blocking and
// registered with the Go runtime's network poller, and its RawConn.
//
// The reader waits for frames on the poller (epoll) rather than in a
// blocking ppoll of its own, as gVisor's readers do: a goroutine parked on
// the poller costs the scheduler nothing, while a thread blocked in a
// system call holds its P until the runtime's monitor hands the P to
// another thread, and wakes to find no P free. On the connection-rate
// benchmark that hand-off was a tenth of the CPU time (bench/netstack,
// 2026-11-26; in the git history of bench/README.md).
//
// The duplicate shares the socket (and its O_NONBLOCK flag, which no one
// else minds: fdbased sends on a socket of its own) and is closed when the
// reader stops; Link.Close closes the original.
func pollable(fd int) (*os.File, syscall.RawConn, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("dup: %w", err)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, nil, fmt.Errorf("non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(nfd), "packet")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, rc, nil
}

func errnoOf(err error) unix.Errno {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return unix.EIO
}

// mmsghdr is struct mmsghdr, laid out for the platform: unlike gVisor's
// rawfile.MMsgHdr (sized for 64-bit), it is also right on 32-bit ARM.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// recvmmsg reads up to len(msgs) frames without blocking.
func recvmmsg(fd uintptr, msgs []mmsghdr) (int, unix.Errno) {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
		if errno != unix.EINTR {
			return int(n), errno
		}
	}
}

// rxBatch holds the buffers of one recvmmsg: up to n frames, each after
// its virtio-net header.
type rxBatch struct {
	hdrs [][vnetHdrLen]byte
	bufs [][]byte
	iovs [][2]unix.Iovec
	msgs []mmsghdr
}

func newRxBatch(n int) *rxBatch {
	b := &rxBatch{
		hdrs: make([][vnetHdrLen]byte, n),
		bufs: make([][]byte, n),
		iovs: make([][2]unix.Iovec, n),
		msgs: make([]mmsghdr, n),
	}
	for i := range b.msgs {
		b.bufs[i] = make([]byte, vnetFrameMax)
		b.iovs[i][0].Base = &b.hdrs[i][0]
		b.iovs[i][0].SetLen(vnetHdrLen)
		b.iovs[i][1].Base = &b.bufs[i][0]
		b.iovs[i][1].SetLen(vnetFrameMax)
		b.msgs[i].hdr.Iov = &b.iovs[i][0]
		b.msgs[i].hdr.SetIovlen(2)
	}
	return b
}

// frame returns the virtio-net header and frame of message i of a read,
// or false for a message to skip: truncated, or too short to hold a
// virtio-net and an Ethernet header.
func (b *rxBatch) frame(i int) ([vnetHdrLen]byte, []byte, bool) {
	m := &b.msgs[i]
	size := int(m.len) - vnetHdrLen
	trunc := m.hdr.Flags&unix.MSG_TRUNC != 0
	m.len, m.hdr.Flags = 0, 0
	if size < header.EthernetMinimumSize || trunc {
		return [vnetHdrLen]byte{}, nil, false
	}
	return b.hdrs[i], b.bufs[i][:size], true
}

// read is the reader goroutine.
func (r *vnetReceiver) read(d stack.NetworkDispatcher, rc syscall.RawConn, done chan struct{}) {
	defer close(done)
	b := newRxBatch(vnetFramesPerRead)
	r.gro.Dispatcher = groOut{d}
	for {
		var (
			n     int
			errno unix.Errno
		)
		err := rc.Read(func(fd uintptr) bool {
			n, errno = recvmmsg(fd, b.msgs)
			return errno != unix.EAGAIN
		})
		if err != nil {
			return // stopped
		}
		if errno != 0 {
			if r.closed != nil {
				r.closed(tcpip.TranslateErrno(errno))
			}
			return // the socket is gone
		}
		// The frames of one read that continue one TCP stream go
		// through the stack as one segment (gVisor's GRO, as Linux
		// does in NAPI): a peer without TSO, a wire, sends 1500-byte
		// frames, and each pass through IP, the demultiplexer and the
		// TCP processor costs more than the copy.
		for i := 0; i < n; i++ {
			if vh, frame, ok := b.frame(i); ok {
				r.deliver(vh, frame)
			}
		}
		r.gro.Flush()
	}
}

// deliver hands one frame to the stack.
func (r *vnetReceiver) deliver(vh [vnetHdrLen]byte, frame []byte) {
	switch vh[1] &^ vnetGSOECN {
	case vnetGSONone:
	case vnetGSOTCPv4, vnetGSOTCPv6:
		r.rxGSO.Add(1)
	default:
		r.droppedGSO.Add(1)
		return
	}
	eth := header.Ethernet(frame)
	if dst := eth.DestinationAddress(); dst != r.mac && dst[0]&1 == 0 {
		return
	}
	if vh[0]&vnetNeedsCsum != 0 {
		// Finish the checksum the sender left to offload, as the
		// kernel's skb_checksum_help does: the field holds the
		// pseudo-header's sum, and the sum from csum_start on, folded
		// and complemented, replaces it.
		start := int(binary.LittleEndian.Uint16(vh[6:]))
		field := start + int(binary.LittleEndian.Uint16(vh[8:]))
		if start < header.EthernetMinimumSize || field+2 > len(frame) {
			r.badCsum.Add(1)
			return
		}
		binary.BigEndian.PutUint16(frame[field:], ^checksum.Checksum(frame[start:], 0))
	}
	// The packet starts at the network header; the Ethernet header is
	// left out, not consumed as a link header. gVisor's GRO checks a TCP
	// checksum from an offset that PacketData.ChecksumAtOffset counts
	// from the start of the whole buffer, not from the network header:
	// with the Ethernet header in the buffer every checksum it checks
	// comes out wrong, and it merges nothing. Nothing above the link
	// reads a received packet's Ethernet header (the stack has no packet
	// endpoints).
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame[header.EthernetMinimumSize:])})
	defer pkt.DecRef()
	pkt.NetworkProtocolNumber = eth.Type()
	if vh[1] != vnetGSONone || !groEligible(pkt.NetworkProtocolNumber, frame[header.EthernetMinimumSize:]) {
		// GRO would pass it on at once, ahead of segments it holds;
		// keep the order of the wire. An unsegmented TCP segment
		// from a local peer is as big as GRO would make it: GRO would
		// only check its checksum and groOut redo it, two more passes
		// over 64 KiB.
		r.gro.Flush()
		r.gro.Dispatcher.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
		return
	}
	r.gro.Enqueue(pkt)
}

// groEligible reports whether GRO may hold and merge a packet: TCP over
// IPv4 without options or over IPv6 without extension headers, the only
// packets whose checksums groOut knows how to redo.
func groEligible(proto tcpip.NetworkProtocolNumber, b []byte) bool {
	switch proto {
	case header.IPv4ProtocolNumber:
		if len(b) < header.IPv4MinimumSize {
			return false
		}
		h := header.IPv4(b)
		return h.HeaderLength() == header.IPv4MinimumSize && h.Protocol() == uint8(header.TCPProtocolNumber)
	case header.IPv6ProtocolNumber:
		return len(b) >= header.IPv6MinimumSize && header.IPv6(b).NextHeader() == uint8(header.TCPProtocolNumber)
	}
	return false
}

// groOut passes GRO's packets on to the stack. A packet that GRO checked
// (it sets RXChecksumValidated after checking the IPv4 header's and the
// TCP checksum) may be several segments merged, with the first one's
// checksums and, over IPv4, a new total length: groOut computes both
// checksums afresh, so that the stack's own check passes. (The stack
// checks every packet again: the link does not claim receive checksum
// offload, so that packets GRO never sees, UDP and fragments above all,
// are still checked. gVisor's fdbased GRO relies on that claim.)
type groOut struct {
	stack.NetworkDispatcher
}

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (g groOut) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if pkt.RXChecksumValidated {
		redoChecksums(proto, pkt)
	}
	g.NetworkDispatcher.DeliverNetworkPacket(proto, pkt)
}

// redoChecksums sets the IPv4 header checksum and the TCP checksum of a
// packet that holds TCP over IPv4 without options or over IPv6 without
// extension headers (groEligible).
func redoChecksums(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	ipLen := header.IPv4MinimumSize
	if proto == header.IPv6ProtocolNumber {
		ipLen = header.IPv6MinimumSize
	}
	b, ok := pkt.Data().PullUp(ipLen + header.TCPMinimumSize)
	if !ok {
		return
	}
	tcpOff := int(header.TCP(b[ipLen:]).DataOffset())
	if b, ok = pkt.Data().PullUp(ipLen + tcpOff); !ok || tcpOff < header.TCPMinimumSize {
		return
	}
	var src, dst tcpip.Address
	if proto == header.IPv4ProtocolNumber {
		h := header.IPv4(b)
		if h.IsChecksumValid() {
			// GRO merged nothing into it: a merge changes the total
			// length and leaves the header checksum wrong.
			return
		}
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
		src, dst = h.SourceAddress(), h.DestinationAddress()
	} else {
		h := header.IPv6(b)
		src, dst = h.SourceAddress(), h.DestinationAddress()
	}
	t := header.TCP(b[ipLen:])
	tcpLen := pkt.Data().Size() - ipLen
	// The buffer starts at the network header (see deliver), so the
	// offset ChecksumAtOffset counts from the buffer's start is right.
	sum := checksum.Combine(header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tcpLen)), pkt.Data().ChecksumAtOffset(ipLen+tcpOff))
	t.SetChecksum(0)
	t.SetChecksum(^t.CalculateChecksum(sum))
}
