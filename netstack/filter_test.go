//go:build linux

package netstack

import (
	"net"
	"testing"

	"golang.org/x/net/bpf"
)

func TestMACFilter(t *testing.T) {
	us := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	peer := net.HardwareAddr{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}
	near := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x56} // differs in the last byte
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcast := net.HardwareAddr{0x33, 0x33, 0xff, 0x00, 0x00, 0x01}
	frame := func(dst, src net.HardwareAddr, n int) []byte {
		f := make([]byte, n)
		copy(f, dst)
		if n >= 12 {
			copy(f[6:], src)
		}
		return f
	}
	vm, err := bpf.NewVM(macFilter(us))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{"to us", frame(us, peer, 60), true},
		{"broadcast", frame(bcast, peer, 60), true},
		{"multicast", frame(mcast, peer, 60), true},
		{"header only", frame(us, peer, 14), true},
		{"to another station", frame(peer, near, 60), false},
		{"to a near address", frame(near, peer, 60), false},
		{"from us, broadcast", frame(bcast, us, 60), false},
		{"from us, to us", frame(us, us, 60), false},
		{"from a near address", frame(bcast, near, 60), true},
		{"13 bytes", frame(us, peer, 13)[:13], false},
		{"empty", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := vm.Run(tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			if got := n > 0; got != tc.pass {
				t.Errorf("filter passes %v, want %v", got, tc.pass)
			}
		})
	}
}
