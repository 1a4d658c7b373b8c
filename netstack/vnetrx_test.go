//go:build linux

package netstack_test

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestTSOPeer: the kernel end of the veth keeps its transmit checksum
// offload and TSO, so the netstack receives frames with partial checksums
// and TCP segments of up to 64 KiB. Data must arrive intact over IPv4 and
// IPv6, in both directions, and the large segments must have been taken
// whole. (Frames with bad checksums from the wire are still dropped:
// TestGarbageFrames.)
func TestTSOPeer(t *testing.T) {
	peerOffload = true
	defer func() { peerOffload = false }()
	p := newPair(t)
	msg := make([]byte, 8<<20)
	for i := range msg {
		msg[i] = byte(rand.IntN(256))
	}
	echoBoth(t, p, msg, 60*time.Second)
	st := p.st.Stats()
	if st.RxGSO == 0 {
		t.Errorf("no unsegmented TCP segment was received from the TSO peer: %+v", st)
	}
	t.Logf("stats: %+v", st)
}
