//go:build linux

package netstack

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestMMsgHdrLayout: struct mmsghdr is a msghdr and an unsigned int,
// padded to the pointer size: 64 bytes on 64-bit, 32 on 32-bit ARM
// (where gVisor's rawfile.MMsgHdr is 36 and recvmmsg fails).
func TestMMsgHdrLayout(t *testing.T) {
	want := uintptr(64)
	if unsafe.Sizeof(uintptr(0)) == 4 {
		want = 32
	}
	if got := unsafe.Sizeof(mmsghdr{}); got != want {
		t.Errorf("sizeof(mmsghdr) = %d, want %d", got, want)
	}
	if got, want := unsafe.Offsetof(mmsghdr{}.len), unsafe.Sizeof(unix.Msghdr{}); got != want {
		t.Errorf("offsetof(mmsghdr.len) = %d, want %d", got, want)
	}
}

// recorder is a NetworkDispatcher that keeps the payloads it is given.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
	got    chan struct{}
}

func (r *recorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	r.mu.Lock()
	r.frames = append(r.frames, pkt.Data().AsRange().ToSlice())
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
}

func (r *recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames)
}

// TestVnetReaderGarbage feeds the reader, through a datagram socket pair
// standing in for the AF_PACKET socket, messages that it must skip
// (shorter than a virtio-net and Ethernet header, truncated, UDP GSO, a
// checksum offset outside the frame, another station's address) between
// good frames, in batches bigger than one recvmmsg takes. It must deliver
// exactly the good frames, in order, and stop when detached, also while
// frames keep coming.
func TestVnetReaderGarbage(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	// Room for the oversized message below.
	if err := unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20); err != nil {
		t.Fatal(err)
	}
	mac := tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")
	r := newVnetReceiver(fds[1], mac, channel.New(1, 1500, mac), nil)
	rec := &recorder{got: make(chan struct{}, 1)}

	vnet := func(flags, gso byte, csumStart, csumOff uint16) []byte {
		h := make([]byte, vnetHdrLen)
		h[0], h[1] = flags, gso
		binary.LittleEndian.PutUint16(h[6:], csumStart)
		binary.LittleEndian.PutUint16(h[8:], csumOff)
		return h
	}
	frame := func(dst tcpip.LinkAddress, seq byte, size int) []byte {
		f := make([]byte, size)
		header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x02", DstAddr: dst, Type: header.IPv4ProtocolNumber})
		f[header.EthernetMinimumSize] = seq
		return f
	}
	send := func(parts ...[]byte) {
		var msg []byte
		for _, p := range parts {
			msg = append(msg, p...)
		}
		if err := unix.Send(fds[0], msg, 0); err != nil {
			t.Fatalf("send %d bytes: %v", len(msg), err)
		}
	}
	good := func(seq byte) { send(vnet(0, vnetGSONone, 0, 0), frame(mac, seq, 60)) }

	r.Attach(rec)
	var want []byte
	kinds := make(map[byte]uint64)
	for seq := byte(1); seq <= 3*vnetFramesPerRead; seq++ {
		good(seq)
		want = append(want, seq)
		kinds[seq%6]++
		switch seq % 6 {
		case 0:
			send([]byte{1, 2, 3}) // shorter than the virtio-net header
		case 1:
			send(vnet(0, vnetGSONone, 0, 0), make([]byte, header.EthernetMinimumSize-1)) // no whole Ethernet header
		case 2:
			send(vnet(0, vnetGSONone, 0, 0), frame(mac, 0xee, vnetFrameMax+100)) // truncated
		case 3:
			send(vnet(0, 5 /* UDP L4 */, 0, 0), frame(mac, 0xee, 60))
		case 4:
			send(vnet(vnetNeedsCsum, vnetGSONone, 34, 200), frame(mac, 0xee, 60)) // checksum field past the end
		case 5:
			send(vnet(0, vnetGSONone, 0, 0), frame("\x02\x00\x00\x00\x00\x09", 0xee, 60)) // another station
		}
	}
	deadline := time.After(10 * time.Second)
	for rec.count() < len(want) {
		select {
		case <-rec.got:
		case <-deadline:
			t.Fatalf("got %d frames, want %d", rec.count(), len(want))
		}
	}
	// Let any wrongly delivered frame after the last good one arrive.
	time.Sleep(50 * time.Millisecond)
	rec.mu.Lock()
	var got []byte
	for _, f := range rec.frames {
		got = append(got, f[0])
	}
	rec.mu.Unlock()
	if string(got) != string(want) {
		t.Errorf("delivered frames %v, want %v", got, want)
	}
	if got, want := r.droppedGSO.Load(), kinds[3]; got != want {
		t.Errorf("dropped GSO frames: got %d, want %d", got, want)
	}
	if got, want := r.badCsum.Load(), kinds[4]; got != want {
		t.Errorf("bad checksum offsets: got %d, want %d", got, want)
	}

	// Detach while a sender floods the socket: Attach(nil) must return.
	stop := make(chan struct{})
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		msg := append(vnet(0, vnetGSONone, 0, 0), frame(mac, 0, 60)...)
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Send(fds[0], msg, unix.MSG_DONTWAIT)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	detached := make(chan struct{})
	go func() {
		r.Attach(nil)
		close(detached)
	}()
	select {
	case <-detached:
	case <-time.After(10 * time.Second):
		t.Error("Attach(nil) did not stop the reader under a flood")
	}
	close(stop)
	<-flooded
	<-detached
}

