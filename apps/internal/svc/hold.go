package svc

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// A Held listener accepts connections at once, before the service behind it
// can serve them (a new replica copying its store from a peer): each is
// answered by refuse with a temporary refusal in its own protocol and
// closed, so that clients and sending servers see a reason and retry rather
// than a closed port. Release hands the listener to the service: from then
// on Accept returns the connections that follow.
type Held struct {
	ln     net.Listener
	refuse func(net.Conn)

	mu   sync.Mutex
	held bool

	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	failed    chan struct{}
	err       error // Accept's error, once failed is closed
}

// Hold starts accepting on ln; refuse answers each connection while it is
// held (in a goroutine of its own; it should bound its time with a
// deadline, and close the connection).
func Hold(ln net.Listener, refuse func(net.Conn)) *Held {
	h := &Held{ln: ln, refuse: refuse, held: true, conns: make(chan net.Conn),
		closed: make(chan struct{}), failed: make(chan struct{})}
	go h.loop()
	return h
}

func (h *Held) loop() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			h.err = err
			close(h.failed)
			return
		}
		h.mu.Lock()
		held := h.held
		h.mu.Unlock()
		if held {
			go h.refuse(c)
			continue
		}
		select {
		case h.conns <- c:
		case <-h.closed:
			c.Close()
			return
		}
	}
}

// Release ends the refusals: the connections accepted from now on go to
// Accept.
func (h *Held) Release() {
	h.mu.Lock()
	h.held = false
	h.mu.Unlock()
}

// Accept returns the next connection accepted after Release.
func (h *Held) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.failed:
		return nil, h.err
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

// Close closes the listener.
func (h *Held) Close() error {
	h.closeOnce.Do(func() { close(h.closed) })
	return h.ln.Close()
}

// Addr is the listener's address.
func (h *Held) Addr() net.Addr { return h.ln.Addr() }

// holdTimeout bounds one refusal's conversation.
const holdTimeout = 10 * time.Second

// holdConn bounds a refusal's conversation on c and does the TLS
// handshake first if tlsConfig is set; ok is false if that fails.
func holdConn(c net.Conn, tlsConfig *tls.Config) (_ net.Conn, ok bool) {
	c.SetDeadline(time.Now().Add(holdTimeout))
	if tlsConfig == nil {
		return c, true
	}
	tc := tls.Server(c, tlsConfig)
	if tc.Handshake() != nil {
		return c, false
	}
	return tc, true
}

// RefuseLine answers a connection with line (a protocol's temporary
// refusal, such as an IMAP greeting "* BYE [UNAVAILABLE] ..." or SMTP's
// "421 ..."; CRLF added), over TLS first if tlsConfig is set.
func RefuseLine(line string, tlsConfig *tls.Config) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		c, ok := holdConn(c, tlsConfig)
		if !ok {
			return
		}
		io.WriteString(c, line+"\r\n")
		if tc, ok := c.(*tls.Conn); ok {
			tc.CloseWrite()
		}
	}
}

// RefuseHTTP answers each HTTP/1.1 request of a connection with 503 Service
// Unavailable, Retry-After and msg, over TLS first if tlsConfig is set
// (HTTP/1.1 only is offered).
func RefuseHTTP(msg string, retryAfter time.Duration, tlsConfig *tls.Config) func(net.Conn) {
	if tlsConfig != nil {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.NextProtos = []string{"http/1.1"}
	}
	body := msg + "\n"
	return func(c net.Conn) {
		defer c.Close()
		c, ok := holdConn(c, tlsConfig)
		if !ok {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		if req.Body != nil {
			io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
		}
		resp := &http.Response{StatusCode: http.StatusServiceUnavailable, ProtoMajor: 1, ProtoMinor: 1, Close: true,
			Header: http.Header{
				"Retry-After":  {fmt.Sprint(int(retryAfter.Seconds()))},
				"Content-Type": {"text/plain; charset=utf-8"},
			},
			ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}
		resp.Write(c)
	}
}
