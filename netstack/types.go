package netstack

// The package's data types and errors, declared once for every system:
// the Linux files implement Stack and Link on them, other.go stands in
// where no link can be opened.

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// ErrClosed is returned by Stack methods after Close. It is net.ErrClosed,
// so errors.Is(err, net.ErrClosed) holds.
var ErrClosed = net.ErrClosed

// ErrNoDNS is returned by the Resolver's lookups when the stack knows no
// DNS server (none configured, none learned yet).
var ErrNoDNS = errors.New("netstack: no DNS server")

// ErrInterfaceInUse is wrapped by the error OpenPacket returns for an
// interface on which the kernel has an address other than IPv6
// link-local.
var ErrInterfaceInUse = errors.New("interface in use by the kernel")

// Lease is a DHCPv4 lease held by a Stack.
type Lease struct {
	Addr     netip.Prefix // the leased address and its subnet
	Router   netip.Addr   // default router; zero if the server gave none
	DNS      []netip.Addr // name servers; nil if none
	Server   netip.Addr   // the DHCP server's identifier
	Obtained time.Time    // when the lease was last obtained or renewed
	Renew    time.Time    // T1: when renewal with Server starts
	Rebind   time.Time    // T2: when rebinding with any server starts
	Expiry   time.Time    // when the lease ends
	Renewals int          // successful renewals since the lease was obtained
}

// Stats are counters of a Stack since it started.
type Stats struct {
	RxPackets uint64 // frames received on the link
	RxBytes   uint64
	TxPackets uint64 // frames sent on the link
	TxBytes   uint64
	// Drops counts packets the stack dropped: malformed or with a bad
	// checksum, for an unknown protocol or address, or with no buffer
	// space to send.
	Drops uint64
	// Malformed counts received packets dropped as malformed (a subset
	// of Drops).
	Malformed uint64
	// RxGSO counts TCP segments received unsegmented (up to 64 KiB) from
	// a peer on the same host with TSO (see vnetReceiver).
	RxGSO uint64

	TCPRetransmits   uint64 // TCP segments retransmitted
	TCPActiveOpens   uint64 // connections dialed
	TCPPassiveOpens  uint64 // connections accepted
	TCPEstablished   uint64 // connections now established
	TCPFailedConnect uint64 // dials and handshakes that failed
	UDPRxPackets     uint64 // UDP datagrams delivered
	UDPTxPackets     uint64 // UDP datagrams sent
}

// LogValue implements slog.LogValuer, so that a Stats can be logged as
// one record: logger.Info("netstack", "stats", st.Stats()).
func (s Stats) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Uint64("rx_packets", s.RxPackets), slog.Uint64("rx_bytes", s.RxBytes),
		slog.Uint64("tx_packets", s.TxPackets), slog.Uint64("tx_bytes", s.TxBytes),
		slog.Uint64("drops", s.Drops), slog.Uint64("malformed", s.Malformed), slog.Uint64("rx_gso", s.RxGSO),
		slog.Uint64("tcp_retransmits", s.TCPRetransmits),
		slog.Uint64("tcp_active_opens", s.TCPActiveOpens), slog.Uint64("tcp_passive_opens", s.TCPPassiveOpens),
		slog.Uint64("tcp_established", s.TCPEstablished), slog.Uint64("tcp_failed", s.TCPFailedConnect),
		slog.Uint64("udp_rx", s.UDPRxPackets), slog.Uint64("udp_tx", s.UDPTxPackets),
	)
}
