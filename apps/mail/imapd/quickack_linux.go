package imapd

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// quickAck asks the kernel to ACK what was received now (TCP_QUICKACK),
// on a host socket; on other connections it does nothing.
func quickAck(c any) {
	if q, ok := c.(quickAcker); ok {
		q.quickAck()
		return
	}
	// Find the socket beneath the wrappers of the connection guard and
	// the PROXY protocol listener (each has NetConn, as *tls.Conn has).
	for {
		n, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = n.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
}
