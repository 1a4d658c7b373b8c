package netstack

import (
	"fmt"
	"math"
	"runtime/debug"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Keepalive settings for every accepted and dialed TCP connection. They
// are the standard library's defaults (net.KeepAliveConfig as used by
// net.Dial and net.Listen since Go 1.23), so that a service behaves the
// same on host sockets and on a netstack: a phone that walks out of range
// holding an IMAP IDLE connection is reaped after about 2.5 minutes
// instead of holding a goroutine and a connection slot forever. gVisor
// leaves keepalive off by default, as Linux does.
const (
	keepAliveIdle     = 15 * time.Second
	keepAliveInterval = 15 * time.Second
	keepAliveCount    = 9
)

// tcpBuffers are the TCP buffer sizes of a stack.
type tcpBuffers struct{ def, maxRecv, maxSend int }

// buffersFor sizes TCP buffers for a Go memory limit (the appliance sets
// one from the VM's memory; a host process has none, math.MaxInt64). A
// connection's send buffer starts, and stays, at the default: eight IMAP
// clients fetching the flags of a 25,000-message mailbox each have a
// megabyte of response queued on a slow path, which in a 64 MiB
// appliance (a 25 MiB limit) was what ran the kernel out of memory. So
// under a limit the default is a 128th of it (between 64 KiB and gVisor's
// 1 MiB) and the maxima a sixteenth (at least 256 KiB); without one, or
// from a limit of 128 MiB up, they are the sizes argued for below.
func buffersFor(limit int64) tcpBuffers {
	full := tcpBuffers{def: tcp.DefaultReceiveBufferSize, maxRecv: 8 << 20, maxSend: 6 << 20}
	if limit == math.MaxInt64 {
		return full
	}
	clamp := func(v int64, lo, hi int) int { return int(min(max(v, int64(lo)), int64(hi))) }
	return tcpBuffers{
		def:     clamp(limit/128, 64<<10, full.def),
		maxRecv: clamp(limit/16, 256<<10, full.maxRecv),
		maxSend: clamp(limit/16, 256<<10, full.maxSend),
	}
}

// tune sets the stack-wide TCP options we depend on. Each one says why;
// everything not set here keeps gVisor's default (notably RACK loss
// detection, on; Nagle's algorithm, off, as the standard library leaves
// it; TIME-WAIT 60 s; TTL 64; ICMP rate limit 1000/s).
func tune(s *stack.Stack) error {
	b := buffersFor(debug.SetMemoryLimit(-1))
	opts := []struct {
		name string
		opt  tcpip.SettableTransportProtocolOption
	}{
		// SACK: with it a window with several losses (Wi-Fi, a
		// congested home uplink) is repaired in one round trip instead of
		// one loss per round trip, and every peer we talk to (Linux,
		// macOS, Windows, phones) supports it. gVisor's default has been
		// off in the past and is on in the version we build with; it is
		// set here so that a change of default cannot turn it off
		// unnoticed (tailscale sets it for the same reason).
		{"SACK", ptr(tcpip.TCPSACKEnabled(true))},
		// Receive buffer: gVisor's default maximum (4 MiB) caps a single
		// connection at about 320 Mbit/s on a 100 ms path. Start at 1 MiB
		// (gVisor's default) and let moderation (below) grow it to 8 MiB
		// for the occasional big mailbox sync or git clone over a long
		// path. The minimum stays at gVisor's 4 KiB.
		// Under a small memory limit (buffersFor) both start and end
		// lower.
		{"receive buffer", &tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: b.def, Max: b.maxRecv}},
		// Send buffer: likewise up to 6 MiB (Linux's tcp_wmem maximum is
		// 4 MiB; tailscale uses 6 MiB) so that a bulk sender is not
		// limited by its buffer before the congestion window.
		{"send buffer", &tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: b.def, Max: b.maxSend}},
		// Receive buffer auto-tuning (moderation): a buffer grows with
		// the measured bandwidth-delay product instead of every
		// connection reserving the maximum, which matters on a 512 MiB
		// board serving many idle IMAP connections, and is what lets
		// the 8 MiB maximum above be safe. On by default in the gVisor
		// we build with; set for the same reason as SACK.
		{"moderate receive buffer", ptr(tcpip.TCPModerateReceiveBufferOption(true))},
		// CUBIC instead of gVisor's default Reno: the Linux default, and it
		// regains a large window quickly after a loss on high
		// bandwidth-delay paths, where Reno's linear growth takes
		// minutes.
		{"congestion control", ptr(tcpip.CongestionControlOption("cubic"))},
		// TIME-WAIT for 10 s instead of 60 s: a gVisor endpoint in
		// TIME-WAIT keeps its whole state (kilobytes, with timers), not a
		// kernel's small timewait socket, so a server closing 4000
		// connections a second would hold 240 000 of them; on a 128 MiB
		// appliance that is what runs out. 10 s still covers the delayed
		// duplicates of a LAN or the Internet's typical paths, and a SYN
		// that reuses a port in TIME-WAIT is handled anyway (synGuard).
		{"TIME-WAIT timeout", ptr(tcpip.TCPTimeWaitTimeoutOption(10 * time.Second))},
	}
	for _, o := range opts {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o.opt); err != nil {
			return fmt.Errorf("set TCP option %s: %s", o.name, err)
		}
	}
	return nil
}

// tuneEndpoint sets per-connection options on a TCP endpoint that is
// dialed or accepted.
func tuneEndpoint(ep tcpip.Endpoint) {
	ep.SocketOptions().SetKeepAlive(true)
	idle := tcpip.KeepaliveIdleOption(keepAliveIdle)
	ep.SetSockOpt(&idle)
	interval := tcpip.KeepaliveIntervalOption(keepAliveInterval)
	ep.SetSockOpt(&interval)
	ep.SetSockOptInt(tcpip.KeepaliveCountOption, keepAliveCount)
}

func ptr[T any](v T) *T { return &v }
