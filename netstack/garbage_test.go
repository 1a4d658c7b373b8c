//go:build linux

package netstack_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// rawSender sends raw Ethernet frames on an interface in a namespace.
type rawSender struct {
	fd      int
	ifindex int
	src     net.HardwareAddr
}

func newRawSender(t *testing.T, ns, ifname string) *rawSender {
	t.Helper()
	r := &rawSender{}
	err := netstacktest.Do(ns, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		r.ifindex, r.src = ifc.Index, ifc.HardwareAddr
		r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

func (r *rawSender) send(t *testing.T, frame []byte) {
	t.Helper()
	err := unix.Sendto(r.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6})
	if err != nil && err != unix.ENOBUFS {
		t.Fatalf("send %d-byte frame: %v", len(frame), err)
	}
}

func ether(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], typ)
	return append(f, payload...)
}

// ipv4 returns a valid IPv4 header (with checksum) followed by payload;
// mutate may then break it.
func ipv4(src, dst netip.Addr, proto uint8, payload []byte, mutate func(h header.IPv4)) []byte {
	b := make([]byte, header.IPv4MinimumSize+len(payload))
	h := header.IPv4(b)
	h.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)),
		TTL:         64,
		Protocol:    proto,
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     tcpip.AddrFrom4(dst.As4()),
	})
	h.SetChecksum(^h.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], payload)
	if mutate != nil {
		mutate(h)
	}
	return b
}

func ipv6(src, dst netip.Addr, next uint8, payload []byte, mutate func(h header.IPv6)) []byte {
	b := make([]byte, header.IPv6MinimumSize+len(payload))
	h := header.IPv6(b)
	h.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(len(payload)),
		TransportProtocol: tcpip.TransportProtocolNumber(next),
		HopLimit:          64,
		SrcAddr:           tcpip.AddrFrom16(src.As16()),
		DstAddr:           tcpip.AddrFrom16(dst.As16()),
	})
	copy(b[header.IPv6MinimumSize:], payload)
	if mutate != nil {
		mutate(h)
	}
	return b
}

// TestGarbageFrames injects malformed and random frames on the link and
// checks that the stack still serves afterwards, in both dispatch modes.
func TestGarbageFrames(t *testing.T) {
	for _, readv := range []bool{false, true} {
		name := "RecvMMsg"
		if readv {
			name = "Readv"
		}
		t.Run(name, func(t *testing.T) {
			netstack.ForceReadv(readv)
			p := newPair(t)
			netstack.ForceReadv(false)
			testGarbage(t, p)
		})
	}
}

