//go:build linux

package netstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// listenBacklog matches the Linux default somaxconn, as the standard
// library's listeners get.
const listenBacklog = 4096

// Listen announces on the stack's addresses, like net.Listen. network is
// "tcp", "tcp4" or "tcp6"; address is "host:port" where host is empty, an
// IP address of the stack or an unspecified address, and port is a
// number (0 picks one). "tcp" with no host listens on IPv4 and IPv6.
func (st *Stack) Listen(network, address string) (net.Listener, error) {
	opErr := func(err error) error { return &net.OpError{Op: "listen", Net: network, Err: err} }
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, opErr(net.UnknownNetworkError(network))
	}
	if st.ctx.Err() != nil {
		return nil, opErr(ErrClosed)
	}
	fa, proto, v6only, err := parseLocal(network, address)
	if err != nil {
		return nil, opErr(err)
	}
	var wq waiter.Queue
	ep, terr := st.s.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, opErr(toError(terr))
	}
	if proto == ipv6.ProtocolNumber {
		ep.SocketOptions().SetV6Only(v6only)
	}
	// As the standard library does, so that a restarted service can bind
	// while connections of its previous life are in TIME-WAIT.
	ep.SocketOptions().SetReuseAddress(true)
	if terr := ep.Bind(fa); terr != nil {
		ep.Close()
		return nil, &net.OpError{Op: "listen", Net: network, Addr: tcpAddr(fa), Err: toError(terr)}
	}
	if terr := ep.Listen(listenBacklog); terr != nil {
		ep.Close()
		return nil, &net.OpError{Op: "listen", Net: network, Addr: tcpAddr(fa), Err: toError(terr)}
	}
	return &listener{st: st, ep: ep, wq: &wq, network: network, done: make(chan struct{})}, nil
}

// ListenPacket announces on the stack's addresses, like net.ListenPacket.
// network is "udp", "udp4" or "udp6"; address is as for Listen.
func (st *Stack) ListenPacket(network, address string) (net.PacketConn, error) {
	opErr := func(err error) error { return &net.OpError{Op: "listen", Net: network, Err: err} }
	if network != "udp" && network != "udp4" && network != "udp6" {
		return nil, opErr(net.UnknownNetworkError(network))
	}
	if st.ctx.Err() != nil {
		return nil, opErr(ErrClosed)
	}
	fa, proto, v6only, err := parseLocal(network, address)
	if err != nil {
		return nil, opErr(err)
	}
	var wq waiter.Queue
	ep, terr := st.s.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, opErr(toError(terr))
	}
	if proto == ipv6.ProtocolNumber {
		ep.SocketOptions().SetV6Only(v6only)
	}
	if terr := ep.Bind(fa); terr != nil {
		ep.Close()
		return nil, &net.OpError{Op: "listen", Net: network, Addr: udpAddr(fa), Err: toError(terr)}
	}
	return &udpConn{UDPConn: gonet.NewUDPConn(&wq, ep), v4: proto == ipv4.ProtocolNumber}, nil
}

// Dial connects to address on the named network, like net.Dial; see
// DialContext.
func (st *Stack) Dial(network, address string) (net.Conn, error) {
	return st.DialContext(context.Background(), network, address)
}

// DialContext connects to address on the named network, like
// net.Dialer.DialContext. network is "tcp", "tcp4", "tcp6", "udp", "udp4"
// or "udp6"; address is "host:port", where host is an IP address or a
// name looked up with the stack's Resolver (each address it returns is
// tried in turn).
func (st *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	opErr := func(err error) error { return &net.OpError{Op: "dial", Net: network, Err: err} }
	var isTCP bool
	switch network {
	case "tcp", "tcp4", "tcp6":
		isTCP = true
	case "udp", "udp4", "udp6":
	default:
		return nil, opErr(net.UnknownNetworkError(network))
	}
	if st.ctx.Err() != nil {
		return nil, opErr(ErrClosed)
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, opErr(err)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return nil, opErr(err)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip.Unmap()}
	} else {
		ipNet := "ip" + network[3:]
		ips, err = st.Resolver().LookupNetIP(ctx, ipNet, host)
		if err != nil {
			return nil, opErr(err)
		}
	}
	var firstErr error
	for _, ip := range ips {
		ip = ip.Unmap()
		if (network[3:] == "4" && !ip.Is4()) || (network[3:] == "6" && !ip.Is6()) {
			continue
		}
		var c net.Conn
		if isTCP {
			c, err = st.dialTCP(ctx, ip, port)
		} else {
			c, err = st.dialUDP(ip, port)
		}
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if firstErr == nil {
		firstErr = &net.AddrError{Err: "no suitable address found", Addr: host}
	}
	var oe *net.OpError
	if errors.As(firstErr, &oe) {
		oe.Net = network
		return nil, oe
	}
	return nil, opErr(firstErr)
}

