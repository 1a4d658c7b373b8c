//go:build linux

package netstack

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/link/stopfd"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
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
// goes several times faster (bench/README.md).
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
	stop *stopfd.StopFD
	done chan struct{}

	rxGSO, droppedGSO, badCsum atomic.Uint64
}

// virtio_net_hdr (linux/virtio_net.h): flags, gso_type, hdr_len, gso_size,
// csum_start, csum_offset.
const (
	vnetHdrLen        = 10
	vnetNeedsCsum     = 1
	vnetGSONone       = 0
	vnetGSOTCPv4      = 1
	vnetGSOTCPv6      = 4
	vnetGSOECN        = 0x80
	vnetFrameMax      = 1<<16 + header.EthernetMinimumSize
	vnetFramesPerRead = 8
)

func newVnetReceiver(fd int, mac tcpip.LinkAddress, child stack.LinkEndpoint, closed func(tcpip.Error)) *vnetReceiver {
	r := &vnetReceiver{fd: fd, mac: mac, closed: closed}
	r.Endpoint.Init(child, r)
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
	if r.stop != nil {
		r.stop.Stop()
		<-r.done
		unix.Close(r.stop.EFD)
		r.stop, r.done = nil, nil
	}
	if d == nil {
		return
	}
	sfd, err := stopfd.New()
	if err != nil {
		panic(fmt.Sprintf("netstack: eventfd for the link reader: %v", err))
	}
	r.stop, r.done = &sfd, make(chan struct{})
	go r.read(d, sfd.EFD, r.done)
}

// read is the reader goroutine.
func (r *vnetReceiver) read(d stack.NetworkDispatcher, efd int, done chan struct{}) {
	defer close(done)
	hdrs := make([][vnetHdrLen]byte, vnetFramesPerRead)
	bufs := make([][]byte, vnetFramesPerRead)
	iovs := make([][2]unix.Iovec, vnetFramesPerRead)
	msgs := make([]rawfile.MMsgHdr, vnetFramesPerRead)
	for i := range msgs {
		bufs[i] = make([]byte, vnetFrameMax)
		iovs[i][0].Base = &hdrs[i][0]
		iovs[i][0].SetLen(vnetHdrLen)
		iovs[i][1].Base = &bufs[i][0]
		iovs[i][1].SetLen(vnetFrameMax)
		msgs[i].Msg.Iov = &iovs[i][0]
		msgs[i].Msg.SetIovlen(2)
	}
	for {
		n, errno := rawfile.BlockingRecvMMsgUntilStopped(efd, r.fd, msgs)
		if n == -1 {
			return // stopped
		}
		if errno != 0 {
			if errno == unix.EINTR || errno == unix.EAGAIN {
				continue
			}
			if r.closed != nil {
				r.closed(tcpip.TranslateErrno(errno))
			}
			return // the socket is gone
		}
		for i := 0; i < n; i++ {
			size := int(msgs[i].Len) - vnetHdrLen
			msgs[i].Len = 0
			if size < header.EthernetMinimumSize || msgs[i].Msg.Flags&unix.MSG_TRUNC != 0 {
				continue
			}
			r.deliver(d, hdrs[i], bufs[i][:size])
		}
	}
}

// deliver hands one frame to the stack.
func (r *vnetReceiver) deliver(d stack.NetworkDispatcher, vh [vnetHdrLen]byte, frame []byte) {
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
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	defer pkt.DecRef()
	if _, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize); !ok {
		return
	}
	pkt.NetworkProtocolNumber = eth.Type()
	d.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
}
