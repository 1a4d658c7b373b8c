package netstack

import (
	"math"
	"testing"
)

// TestBuffersFor: no memory limit keeps the full TCP buffers; a 64 MiB
// appliance's limit shrinks them; a tiny limit stops at the floors; a
// large one gets the full sizes again.
func TestBuffersFor(t *testing.T) {
	for _, tc := range []struct {
		limit int64
		want  tcpBuffers
	}{
		{math.MaxInt64, tcpBuffers{1 << 20, 8 << 20, 6 << 20}},
		{25 << 20, tcpBuffers{200 << 10, 1600 << 10, 1600 << 10}},
		{4 << 20, tcpBuffers{64 << 10, 256 << 10, 256 << 10}},
		{1 << 30, tcpBuffers{1 << 20, 8 << 20, 6 << 20}},
	} {
		if got := buffersFor(tc.limit); got != tc.want {
			t.Errorf("limit %d: %+v, want %+v", tc.limit, got, tc.want)
		}
	}
}
