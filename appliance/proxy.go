package appliance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nymote/nymote/appliance/app"
)

// The PROXY protocol (HAProxy's, versions 1 and 2): a proxy in front of
// the appliance, such as jitsu, starts each connection it opens to the
// appliance with a header carrying the client's address. The appliance's
// proxy setting (nymote.proxy=NETWORKS on the kernel command line, --proxy
// on a host) lists the networks such a proxy connects from:
//
//   - a connection from one of them must start with a valid header: the
//     service sees the header's source as the connection's RemoteAddr (and
//     its destination as LocalAddr); a connection whose header is missing,
//     malformed or late (app.ProxyHeaderTimeout) is closed with a log line and
//     never reaches the service; a LOCAL header (a proxy's health check)
//     keeps the connection's own addresses;
//   - a connection from anywhere else is handed to the service as it is:
//     its first bytes are never read as a header, so no client can claim
//     another's address.
//
// The listener reads headers in the background, one goroutine per
// connection waiting for its header (at most maxPendingHeaders; beyond it
// a trusted connection is closed), so a connection that is slow to send
// its header (jitsu's spare connections send it only when a client comes)
// keeps no other connection from being accepted.

// maxPendingHeaders bounds the connections from trusted proxies waiting
// for their header.
const maxPendingHeaders = 128

// proxyHeaderBuffer is the read buffer of a connection while its header
// is read: a version 2 header with IPv6 addresses takes 52 bytes, a
// version 1 header at most 107. Bytes read past the header are handed to
// the service first.
const proxyHeaderBuffer = 512

// ParseProxyNetworks parses a proxy setting: networks (CIDR) or single IP
// addresses, separated by commas, such as "10.0.2.2/32,192.168.1.0/24".
// "" is none.
func ParseProxyNetworks(s string) ([]netip.Prefix, error) {
	var nets []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if ip, err := netip.ParseAddr(f); err == nil {
			ip = ip.Unmap()
			nets = append(nets, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q: want a network such as 10.0.2.2/32 or an IP address", f)
		}
		nets = append(nets, p.Masked())
	}
	return nets, nil
}

// proxyListener accepts connections from l, reading the PROXY header of
// those from trusted networks (see above).
type proxyListener struct {
	inner   net.Listener
	trusted []netip.Prefix
	log     *slog.Logger
	timeout time.Duration
	max     int

	conns chan accepted // for the service's Accept
	done  chan struct{} // closed by Close
	once  sync.Once
	wg    sync.WaitGroup

	mu      sync.Mutex
	waiting map[net.Conn]bool // connections whose header is being read
}

// accepted is what Accept returns: a connection ready for the service,
// or the inner listener's error (passed on as it is, so that a service
// sees what it would see without the PROXY protocol, and retries or
// stops as it would).
type accepted struct {
	c   net.Conn
	err error
}

// ProxyListener returns a listener that accepts l's connections and reads
// a PROXY protocol header (version 1 or 2) from those that come from the
// trusted networks, so that their RemoteAddr is the client's (see the
// package's PROXY protocol notes in proxy.go). With no trusted network it
// returns l. Services get such listeners from the runtime when the
// appliance's proxy setting is given; a host program that opens its own
// listeners can wrap them with it.
func ProxyListener(l net.Listener, trusted []netip.Prefix, log *slog.Logger) net.Listener {
	if len(trusted) == 0 {
		return l
	}
	return newProxyListener(l, trusted, log, app.ProxyHeaderTimeout, maxPendingHeaders)
}