func testGarbage(t *testing.T, p *pair) {
	ln, err := p.st.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echo(ln)
	checkEcho := func(when string) {
		t.Helper()
		for _, a := range []netip.Addr{p.netstack4, p.netstack6} {
			err := retry(5*time.Second, func() error {
				c, err := netstacktest.Dial(p.nsK, "tcp", netip.AddrPortFrom(a, 7).String(), time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write([]byte("still there?")); err != nil {
					return err
				}
				c.(*net.TCPConn).CloseWrite()
				got, err := io.ReadAll(c)
				if err == nil && string(got) != "still there?" {
					t.Fatalf("echo %s: got %q", when, got)
				}
				return err
			})
			if err != nil {
				t.Fatalf("echo to %s %s: %v", a, when, err)
			}
		}
	}
	checkEcho("before garbage")

	r := newRawSender(t, p.nsK, p.ifK)
	us, them := p.st.MAC(), r.src
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	k4, n4, k6, n6 := p.kernel4, p.netstack4, p.kernel6, p.netstack6
	tcpSYN := func() []byte {
		b := make([]byte, header.TCPMinimumSize)
		header.TCP(b).Encode(&header.TCPFields{SrcPort: 4000, DstPort: 7, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 1000})
		return b
	}
	frames := []struct {
		name  string
		frame []byte
	}{
		{"header only", ether(us, them, 0x0800, nil)},
		{"broadcast header only", ether(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, them, 0x0806, nil)},
		{"to another MAC", ether(other, them, 0x0800, ipv4(k4, n4, 6, tcpSYN(), nil))},
		{"unknown ethertype", ether(us, them, 0x88b5, bytes.Repeat([]byte{0xaa}, 60))},
		{"IPv4 truncated header", ether(us, them, 0x0800, []byte{0x45, 0, 0, 40, 0})},
		{"IPv4 IHL too long", ether(us, them, 0x0800, ipv4(k4, n4, 6, tcpSYN(), func(h header.IPv4) { h[0] = 0x4f }))},
		{"IPv4 IHL too short", ether(us, them, 0x0800, ipv4(k4, n4, 6, tcpSYN(), func(h header.IPv4) { h[0] = 0x41 }))},
		{"IPv4 total length beyond frame", ether(us, them, 0x0800, ipv4(k4, n4, 6, tcpSYN(), func(h header.IPv4) { h.SetTotalLength(9000) }))},
		{"IPv4 bad checksum", ether(us, them, 0x0800, ipv4(k4, n4, 6, tcpSYN(), func(h header.IPv4) { h.SetChecksum(1) }))},
		{"IPv4 fragment garbage", ether(us, them, 0x0800, ipv4(k4, n4, 17, bytes.Repeat([]byte{1}, 33), func(h header.IPv4) {
			h.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 8)
			h.SetChecksum(0)
			h.SetChecksum(^h.CalculateChecksum())
		}))},
		{"TCP header truncated", ether(us, them, 0x0800, ipv4(k4, n4, 6, []byte{0, 1, 0}, nil))},
		{"TCP data offset beyond segment", ether(us, them, 0x0800, ipv4(k4, n4, 6, func() []byte { b := tcpSYN(); b[12] = 0xf0; return b }(), nil))},
		{"TCP bad checksum", ether(us, them, 0x0800, ipv4(k4, n4, 6, tcpSYN(), nil))},
		{"UDP length beyond packet", ether(us, them, 0x0800, ipv4(k4, n4, 17, []byte{0, 53, 0, 68, 0xff, 0xff, 0, 0}, nil))},
		{"UDP to DHCP client port", ether(us, them, 0x0800, ipv4(k4, n4, 17, []byte{0, 67, 0, 68, 0, 12, 0, 0, 2, 1, 6, 0}, nil))},
		{"ICMP truncated", ether(us, them, 0x0800, ipv4(k4, n4, 1, []byte{8}, nil))},
		{"IPv6 truncated", ether(us, them, 0x86dd, []byte{0x60, 0, 0})},
		{"IPv6 payload length beyond frame", ether(us, them, 0x86dd, ipv6(k6, n6, 6, tcpSYN(), func(h header.IPv6) { h.SetPayloadLength(60000) }))},
		{"IPv6 hop-by-hop garbage", ether(us, them, 0x86dd, ipv6(k6, n6, 0, []byte{59, 200, 5, 6, 7, 8, 9, 10}, nil))},
		{"IPv6 fragment garbage", ether(us, them, 0x86dd, ipv6(k6, n6, 44, []byte{6, 0, 0, 9, 1, 2, 3, 4, 5}, nil))},
		{"ICMPv6 NDP truncated", ether(us, them, 0x86dd, ipv6(k6, n6, 58, []byte{135, 0, 0}, nil))},
		{"ARP truncated", ether(us, them, 0x0806, []byte{0, 1, 8, 0, 6})},
		{"ARP bad sizes", ether(us, them, 0x0806, []byte{0, 1, 8, 0, 60, 60, 0, 1, 1, 2, 3})},
	}
	for _, f := range frames {
		r.send(t, f.frame)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	types := []uint16{0x0800, 0x86dd, 0x0806, 0x8100, uint16(rng.Uint32())}
	for i := range 3000 {
		payload := make([]byte, rng.IntN(200))
		for j := range payload {
			payload[j] = byte(rng.Uint32())
		}
		typ := types[rng.IntN(len(types))]
		// Half the IP frames get a valid header so that the garbage
		// reaches the transport protocols.
		switch {
		case typ == 0x0800 && i%2 == 0:
			payload = ipv4(k4, n4, []uint8{1, 6, 17, 2, 4}[rng.IntN(5)], payload, nil)
		case typ == 0x86dd && i%2 == 0:
			payload = ipv6(k6, n6, []uint8{0, 6, 17, 43, 44, 58, 60}[rng.IntN(7)], payload, nil)
		}
		r.send(t, ether(us, them, typ, payload))
		if i%200 == 0 {
			time.Sleep(time.Millisecond) // keep within the socket buffers
		}
	}
	checkEcho("after garbage")
	s := p.st.Stats()
	if s.Malformed == 0 || s.Drops == 0 {
		t.Errorf("Stats after garbage: %+v, want Malformed and Drops counted", s)
	}
	t.Logf("stats: %+v", s)
}
