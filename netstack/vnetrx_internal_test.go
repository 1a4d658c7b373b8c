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
	for seq := byte(1); seq <= 3*vnetFramesPerRead; seq++ {
		good(seq)
		want = append(want, seq)
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
	if n := r.droppedGSO.Load(); n != 4 {
		t.Errorf("dropped GSO frames: got %d, want 4", n)
	}
	if n := r.badCsum.Load(); n != 4 {
		t.Errorf("bad checksum offsets: got %d, want 4", n)
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
