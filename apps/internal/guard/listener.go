package guard

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ListenerOptions configure a Listener. Zero values are the defaults named.
type ListenerOptions struct {
	// MaxConns caps the open connections; zero means 256.
	MaxConns int
	// MaxConnsPerHost caps the open connections of one remote host (see
	// HostKey); zero means 32.
	MaxConnsPerHost int
	// HandshakeTimeout bounds the TLS handshake (with TLS set) and, until
	// the client has sent its first bytes, every deadline the server sets:
	// a connection that says nothing is closed after it. Zero means 30s.
	HandshakeTimeout time.Duration
	// LoginTimeout, if set, closes a connection that has not logged in
	// (see LoggedIn) that long after it was accepted. For protocols with
	// a login (IMAP, submission); zero means none.
	LoginTimeout time.Duration
	// TLS, if set, makes Accept return *tls.Conn connections whose
	// handshake is done: the handshake runs before Accept returns the
	// connection, bounded by HandshakeTimeout, and a connection that fails
	// it is closed and never returned.
	TLS *tls.Config
	// Busy is written to a connection refused over a cap before it is
	// closed: the protocol's "try again later" ("* BYE ...\r\n" for IMAP,
	// "421 ...\r\n" for SMTP, a 503 response for HTTP). Empty: closed
	// without a word (what a TLS port does).
	Busy string
	// Logger receives refusals and failed handshakes at debug level, and
	// the first refusal of a burst at warn level; nil discards them.
	Logger *slog.Logger
}

// Listener is a net.Listener with the defences of ListenerOptions.
// Connections it returns are *Conn (or *tls.Conn over a *Conn with TLS).
type Listener struct {
	net.Listener
	o   ListenerOptions
	log *slog.Logger

	mu     sync.Mutex
	total  int
	perKey map[string]int
	closed bool

	ready  chan net.Conn  // handshaken TLS connections
	done   chan struct{}  // closed by Close
	once   sync.Once      // of the accept loop, with TLS
	errc   chan error     // the accept loop's end, with TLS
	warn   atomic.Int64   // unix seconds of the last warning
	hs     sync.WaitGroup // handshakes in flight
	refuse sync.WaitGroup // busy answers in flight
}

// NewListener wraps ln.
func NewListener(ln net.Listener, o ListenerOptions) *Listener {
	if o.MaxConns == 0 {
		o.MaxConns = 256
	}
	if o.MaxConnsPerHost == 0 {
		o.MaxConnsPerHost = 32
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, o: o, log: log, perKey: map[string]int{},
		ready: make(chan net.Conn), done: make(chan struct{}), errc: make(chan error, 1)}
}

// Accept returns the next connection within the caps (and, with TLS, after
// its handshake).
func (l *Listener) Accept() (net.Conn, error) {
	if l.o.TLS == nil {
		return l.accept()
	}
	l.once.Do(func() { go l.acceptTLS() })
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // for the next caller
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// accept returns the next connection within the caps, refusing those over
// them.
func (l *Listener) accept() (*Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := HostKey(nc.RemoteAddr().String())
		l.mu.Lock()
		ok := l.total < l.o.MaxConns && l.perKey[key] < l.o.MaxConnsPerHost
		if ok {
			l.total++
			l.perKey[key]++
		}
		l.mu.Unlock()
		if !ok {
			l.refuseConn(nc, key)
			continue
		}
		return l.wrap(nc, key), nil
	}
}

func (l *Listener) refuseConn(nc net.Conn, key string) {
	if now := time.Now().Unix(); l.warn.Swap(now) != now {
		l.log.Warn("guard: connection refused: too many connections", "listener", l.Addr(), "remote", key)
	} else {
		l.log.Debug("guard: connection refused: too many connections", "listener", l.Addr(), "remote", key)
	}
	if l.o.Busy == "" {
		nc.Close()
		return
	}
	l.refuse.Add(1)
	go func() {
		defer l.refuse.Done()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		nc.Write([]byte(l.o.Busy))
		nc.Close()
	}()
}

func (l *Listener) wrap(nc net.Conn, key string) *Conn {
	now := time.Now()
	c := &Conn{Conn: nc, l: l, key: key, firstBy: now.Add(l.o.HandshakeTimeout)}
	nc.SetDeadline(c.firstBy)
	if l.o.LoginTimeout > 0 {
		c.loginTimer = time.AfterFunc(l.o.LoginTimeout, func() {
			if !c.loggedIn.Load() {
				l.log.Debug("guard: connection closed: no login in time", "remote", nc.RemoteAddr())
				c.Close()
			}
		})
	}
	return c
}

// acceptTLS accepts connections and hands each, once handshaken, to Accept.
func (l *Listener) acceptTLS() {
	var backoff time.Duration
	for {
		c, err := l.accept()
		if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
				continue
			case <-l.done:
				err = net.ErrClosed
			}
		}
		if err != nil {
			l.errc <- err
			return
		}
		backoff = 0
		l.hs.Add(1)
		go func() {
			defer l.hs.Done()
			tc := tls.Server(c, l.o.TLS)
			ctx, cancel := context.WithTimeout(context.Background(), l.o.HandshakeTimeout)
			defer cancel()
			if err := tc.HandshakeContext(ctx); err != nil {
				l.log.Debug("guard: TLS handshake failed", "remote", c.RemoteAddr(), "err", err)
				tc.Close()
				return
			}
			select {
			case l.ready <- tc:
			case <-l.done:
				tc.Close()
			}
		}()
	}
}

// Close closes the listener; connections already returned stay open.
func (l *Listener) Close() error {
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	l.mu.Unlock()
	if first {
		close(l.done)
	}
	err := l.Listener.Close()
	return err
}

// Conns returns how many connections are open.
func (l *Listener) Conns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *Listener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perKey[key]--; l.perKey[key] <= 0 {
		delete(l.perKey, key)
	}
}

// Conn is a connection accepted by a Listener. Until the client has sent
// its first bytes, the deadlines the server sets are held to the
// handshake deadline.
type Conn struct {
	net.Conn
	l          *Listener
	key        string
	firstBy    time.Time
	spoke      atomic.Bool
	loggedIn   atomic.Bool
	loginTimer *time.Timer
	closeOnce  sync.Once
	closeErr   error
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.spoke.Load() {
		c.spoke.Store(true)
	}
	return n, err
}

func (c *Conn) clamp(t time.Time) time.Time {
	if c.spoke.Load() {
		return t
	}
	if t.IsZero() || t.After(c.firstBy) {
		return c.firstBy
	}
	return t
}

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.clamp(t)) }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

// Close implements net.Conn; it frees the connection's place under the
// caps.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		if c.loginTimer != nil {
			c.loginTimer.Stop()
		}
		c.closeErr = c.Conn.Close()
		c.l.release(c.key)
	})
	return c.closeErr
}

// NetConn returns the connection beneath.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// LoggedIn tells the Listener of c, found beneath wrappers that have a
// NetConn method (as *tls.Conn has), that the client has logged in: its
// LoginTimeout no longer applies. It does nothing for other connections.
func LoggedIn(c net.Conn) {
	for c != nil {
		if gc, ok := c.(*Conn); ok {
			gc.loggedIn.Store(true)
			if gc.loginTimer != nil {
				gc.loginTimer.Stop()
			}
			return
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		c = u.NetConn()
	}
}
