//go:build linux

package netstack

import "log/slog"

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

// Stats returns the stack's counters.
func (st *Stack) Stats() Stats {
	s := st.s.Stats()
	var out Stats
	if info, ok := st.s.NICInfo()[nicID]; ok {
		out.RxPackets = info.Stats.Rx.Packets.Value()
		out.RxBytes = info.Stats.Rx.Bytes.Value()
		out.TxPackets = info.Stats.Tx.Packets.Value()
		out.TxBytes = info.Stats.Tx.Bytes.Value()
		out.Drops += info.Stats.TxPacketsDroppedNoBufferSpace.Value() + info.Stats.MalformedL4RcvdPackets.Value()
		out.Malformed += info.Stats.MalformedL4RcvdPackets.Value()
	}
	malformed := s.IP.MalformedPacketsReceived.Value() + s.IP.MalformedFragmentsReceived.Value() +
		s.TCP.InvalidSegmentsReceived.Value() + s.TCP.ChecksumErrors.Value() +
		s.UDP.MalformedPacketsReceived.Value() + s.UDP.ChecksumErrors.Value() +
		s.ICMP.V4.PacketsReceived.Invalid.Value() + s.ICMP.V6.PacketsReceived.Invalid.Value() +
		s.ARP.MalformedPacketsReceived.Value()
	out.Malformed += malformed
	out.Drops += s.DroppedPackets.Value() + malformed +
		s.IP.InvalidDestinationAddressesReceived.Value() + s.IP.InvalidSourceAddressesReceived.Value() +
		s.UDP.UnknownPortErrors.Value() + s.UDP.ReceiveBufferErrors.Value() +
		s.TCP.SegmentSendErrors.Value()
	if st.vnet != nil {
		out.RxGSO = st.vnet.rxGSO.Load()
		out.Drops += st.vnet.droppedGSO.Load() + st.vnet.badCsum.Load()
		out.Malformed += st.vnet.badCsum.Load()
	}
	out.TCPRetransmits = s.TCP.Retransmits.Value()
	out.TCPActiveOpens = s.TCP.ActiveConnectionOpenings.Value()
	out.TCPPassiveOpens = s.TCP.PassiveConnectionOpenings.Value()
	out.TCPEstablished = s.TCP.CurrentEstablished.Value()
	out.TCPFailedConnect = s.TCP.FailedConnectionAttempts.Value()
	out.UDPRxPackets = s.UDP.PacketsReceived.Value()
	out.UDPTxPackets = s.UDP.PacketsSent.Value()
	return out
}
