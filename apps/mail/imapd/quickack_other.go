//go:build !linux

package imapd

// quickAck asks the connection for an immediate ACK where it can; host
// sockets outside Linux have no TCP_QUICKACK.
func quickAck(c any) {
	if q, ok := c.(quickAcker); ok {
		q.quickAck()
	}
}
