package smtpd

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// capListener caps the open connections: beyond the cap, a connection is
// answered 421 (RFC 5321 3.8) and closed at once, without a session.
type capListener struct {
	net.Listener
	conns chan struct{}
	log   *slog.Logger
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if _, ok := c.(*tls.Conn); ok {
			return c, nil // see Server.Serve
		}
		select {
		case l.conns <- struct{}{}:
			return &capConn{Conn: c, release: func() { <-l.conns }}, nil
		default:
		}
		l.log.Warn("smtp: too many connections; refused one", "remote", c.RemoteAddr().String(), "max", cap(l.conns))
		go func() {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte("421 4.7.0 Too many connections; try again later\r\n"))
			c.Close()
		}()
	}
}

// capConn gives its token back when it is closed (once).
type capConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *capConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// slots bounds the messages received at once: n transfers run, up to
// waiting more wait for one of them to end (at most wait), and the rest
// are refused with a temporary error.
type slots struct {
	run     chan struct{}
	queue   chan struct{}
	maxWait time.Duration
}

func newSlots(n, waiting int, wait time.Duration) *slots {
	return &slots{run: make(chan struct{}, n), queue: make(chan struct{}, n+waiting), maxWait: wait}
}

var errBusy = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
	Message: "Too many messages being received at once; try again later"}

// acquire takes a slot (or fails with 451); release gives it back.
func (s *slots) acquire() (release func(), err error) {
	select {
	case s.queue <- struct{}{}:
	default:
		return nil, errBusy
	}
	t := time.NewTimer(s.maxWait)
	defer t.Stop()
	select {
	case s.run <- struct{}{}:
		return func() { <-s.run; <-s.queue }, nil
	case <-t.C:
		<-s.queue
		return nil, errBusy
	}
}
