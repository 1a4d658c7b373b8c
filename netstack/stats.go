//go:build linux

package netstack

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