func newProxyListener(l net.Listener, trusted []netip.Prefix, log *slog.Logger, timeout time.Duration, max int) *proxyListener {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := &proxyListener{inner: l, trusted: trusted, log: log, timeout: timeout, max: max,
		conns: make(chan accepted), done: make(chan struct{}), waiting: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.acceptLoop()
	return p
}

// joinPrefixes writes networks as a proxy setting.
func joinPrefixes(nets []netip.Prefix) string {
	s := make([]string, len(nets))
	for i, n := range nets {
		s[i] = n.String()
	}
	return strings.Join(s, ",")
}

// isTrusted says whether a connection from addr must send a header.
func (p *proxyListener) isTrusted(addr net.Addr) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, n := range p.trusted {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func (p *proxyListener) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.inner.Accept()
		if err != nil {
			// The service's Accept gets it; this loop goes on
			// when the service asks for the next connection.
			if !p.hand(accepted{err: err}) {
				return
			}
			continue
		}
		if !p.isTrusted(c.RemoteAddr()) {
			if !p.hand(accepted{c: c}) {
				return
			}
			continue
		}
		p.mu.Lock()
		full := len(p.waiting) >= p.max
		if !full {
			p.waiting[c] = true
		}
		p.mu.Unlock()
		if full {
			p.log.Warn("PROXY header: too many connections waiting for theirs; closing this one",
				"from", c.RemoteAddr().String(), "waiting", p.max)
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			pc, err := readProxyHeader(c, p.timeout)
			p.mu.Lock()
			delete(p.waiting, c)
			p.mu.Unlock()
			if err != nil {
				lvl := slog.LevelWarn
				if errors.Is(err, errNothingSent) {
					// A proxy's probe or a spare it closed: no
					// client was ever behind it.
					lvl = slog.LevelDebug
				}
				p.log.Log(context.Background(), lvl, "connection from a trusted proxy closed: no valid PROXY header",
					"from", c.RemoteAddr().String(), "err", err)
				c.Close()
				return
			}
			p.hand(accepted{c: pc})
		}()
	}
}

// hand gives a to the service's Accept; false (and its connection
// closed) when the listener is closed first.
func (p *proxyListener) hand(a accepted) bool {
	select {
	case p.conns <- a:
		return true
	case <-p.done:
		if a.c != nil {
			a.c.Close()
		}
		return false
	}
}

// Accept returns the next connection, its header read when it came from
// a trusted proxy, or the inner listener's error.
func (p *proxyListener) Accept() (net.Conn, error) {
	select {
	case a := <-p.conns:
		return a.c, a.err
	case <-p.done:
		return nil, fmt.Errorf("appliance: accept on %s: %w", p.inner.Addr(), net.ErrClosed)
	}
}

// Close closes the listener and the connections waiting for their
// header, and waits for its goroutines.
func (p *proxyListener) Close() error {
	err := p.inner.Close()
	p.once.Do(func() { close(p.done) })
	p.mu.Lock()
	for c := range p.waiting {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// Addr is the inner listener's address.
func (p *proxyListener) Addr() net.Addr { return p.inner.Addr() }

// errNothingSent: the connection ended before its first byte.
var errNothingSent = errors.New("closed before sending anything")

// readProxyHeader reads the PROXY header that starts c, within timeout,
// and returns c with the header's addresses.
func readProxyHeader(c net.Conn, timeout time.Duration) (net.Conn, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	br := bufio.NewReaderSize(c, proxyHeaderBuffer)
	if _, err := br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errNothingSent
		}
		return nil, err
	}
	h, err := proxyproto.Read(br)
	if err != nil {
		return nil, err
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	pc := &proxiedConn{Conn: c, r: br, remote: c.RemoteAddr(), local: c.LocalAddr()}
	if h.Command.IsLocal() {
		return pc, nil // a health check: the connection's own addresses
	}
	src, dst, ok := h.TCPAddrs()
	if !ok {
		return nil, fmt.Errorf("a PROXY header for %v: want TCP over IPv4 or IPv6", h.TransportProtocol)
	}
	pc.remote, pc.local = src, dst
	return pc, nil
}

// proxiedConn is a connection whose PROXY header has been read: it
// reports the header's addresses and first returns what was read past
// the header.
type proxiedConn struct {
	net.Conn
	mu     sync.Mutex
	r      *bufio.Reader // nil once drained
	remote net.Addr
	local  net.Addr
}

// Read reads what was buffered past the header, then from the
// connection.
func (c *proxiedConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	r := c.r
	if r != nil && r.Buffered() == 0 {
		c.r, r = nil, nil
	}
	c.mu.Unlock()
	if r != nil {
		return r.Read(b)
	}
	return c.Conn.Read(b)
}

// NetConn is the connection beneath, as *tls.Conn has it (services find
// the socket through it, to set socket options).
func (c *proxiedConn) NetConn() net.Conn { return c.Conn }

// RemoteAddr is the client's address, from the header.
func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the address the client connected to, from the header.
func (c *proxiedConn) LocalAddr() net.Addr { return c.local }

// CloseWrite shuts the connection's writing side when it can.
func (c *proxiedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("appliance: this connection cannot close its writing side only")
}