func (st *Stack) dialTCP(ctx context.Context, ip netip.Addr, port uint16) (net.Conn, error) {
	remote := tcpip.FullAddress{Addr: toAddr(ip), Port: port, NIC: nicIDFor(ip)}
	opErr := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Addr: tcpAddr(remote), Err: err} }
	proto := protoOf(ip)
	var wq waiter.Queue
	ep, terr := st.s.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, opErr(toError(terr))
	}
	tuneEndpoint(ep)
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr = ep.Connect(remote)
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, opErr(mapCtxErr(ctx.Err()))
		case <-st.ctx.Done():
			ep.Close()
			return nil, opErr(ErrClosed)
		case <-notify:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, opErr(toError(terr))
	}
	return &tcpConn{TCPConn: gonet.NewTCPConn(&wq, ep)}, nil
}

func (st *Stack) dialUDP(ip netip.Addr, port uint16) (net.Conn, error) {
	remote := tcpip.FullAddress{Addr: toAddr(ip), Port: port, NIC: nicIDFor(ip)}
	opErr := func(err error) error { return &net.OpError{Op: "dial", Net: "udp", Addr: udpAddr(remote), Err: err} }
	proto := protoOf(ip)
	var wq waiter.Queue
	ep, terr := st.s.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, opErr(toError(terr))
	}
	if terr := ep.Connect(remote); terr != nil {
		ep.Close()
		return nil, opErr(toError(terr))
	}
	return &udpConn{UDPConn: gonet.NewUDPConn(&wq, ep), v4: proto == ipv4.ProtocolNumber}, nil
}

// mapCtxErr turns a context deadline into the timeout error the standard
// library's dialer returns.
func mapCtxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errTimeout{}
	}
	return err
}

// errTimeout is an i/o timeout, as net's own; it matches
// os.ErrDeadlineExceeded and context.DeadlineExceeded with errors.Is.
type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }
func (errTimeout) Is(err error) bool {
	return err == context.DeadlineExceeded
}

func protoOf(ip netip.Addr) tcpip.NetworkProtocolNumber {
	if ip.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// parseLocal parses a local "host:port" for network ("tcp", "udp4", ...).
func parseLocal(network, address string) (fa tcpip.FullAddress, proto tcpip.NetworkProtocolNumber, v6only bool, err error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return fa, 0, false, err
	}
	port, err := parsePort(portStr)
	if err != nil {
		return fa, 0, false, err
	}
	fa.Port = port
	family := network[3:] // "", "4" or "6"
	if host == "" {
		switch family {
		case "4":
			return fa, ipv4.ProtocolNumber, false, nil
		case "6":
			return fa, ipv6.ProtocolNumber, true, nil
		}
		return fa, ipv6.ProtocolNumber, false, nil // dual stack
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fa, 0, false, &net.AddrError{Err: "not an IP address", Addr: host}
	}
	ip = ip.Unmap()
	if (family == "4" && !ip.Is4()) || (family == "6" && !ip.Is6()) {
		return fa, 0, false, &net.AddrError{Err: "address family does not match network " + network, Addr: host}
	}
	if ip.IsUnspecified() {
		if ip.Is4() {
			return fa, ipv4.ProtocolNumber, false, nil
		}
		return fa, ipv6.ProtocolNumber, family == "6", nil
	}
	fa.Addr = toAddr(ip)
	return fa, protoOf(ip), false, nil
}

func parsePort(s string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, &net.AddrError{Err: "invalid port", Addr: s}
	}
	return uint16(p), nil
}

func tcpAddr(fa tcpip.FullAddress) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IP(fa.Addr.AsSlice()), Port: int(fa.Port)}
}

func udpAddr(fa tcpip.FullAddress) *net.UDPAddr {
	return &net.UDPAddr{IP: net.IP(fa.Addr.AsSlice()), Port: int(fa.Port)}
}

// toError converts a gVisor error to the errno the kernel would return,
// so that callers can test it with errors.Is(err, syscall.ECONNREFUSED)
// as they would with host sockets.
func toError(terr tcpip.Error) error {
	switch terr.(type) {
	case *tcpip.ErrConnectionRefused:
		return syscall.ECONNREFUSED
	case *tcpip.ErrConnectionReset:
		return syscall.ECONNRESET
	case *tcpip.ErrConnectionAborted:
		return syscall.ECONNABORTED
	case *tcpip.ErrNetworkUnreachable:
		return syscall.ENETUNREACH
	case *tcpip.ErrHostUnreachable:
		return syscall.EHOSTUNREACH
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	case *tcpip.ErrPortInUse:
		return syscall.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return syscall.EADDRNOTAVAIL
	case *tcpip.ErrClosedForSend:
		return syscall.EPIPE
	}
	return errors.New(terr.String())
}

