//go:build linux

package netstack

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func TestSynID(t *testing.T) {
	src4, dst4 := tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	src6 := tcpip.AddrFrom16([16]byte{0xfd, 15: 1})
	dst6 := tcpip.AddrFrom16([16]byte{0xfd, 15: 2})
	seg := func(flags header.TCPFlags) []byte {
		b := make([]byte, header.TCPMinimumSize)
		header.TCP(b).Encode(&header.TCPFields{SrcPort: 40000, DstPort: 143, DataOffset: header.TCPMinimumSize, Flags: flags})
		return b
	}
	v4 := func(proto uint8, payload []byte, fragOff uint16) []byte {
		b := make([]byte, header.IPv4MinimumSize+len(payload))
		header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), Protocol: proto, TTL: 64,
			SrcAddr: src4, DstAddr: dst4, FragmentOffset: fragOff})
		copy(b[header.IPv4MinimumSize:], payload)
		return b
	}
	v6 := func(next uint8, payload []byte) []byte {
		b := make([]byte, header.IPv6MinimumSize+len(payload))
		header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(len(payload)),
			TransportProtocol: tcpip.TransportProtocolNumber(next), HopLimit: 64, SrcAddr: src6, DstAddr: dst6})
		copy(b[header.IPv6MinimumSize:], payload)
		return b
	}
	want4 := stack.TransportEndpointID{LocalPort: 143, LocalAddress: dst4, RemotePort: 40000, RemoteAddress: src4}
	want6 := stack.TransportEndpointID{LocalPort: 143, LocalAddress: dst6, RemotePort: 40000, RemoteAddress: src6}
	tests := []struct {
		name  string
		proto tcpip.NetworkProtocolNumber
		data  []byte
		ok    bool
		want  stack.TransportEndpointID
	}{
		{"IPv4 SYN", header.IPv4ProtocolNumber, v4(6, seg(header.TCPFlagSyn), 0), true, want4},
		{"IPv4 SYN-ACK", header.IPv4ProtocolNumber, v4(6, seg(header.TCPFlagSyn|header.TCPFlagAck), 0), false, want4},
		{"IPv4 SYN-RST", header.IPv4ProtocolNumber, v4(6, seg(header.TCPFlagSyn|header.TCPFlagRst), 0), false, want4},
		{"IPv4 ACK", header.IPv4ProtocolNumber, v4(6, seg(header.TCPFlagAck), 0), false, want4},
		{"IPv4 UDP", header.IPv4ProtocolNumber, v4(17, seg(header.TCPFlagSyn), 0), false, want4},
		{"IPv4 fragment", header.IPv4ProtocolNumber, v4(6, seg(header.TCPFlagSyn), 8), false, want4},
		{"IPv4 truncated TCP", header.IPv4ProtocolNumber, v4(6, seg(header.TCPFlagSyn)[:10], 0), false, want4},
		{"IPv4 truncated IP", header.IPv4ProtocolNumber, v4(6, nil, 0)[:12], false, want4},
		{"IPv4 bad IHL", header.IPv4ProtocolNumber, func() []byte { b := v4(6, seg(header.TCPFlagSyn), 0); b[0] = 0x41; return b }(), false, want4},
		{"IPv6 SYN", header.IPv6ProtocolNumber, v6(6, seg(header.TCPFlagSyn)), true, want6},
		{"IPv6 SYN behind hop-by-hop", header.IPv6ProtocolNumber, v6(0, seg(header.TCPFlagSyn)), false, want6},
		{"IPv6 truncated", header.IPv6ProtocolNumber, v6(6, nil)[:30], false, want6},
		{"ARP", header.ARPProtocolNumber, make([]byte, 28), false, want4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(tc.data)})
			defer pkt.DecRef()
			got, ok := synID(tc.proto, pkt)
			if ok != tc.ok {
				t.Fatalf("synID ok = %v, want %v", ok, tc.ok)
			}
			if ok && got != tc.want {
				t.Errorf("synID = %+v, want %+v", got, tc.want)
			}
		})
	}
}
