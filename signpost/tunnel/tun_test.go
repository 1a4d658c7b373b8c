package tunnel

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// ipv4Header returns a 20-byte IPv4 header with a valid checksum.
func ipv4Header(ttl byte, dst netip.Addr) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], 20)
	h[8], h[9] = ttl, 6
	copy(h[12:16], []byte{100, 64, 0, 1})
	copy(h[16:20], dst.AsSlice())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	return h
}

func checksumOK(h []byte) bool {
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum) == 0xffff
}

// TestRelayHopLimit: a relayed packet's TTL or hop limit goes down by one
// (the IPv4 checksum still holds), and one that would reach zero is
// dropped, so that a routing loop between nodes ends.
func TestRelayHopLimit(t *testing.T) {
	dst := netip.MustParseAddr("100.64.1.2")
	p := ipv4Header(64, dst)
	if d, ok := packetDst(p); !ok || d != dst {
		t.Fatalf("packetDst = %v %v", d, ok)
	}
	if !decHopLimit(p) || p[8] != 63 || !checksumOK(p) {
		t.Fatalf("after decHopLimit: ttl %d, checksum ok %v", p[8], checksumOK(p))
	}
	if decHopLimit(ipv4Header(1, dst)) {
		t.Fatal("a packet with TTL 1 was relayed")
	}
	p6 := make([]byte, 40)
	p6[0] = 0x60
	p6[7] = 2
	dst6 := netip.MustParseAddr("fd00::2")
	copy(p6[24:], dst6.AsSlice())
	if d, ok := packetDst(p6); !ok || d != dst6 {
		t.Fatalf("packetDst v6 = %v %v", d, ok)
	}
	if !decHopLimit(p6) || p6[7] != 1 || decHopLimit(p6) {
		t.Fatalf("IPv6 hop limit: %d", p6[7])
	}
	if _, ok := packetDst([]byte{0x45, 0}); ok {
		t.Fatal("a short packet has a destination")
	}
}