// listener is a net.Listener on a gVisor TCP endpoint. Unlike gonet's, a
// blocked Accept returns net.ErrClosed when the listener or the stack is
// closed, and accepted connections get the stack's keepalive settings.
type listener struct {
	st      *Stack
	ep      tcpip.Endpoint
	wq      *waiter.Queue
	network string
	once    sync.Once
	done    chan struct{}
}

var _ net.Listener = (*listener)(nil)

// Accept implements net.Listener.
func (l *listener) Accept() (net.Conn, error) {
	entry, notify := waiter.NewChannelEntry(waiter.ReadableEvents)
	l.wq.EventRegister(&entry)
	defer l.wq.EventUnregister(&entry)
	for {
		select {
		case <-l.done:
			return nil, l.opErr(ErrClosed)
		default:
		}
		ep, wq, terr := l.ep.Accept(nil)
		if terr == nil {
			tuneEndpoint(ep)
			return &tcpConn{TCPConn: gonet.NewTCPConn(wq, ep)}, nil
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			if l.st.ctx.Err() != nil {
				return nil, l.opErr(ErrClosed)
			}
			return nil, l.opErr(toError(terr))
		}
		select {
		case <-notify:
		case <-l.done:
			return nil, l.opErr(ErrClosed)
		case <-l.st.ctx.Done():
			return nil, l.opErr(ErrClosed)
		}
	}
}

func (l *listener) opErr(err error) error {
	return &net.OpError{Op: "accept", Net: l.network, Addr: l.Addr(), Err: err}
}

// Close implements net.Listener.
func (l *listener) Close() error {
	err := error(nil)
	closed := false
	l.once.Do(func() {
		closed = true
		close(l.done)
		l.ep.Close()
	})
	if !closed {
		err = &net.OpError{Op: "close", Net: l.network, Err: ErrClosed}
	}
	return err
}

// Addr implements net.Listener.
func (l *listener) Addr() net.Addr {
	fa, terr := l.ep.GetLocalAddress()
	if terr != nil {
		return &net.TCPAddr{}
	}
	return tcpAddr(fa)
}

// tcpConn is gonet's TCPConn (deadlines, CloseRead, CloseWrite) made to
// report net.ErrClosed for use after Close, as *net.TCPConn does.
type tcpConn struct {
	*gonet.TCPConn
	closed atomic.Bool
}

var _ interface {
	net.Conn
	CloseWrite() error
	CloseRead() error
} = (*tcpConn)(nil)

func (c *tcpConn) closedErr(op string) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: ErrClosed}
}

// Read implements net.Conn.
func (c *tcpConn) Read(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.closedErr("read")
	}
	n, err := c.TCPConn.Read(b)
	if err != nil && c.closed.Load() {
		err = c.closedErr("read")
	}
	return n, err
}

// Write implements net.Conn.
func (c *tcpConn) Write(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.closedErr("write")
	}
	n, err := c.TCPConn.Write(b)
	if err != nil && c.closed.Load() {
		err = c.closedErr("write")
	}
	return n, err
}

// Close implements net.Conn.
func (c *tcpConn) Close() error {
	if c.closed.Swap(true) {
		return c.closedErr("close")
	}
	return c.TCPConn.Close()
}

// udpConn is gonet's UDPConn made to report net.ErrClosed after Close and
// to accept any *net.UDPAddr (IPv4 in 16-byte form included) in WriteTo.
type udpConn struct {
	*gonet.UDPConn
	v4     bool // the endpoint is IPv4
	closed atomic.Bool
}

var _ net.PacketConn = (*udpConn)(nil)
var _ net.Conn = (*udpConn)(nil)

func (c *udpConn) closedErr(op string) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Err: ErrClosed}
}

// Read implements net.Conn.
func (c *udpConn) Read(b []byte) (int, error) {
	n, _, err := c.ReadFrom(b)
	return n, err
}

// ReadFrom implements net.PacketConn.
func (c *udpConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if c.closed.Load() {
		return 0, nil, c.closedErr("read")
	}
	n, addr, err := c.UDPConn.ReadFrom(b)
	if err != nil && c.closed.Load() {
		err = c.closedErr("read")
	}
	return n, addr, err
}

// Write implements net.Conn.
func (c *udpConn) Write(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.closedErr("write")
	}
	return c.UDPConn.Write(b)
}

// WriteTo implements net.PacketConn.
func (c *udpConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.closed.Load() {
		return 0, c.closedErr("write")
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: syscall.EINVAL}
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: syscall.EINVAL}
	}
	if c.v4 {
		ip = ip.Unmap()
	} else if ip.Is4() {
		ip = netip.AddrFrom16(ip.As16()) // v4-mapped, for a dual-stack socket
	}
	return c.UDPConn.WriteTo(b, &net.UDPAddr{IP: ip.AsSlice(), Port: ua.Port})
}

// Close implements net.Conn.
func (c *udpConn) Close() error {
	if c.closed.Swap(true) {
		return c.closedErr("close")
	}
	return c.UDPConn.Close()
}
