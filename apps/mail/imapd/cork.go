package imapd

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

const (
	// corkMax is how much a corked connection holds before it writes.
	corkMax = 64 << 10
	// uncorkTimeout bounds the write of what was held back (imapserver's
	// own bound on writing a response).
	uncorkTimeout = 30 * time.Second
)

// corkConn holds back what is written to it while corked, so that the many
// responses of one command go out in few large writes: imapserver flushes
// after every response line, which for a FETCH of thousands of messages is
// a system call (and a wake-up of the client) per message. Session corks it
// around FETCH and STORE and uncorks (writes everything held) before the
// command's tagged response. It sits beneath TLS, so TLS records are
// coalesced too.
type corkConn struct {
	net.Conn

	// track follows what the client sends, for quickAck (quickack.go);
	// only the connection's reader uses it.
	track cmdTracker

	mu     sync.Mutex
	corked bool
	buf    []byte

	// The write deadline: imapserver sets one before each response and
	// clears it after, two system calls per message of a FETCH. What is
	// asked (want) goes on the socket (sock) at once when it is earlier
	// than what the socket has (so that a deadline in the past still
	// stops a write under way); a later one, or none, only right before
	// bytes go to the socket, and not at all when the socket's is less
	// than dlSlack earlier than the one asked.
	dlMu       sync.Mutex
	want, sock time.Time
}

// dlSlack is how much earlier than asked a write deadline may fall.
const dlSlack = time.Second

// SetWriteDeadline asks for a write deadline (see corkConn.want).
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.want = t
	if !t.IsZero() && (c.sock.IsZero() || t.Before(c.sock)) {
		c.sock = t
		return c.Conn.SetWriteDeadline(t)
	}
	return nil
}

// SetDeadline sets the read deadline and asks for the write deadline.
func (c *corkConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// applyDeadline puts the write deadline asked on the socket, before bytes
// go to it.
func (c *corkConn) applyDeadline() error {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	switch {
	case c.want.IsZero():
		if c.sock.IsZero() {
			return nil
		}
	case !c.sock.IsZero() && !c.sock.After(c.want) && c.want.Sub(c.sock) < dlSlack:
		return nil
	}
	c.sock = c.want
	return c.Conn.SetWriteDeadline(c.want)
}

// write writes p to the socket under the deadline asked.
func (c *corkConn) write(p []byte) (int, error) {
	if err := c.applyDeadline(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// Read reads, then asks for an immediate ACK if the client is in the middle
// of a command (see quickack.go).
func (c *corkConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.track.feed(p[:n]) {
		quickAck(c.Conn)
	}
	return n, err
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.write(p)
	}
	if len(c.buf)+len(p) > corkMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= corkMax {
			return c.write(p)
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// cork starts holding writes back.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what was held back and stops holding writes. imapserver
// sets a deadline around each response it writes; this write is outside
// them, so it sets its own, as long as imapserver's.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	var err error
	if len(c.buf) > 0 {
		c.SetWriteDeadline(time.Now().Add(uncorkTimeout))
		err = c.flushLocked()
		c.SetWriteDeadline(time.Time{})
	}
	if cap(c.buf) > corkMax {
		c.buf = nil
	}
	return err
}

// corkOf finds the corkConn beneath a session's connection (beneath TLS,
// for implicit TLS and after STARTTLS), or nil.
func corkOf(c net.Conn) *corkConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, _ := c.(*corkConn)
	return cc
}