// TestVnetReaderGRO: consecutive TCP segments of one flow that arrive in
// one read reach the stack as one packet, with the payloads joined and
// checksums the stack accepts; a segment with a bad checksum is passed on
// unmerged (for the stack to drop), as is a UDP datagram, in order.
func TestVnetReaderGRO(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "IPv4"
		if v6 {
			name = "IPv6"
		}
		t.Run(name, func(t *testing.T) { testVnetReaderGRO(t, v6) })
	}
}

func testVnetReaderGRO(t *testing.T, v6 bool) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	mac := tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")
	r := newVnetReceiver(fds[1], mac, channel.New(1, 1500, mac), nil)
	rec := &recorder{got: make(chan struct{}, 1)}

	src4, dst4 := tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	src6, dst6 := tcpip.AddrFrom16([16]byte{0xfd, 15: 1}), tcpip.AddrFrom16([16]byte{0xfd, 15: 2})
	const mss = 1000
	// packet returns an IP packet with a TCP segment (or, with udp, a UDP
	// datagram) carrying payload, checksums right unless bad.
	packet := func(seq uint32, payload []byte, flags header.TCPFlags, bad, udp bool) (tcpip.NetworkProtocolNumber, []byte) {
		l4 := make([]byte, header.TCPMinimumSize+len(payload))
		proto := header.TCPProtocolNumber
		if udp {
			proto = header.UDPProtocolNumber
			l4 = l4[:header.UDPMinimumSize+len(payload)]
		}
		src, dst := src4, dst4
		if v6 {
			src, dst = src6, dst6
		}
		sum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(l4)))
		if udp {
			u := header.UDP(l4)
			u.Encode(&header.UDPFields{SrcPort: 5000, DstPort: 53, Length: uint16(len(l4))})
			copy(l4[header.UDPMinimumSize:], payload)
			u.SetChecksum(^checksum.Checksum(l4, sum))
		} else {
			tc := header.TCP(l4)
			tc.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 143, SeqNum: seq, AckNum: 7, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 1000})
			copy(l4[header.TCPMinimumSize:], payload)
			tc.SetChecksum(^checksum.Checksum(l4, sum))
			if bad {
				tc.SetChecksum(tc.Checksum() + 1)
			}
		}
		if v6 {
			b := make([]byte, header.IPv6MinimumSize, header.IPv6MinimumSize+len(l4))
			header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(len(l4)), TransportProtocol: proto, HopLimit: 64, SrcAddr: src, DstAddr: dst})
			return header.IPv6ProtocolNumber, append(b, l4...)
		}
		b := make([]byte, header.IPv4MinimumSize, header.IPv4MinimumSize+len(l4))
		h := header.IPv4(b)
		h.Encode(&header.IPv4Fields{TotalLength: uint16(len(b) + len(l4)), Protocol: uint8(proto), TTL: 64, SrcAddr: src, DstAddr: dst})
		h.SetChecksum(^h.CalculateChecksum())
		return header.IPv4ProtocolNumber, append(b, l4...)
	}
	send := func(proto tcpip.NetworkProtocolNumber, ip []byte) {
		f := make([]byte, vnetHdrLen+header.EthernetMinimumSize, vnetHdrLen+header.EthernetMinimumSize+len(ip))
		header.Ethernet(f[vnetHdrLen:]).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x02", DstAddr: mac, Type: proto})
		if err := unix.Send(fds[0], append(f, ip...), 0); err != nil {
			t.Fatal(err)
		}
	}
	payload := make([]byte, 4*mss)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	// Queue everything before the reader starts, so that one read
	// takes it all.
	for i := 0; i < 4; i++ {
		flags := header.TCPFlagAck
		if i == 3 {
			flags |= header.TCPFlagPsh
		}
		send(packet(uint32(1000+i*mss), payload[i*mss:(i+1)*mss], flags, false, false))
	}
	send(packet(1000+4*mss, payload[:mss], header.TCPFlagAck, true, false))
	send(packet(0, []byte("query"), 0, false, true))
	r.Attach(rec)
	defer r.Attach(nil)
	deadline := time.After(10 * time.Second)
	for rec.count() < 3 {
		select {
		case <-rec.got:
		case <-deadline:
			t.Fatalf("got %d packets, want 3", rec.count())
		}
	}
	time.Sleep(50 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.frames) != 3 {
		t.Fatalf("got %d packets, want 3 (the merged segments, the bad one, the datagram)", len(rec.frames))
	}
	valid := func(ip []byte) (l4 []byte, ok bool) {
		var src, dst tcpip.Address
		if v6 {
			h := header.IPv6(ip)
			src, dst, l4 = h.SourceAddress(), h.DestinationAddress(), ip[header.IPv6MinimumSize:]
		} else {
			h := header.IPv4(ip)
			if !h.IsChecksumValid() || int(h.TotalLength()) != len(ip) {
				return nil, false
			}
			src, dst, l4 = h.SourceAddress(), h.DestinationAddress(), ip[header.IPv4MinimumSize:]
		}
		sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(l4)))
		return l4, checksum.Checksum(l4, sum) == 0xffff
	}
	l4, ok := valid(rec.frames[0])
	if !ok {
		t.Errorf("merged packet: checksums wrong")
	}
	if got := l4[header.TCPMinimumSize:]; string(got) != string(payload) {
		t.Errorf("merged packet: got %d payload bytes, want the %d of the four segments", len(got), len(payload))
	}
	if _, ok := valid(rec.frames[1]); ok {
		t.Errorf("the segment with a bad checksum came out with a good one")
	}
	if u := rec.frames[2]; header.UDP(u[len(u)-header.UDPMinimumSize-5:]).DestinationPort() != 53 {
		t.Errorf("third packet is not the UDP datagram")
	}
}
