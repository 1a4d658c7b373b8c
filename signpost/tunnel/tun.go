package tunnel

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/nymote/nymote/netstack"
)

// tunDevice is wireguard-go's tun.Device on our own gVisor stack: the
// stack's tunnel interface (netstack.Tunnel). wireguard-go's own
// tun/netstack would bring a second gVisor (it pins an older one), so the
// binary carries one stack and this small adapter instead.
//
// It also relays: on a hub, a packet that arrives from one peer for the
// address of another (a node behind NAT reaching another through the hub)
// goes straight back to WireGuard, which sends it on to the peer whose
// allowed IPs hold it, with its hop limit decreased; it never enters the
// stack, and the stack does not forward between its interfaces.
type tunDevice struct {
	t      *netstack.Tunnel
	ctx    context.Context
	cancel context.CancelFunc
	out    chan []byte // packets for WireGuard: from the stack, and relayed
	events chan tun.Event
	relay  func(dst netip.Addr) bool
	wg     sync.WaitGroup
	once   sync.Once
}

const tunBatch = 16

func newTunDevice(t *netstack.Tunnel, relay func(netip.Addr) bool) *tunDevice {
	ctx, cancel := context.WithCancel(context.Background())
	d := &tunDevice{t: t, ctx: ctx, cancel: cancel, out: make(chan []byte, 256), events: make(chan tun.Event, 1), relay: relay}
	d.events <- tun.EventUp
	d.wg.Add(1)
	go d.pump()
	return d
}

// pump moves the stack's outgoing packets to out.
func (d *tunDevice) pump() {
	defer d.wg.Done()
	buf := make([]byte, d.t.MTU())
	for {
		n, err := d.t.ReadPacket(d.ctx, buf)
		if err != nil {
			if d.ctx.Err() != nil {
				return
			}
			if n == 0 && err == netstack.ErrClosed {
				return
			}
			continue
		}
		p := make([]byte, n)
		copy(p, buf[:n])
		select {
		case d.out <- p:
		case <-d.ctx.Done():
			return
		}
	}
}

func (d *tunDevice) File() *os.File { return nil }

func (d *tunDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var p []byte
	select {
	case p = <-d.out:
	case <-d.ctx.Done():
		return 0, os.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case p = <-d.out:
		default:
			return n, nil
		}
	}
}

func (d *tunDevice) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		pkt := b[offset:]
		if dst, ok := packetDst(pkt); ok && d.relay(dst) {
			if !decHopLimit(pkt) {
				continue
			}
			p := make([]byte, len(pkt))
			copy(p, pkt)
			select {
			case d.out <- p:
			default: // full: dropped, as a router drops
			}
			continue
		}
		d.t.WritePacket(pkt)
	}
	return len(bufs), nil
}

func (d *tunDevice) MTU() (int, error)        { return d.t.MTU(), nil }
func (d *tunDevice) Name() (string, error)    { return "nymote-wg", nil }
func (d *tunDevice) Events() <-chan tun.Event { return d.events }
func (d *tunDevice) BatchSize() int           { return tunBatch }

func (d *tunDevice) Close() error {
	d.once.Do(func() {
		d.cancel()
		d.t.Close()
		d.wg.Wait()
		close(d.events)
	})
	return nil
}

// packetDst returns an IP packet's destination address.
func packetDst(p []byte) (netip.Addr, bool) {
	if len(p) < 20 {
		return netip.Addr{}, false
	}
	switch p[0] >> 4 {
	case 4:
		return netip.AddrFrom4([4]byte(p[16:20])), true
	case 6:
		if len(p) < 40 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(p[24:40])), true
	}
	return netip.Addr{}, false
}

// decHopLimit decreases a packet's TTL or hop limit (fixing the IPv4
// header checksum); false means it reached zero and the packet is dropped.
func decHopLimit(p []byte) bool {
	switch p[0] >> 4 {
	case 4:
		if p[8] <= 1 {
			return false
		}
		p[8]--
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || ihl > len(p) {
			return false
		}
		p[10], p[11] = 0, 0
		var sum uint32
		for i := 0; i < ihl; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(p[i:]))
		}
		for sum>>16 != 0 {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
		return true
	case 6:
		if p[7] <= 1 {
			return false
		}
		p[7]--
		return true
	}
	return false
}

// stackBind is wireguard-go's conn.Bind on the stack's UDP: the tunnel's
// own packets go out through the appliance's netstack, as everything else
// does (the kernel's stack is unconfigured inside an appliance).
type stackBind struct {
	listen func(network, address string) (net.PacketConn, error)
	mu     sync.Mutex
	pc     net.PacketConn
}

type endpoint netip.AddrPort

func (e endpoint) ClearSrc()              {}
func (e endpoint) SrcToString() string    { return "" }
func (e endpoint) DstToString() string    { return netip.AddrPort(e).String() }
func (e endpoint) DstToBytes() []byte     { b, _ := netip.AddrPort(e).MarshalBinary(); return b }
func (e endpoint) DstIP() netip.Addr      { return netip.AddrPort(e).Addr() }
func (e endpoint) SrcIP() netip.Addr      { return netip.Addr{} }
func (b *stackBind) SetMark(uint32) error { return nil }
func (b *stackBind) BatchSize() int       { return 1 }

func (b *stackBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return endpoint(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}

func (b *stackBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pc != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	pc, err := b.listen("udp", fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, 0, err
	}
	b.pc = pc
	actual := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, addr, err := pc.ReadFrom(packets[0])
		if err != nil {
			return 0, err
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			return 0, nil
		}
		ap := ua.AddrPort()
		sizes[0] = n
		eps[0] = endpoint(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		return 1, nil
	}
	return []conn.ReceiveFunc{recv}, actual, nil
}

func (b *stackBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pc == nil {
		return nil
	}
	err := b.pc.Close()
	b.pc = nil
	return err
}

func (b *stackBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	pc := b.pc
	b.mu.Unlock()
	if pc == nil {
		return net.ErrClosed
	}
	e, ok := ep.(endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	ua := net.UDPAddrFromAddrPort(netip.AddrPort(e))
	for _, buf := range bufs {
		if _, err := pc.WriteTo(buf, ua); err != nil {
			return err
		}
	}
	return nil
}
