//go:build linux

package netstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/qdisc/fifo"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// nicID is the ID of the stack's one NIC.
const nicID tcpip.NICID = 1

// Stack is a TCP/IP stack on one link. Its methods are safe for concurrent
// use. Create one with New and stop it with Close.
type Stack struct {
	opts Options
	log  *slog.Logger
	link *Link
	s    *stack.Stack
	ep   stack.LinkEndpoint
	// guard is the first receiver of every inbound packet (see synGuard).
	guard *synGuard
	// vnet reads the link on AF_PACKET with virtio-net headers (vnetrx.go);
	// nil otherwise.
	vnet *vnetReceiver
	// tunnel is the stack's tunnel interface (AddTunnel), or nil.
	tunnel atomic.Pointer[Tunnel]

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // goroutines started by the Stack
	tasks  taskQueue      // work that gVisor callbacks may not do themselves

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when addresses change
	lease   *Lease        // current DHCP lease, or nil
	ndpDNS  []netip.Addr  // servers from router advertisements
	dnsNext int           // round-robin index for the resolver
}

// dispatchMode picks how gVisor reads frames from an AF_PACKET socket.
//
// RecvMMsg reads up to 8 frames per system call and is the fastest mode
// that works on any socket. It is broken on 32-bit platforms: gVisor's
// rawfile.MMsgHdr is laid out for 64-bit (36 bytes on GOARCH=arm against
// the kernel's 32), recvmmsg fails with EMSGSIZE, the dispatcher goroutine
// exits and the stack stops receiving. There we use Readv (one frame per
// read), which has no such structure. TAP devices are not sockets and are
// always read with Readv.
func dispatchMode() fdbased.PacketDispatchMode {
	if strconv.IntSize == 32 || forceReadv.Load() {
		return fdbased.Readv
	}
	return fdbased.RecvMMsg
}

// maxSyscallHeaderBytes keeps gVisor from batching sends with sendmmsg on
// 32-bit platforms, where its mmsghdr has the wrong stride (see
// dispatchMode): below the size of one header, every packet goes out with
// writev. (With the wrong stride the kernel rejects a batch's second
// header, so each sendmmsg sent one packet and failed the rest, which
// gVisor then retried: correct by luck, not by design.) Zero, no limit,
// elsewhere.
func maxSyscallHeaderBytes() int {
	if strconv.IntSize == 32 {
		return int(rawfile.SizeofMMsgHdr) - 1
	}
	return 0
}

// gsoMaxSize returns the largest segment the stack may hand the link, or
// 0 for no GSO.
func gsoMaxSize(l *Link) uint32 {
	if !l.gso {
		return 0
	}
	return 1<<16 - 1
}

// forceReadv is set by tests to cover the 32-bit dispatch path.
var forceReadv atomic.Bool

// New starts a stack on opts.Link. It returns once the link is attached
// and static addresses are configured; DHCP and SLAAC go on in the
// background (see WaitIPv4). On error the link is closed.
func New(opts Options) (_ *Stack, err error) {
	if opts.Link == nil {
		return nil, errors.New("netstack: Options.Link is nil")
	}
	defer func() {
		if err != nil {
			opts.Link.Close()
		}
	}()
	if opts.IPv4.IsValid() && !opts.IPv4.Addr().Is4() {
		return nil, fmt.Errorf("netstack: IPv4 %s is not an IPv4 prefix", opts.IPv4)
	}
	for _, p := range opts.IPv6 {
		if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() {
			return nil, fmt.Errorf("netstack: IPv6 %s is not an IPv6 prefix", p)
		}
	}
	if opts.Gateway4.IsValid() && !opts.Gateway4.Is4() {
		return nil, fmt.Errorf("netstack: Gateway4 %s is not an IPv4 address", opts.Gateway4)
	}
	if opts.Gateway6.IsValid() && !opts.Gateway6.Is6() {
		return nil, fmt.Errorf("netstack: Gateway6 %s is not an IPv6 address", opts.Gateway6)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("link", string(opts.Link.Kind())+":"+opts.Link.Name())
	mtu := opts.Link.mtu
	if opts.MTU > 0 {
		mtu = uint32(opts.MTU)
	}

	routeGVisorLog(log)
	defer func() {
		if err != nil {
			unrouteGVisorLog(log)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	st := &Stack{
		opts:    opts,
		log:     log,
		link:    opts.Link,
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
	}

	ndp := ipv6.DefaultNDPConfigurations()
	if !opts.NoSLAAC {
		ndp.HandleRAs = ipv6.HandlingRAsEnabledWhenForwardingDisabled
		ndp.DiscoverDefaultRouters = true
		ndp.DiscoverOnLinkPrefixes = true
		ndp.AutoGenGlobalAddresses = true
		// No RFC 4941 temporary (privacy) addresses: they are for
		// clients hiding among their connections, while an appliance is
		// a server that wants its one stable SLAAC address, and source
		// address selection would prefer the temporary one for outgoing
		// connections (RFC 6724 rule 7).
		ndp.AutoGenTempGlobalAddresses = false
	}
	st.s = stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocol,
			ipv6.NewProtocolWithOptions(ipv6.Options{
				NDPConfigs:       ndp,
				AutoGenLinkLocal: true,
				NDPDisp:          (*ndpDispatcher)(st),
			}),
			arp.NewProtocol,
		},
		TransportProtocols: []stack.TransportProtocolFactory{
			tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6,
		},
		// Connections from the stack to its own addresses go through the
		// stack, as they would through the kernel's loopback.
		HandleLocal: true,
	})
	st.tasks.wake = make(chan struct{}, 1)
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		st.tasks.run(ctx)
	}()
	defer func() {
		if err != nil {
			cancel()
			st.wg.Wait()
			if st.guard != nil {
				st.guard.shutdown()
			}
			opts.Link.quiesce()
			st.s.Destroy()
		}
	}()
	if err := tune(st.s); err != nil {
		return nil, fmt.Errorf("netstack: %w", err)
	}

	mode := dispatchMode()
	// On an AF_PACKET link with virtio-net headers, frames are read by
	// a vnetReceiver (vnetrx.go), which honours the kernel's checksum
	// verdicts and unsegmented TCP, and fdbased only sends, on a socket
	// of its own. Elsewhere (TAP, 32-bit, no PACKET_VNET_HDR) fdbased does
	// both on the link's socket.
	ioFD := opts.Link.fd
	vnetRX := opts.Link.kind == KindPacket && opts.Link.txfd >= 0 && mode == fdbased.RecvMMsg
	if vnetRX {
		ioFD = opts.Link.txfd
	}
	st.ep, err = fdbased.New(&fdbased.Options{
		FDs:                []int{ioFD},
		MTU:                mtu,
		EthernetHeader:     true,
		Address:            tcpip.LinkAddress(opts.Link.mac),
		PacketDispatchMode: mode,
		// Host GSO where the link carries virtio-net headers: TCP
		// builds segments of up to 64 KiB and the kernel cuts them into
		// frames. Sending bulk data costs a tenth of the CPU it does a
		// frame at a time (bench/netstack, 2026-11-26; the run is in
		// the git history of bench/README.md).
		GSOMaxSize: gsoMaxSize(opts.Link),
		// One processor: frames are handed to the stack on the reading
		// goroutine. With more, fdbased starts processor goroutines for
		// a readv dispatcher that it then discards unused for sockets in
		// RecvMMsg mode, and never stops them (a leak per Stack); on the
		// small boards we target a second hand-off buys little anyway.
		ProcessorsPerChannel:  1,
		MaxSyscallHeaderBytes: maxSyscallHeaderBytes(),
		ClosedFunc:            st.linkClosed,
		// The link is set up already (OpenPacket, OpenTAP). Without this
		// fdbased puts an AF_PACKET socket into a PACKET_FANOUT group,
		// which is of no use with one socket, and fails where the
		// option is missing (qemu-user, which runs our ARM tests).
		PreConfigured:  true,
		IsPacketSocket: []bool{opts.Link.kind == KindPacket},
	})
	if err != nil {
		return nil, fmt.Errorf("netstack: link endpoint: %w", err)
	}
	if vnetRX {
		st.vnet = newVnetReceiver(opts.Link.fd, tcpip.LinkAddress(opts.Link.mac), st.ep, st.linkClosed)
		st.ep = st.vnet
	}
	st.guard = newSynGuard(st, st.ep)
	st.ep = st.guard
	// A FIFO queueing discipline, as gVisor's runsc uses: outgoing packets
	// from all connections are queued and written by one goroutine in
	// batches (one sendmmsg for several), instead of one system call per
	// packet on the sending goroutine. +10 % connections/s, +13 % bulk
	// sending on the veth benchmark (bench/netstack, 2026-11-26; in
	// the git history of bench/README.md).
	nicOpts := stack.NICOptions{Name: opts.Link.Name(), QDisc: fifo.New(st.ep, 1, 1000)}
	if terr := st.s.CreateNICWithOptions(nicID, st.ep, nicOpts); terr != nil {
		return nil, fmt.Errorf("netstack: create NIC: %s", terr)
	}

	if opts.IPv4.IsValid() {
		if err := st.addAddress(opts.IPv4); err != nil {
			return nil, err
		}
	}
	if opts.Gateway4.IsValid() {
		st.s.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, Gateway: toAddr(opts.Gateway4), NIC: nicID})
	}
	for _, p := range opts.IPv6 {
		if err := st.addAddress(p); err != nil {
			return nil, err
		}
	}
	if opts.Gateway6.IsValid() {
		st.s.AddRoute(tcpip.Route{Destination: header.IPv6EmptySubnet, Gateway: toAddr(opts.Gateway6), NIC: nicID})
	}

	if !opts.IPv4.IsValid() && !opts.NoDHCP {
		c, err := newDHCPClient(st)
		if err != nil {
			return nil, err
		}
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			c.run(st.ctx)
		}()
	}
	for _, note := range opts.Link.notes {
		if vnetRX && errors.Is(note, errRXCsumOn) {
			// Expected on virtio-net, and handled: not worth a
			// console line at every boot (printing it took 20 ms
			// of a boot under TCG).
			log.Debug("link set-up", "err", note, "handled", "by the virtio-net header's checksum flags")
			continue
		}
		log.Warn("link set-up", "err", note)
	}
	dispatch := mode.String()
	if vnetRX {
		dispatch = "RecvMMsg with virtio-net headers"
	}
	log.Info("netstack up", "mac", opts.Link.MAC().String(), "mtu", mtu, "dispatch", dispatch)
	return st, nil
}

// linkClosed is called by the link endpoint when its reader stops.
func (st *Stack) linkClosed(err tcpip.Error) {
	if st.ctx.Err() != nil {
		return // Close stopped it
	}
	st.log.Error("netstack: link reader stopped; no more frames will be received", "err", fmt.Sprint(err))
}

// Close stops the stack: it releases a DHCP lease, aborts every listener
// and connection, stops the link's goroutines and closes the link. It
// waits for every goroutine the stack started. Calls after the first
// return the first call's result.
//
// gVisor's link endpoint has no way to close the eventfds it uses to stop
// its reader, so each Stack leaves two of them open: nothing for the one
// stack an appliance runs, worth knowing for a program that makes
// thousands.
func (st *Stack) Close() error {
	st.closeOnce.Do(func() {
		st.cancel()
		st.wg.Wait() // the DHCP client releases its lease before it returns
		st.guard.shutdown()
		if t := st.tunnel.Load(); t != nil {
			t.Close()
		}
		if err := st.link.quiesce(); err != nil {
			st.log.Warn("stop the link's input", "err", err)
		}
		st.s.Destroy()
		st.closeErr = st.link.Close()
		st.log.Info("netstack closed")
		unrouteGVisorLog(st.log)
	})
	return st.closeErr
}

// addAddress adds a permanent address and a route to its subnet.
func (st *Stack) addAddress(p netip.Prefix) error {
	proto := ipv4.ProtocolNumber
	if p.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: toAddr(p.Addr()), PrefixLen: p.Bits()},
	}
	if terr := st.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
		return fmt.Errorf("netstack: add address %s: %s", p, terr)
	}
	st.s.AddRoute(tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: nicID})
	st.log.Info("address added", "addr", p.String())
	st.notifyChanged()
	return nil
}

// removeAddress removes an address and the route to its subnet.
func (st *Stack) removeAddress(p netip.Prefix) {
	a := toAddr(p.Addr())
	if terr := st.s.RemoveAddress(nicID, a); terr != nil {
		st.log.Warn("remove address", "addr", p.String(), "err", terr.String())
	}
	subnet := tcpip.AddressWithPrefix{Address: a, PrefixLen: p.Bits()}.Subnet()
	st.s.RemoveRoutes(func(r tcpip.Route) bool { return r.Destination == subnet && r.Gateway == (tcpip.Address{}) })
	st.log.Info("address removed", "addr", p.String())
	st.notifyChanged()
}

// replaceRoute adds r, replacing an equal route; it reports whether r is
// new.
func (st *Stack) replaceRoute(r tcpip.Route) bool {
	n := st.s.RemoveRoutes(func(x tcpip.Route) bool { return x == r })
	st.s.AddRoute(r)
	return n == 0
}

// taskQueue runs queued functions in order on one goroutine.
type taskQueue struct {
	mu    sync.Mutex
	queue []func()
	wake  chan struct{}
}

func (q *taskQueue) push(f func()) {
	q.mu.Lock()
	q.queue = append(q.queue, f)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *taskQueue) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		q.mu.Lock()
		fs := q.queue
		q.queue = nil
		q.mu.Unlock()
		for _, f := range fs {
			f()
		}
	}
}

func (st *Stack) notifyChanged() {
	st.mu.Lock()
	close(st.changed)
	st.changed = make(chan struct{})
	st.mu.Unlock()
}

// Addrs returns the stack's addresses with their prefix lengths: IPv4,
// IPv6 link-local, static and SLAAC addresses (including ones still
// undergoing duplicate address detection).
func (st *Stack) Addrs() []netip.Prefix {
	var out []netip.Prefix
	for _, pa := range st.s.AllAddresses()[nicID] {
		a := fromAddr(pa.AddressWithPrefix.Address)
		// gVisor lists 255.255.255.255 (it binds the broadcast address
		// internally) and the DHCP client's 0.0.0.0.
		if !a.IsValid() || a.IsUnspecified() || a == broadcast || a.IsMulticast() {
			continue
		}
		out = append(out, netip.PrefixFrom(a, pa.AddressWithPrefix.PrefixLen))
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}

// MAC returns the stack's hardware address.
func (st *Stack) MAC() net.HardwareAddr { return st.link.MAC() }

// WaitIPv4 waits until the stack has an IPv4 address (static, or from a
// DHCP lease) and returns it. It returns ctx's error if ctx ends first,
// and ErrClosed if the stack is closed.
func (st *Stack) WaitIPv4(ctx context.Context) (netip.Prefix, error) {
	for {
		st.mu.Lock()
		ch := st.changed
		st.mu.Unlock()
		for _, p := range st.Addrs() {
			if p.Addr().Is4() {
				return p, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return netip.Prefix{}, ctx.Err()
		case <-st.ctx.Done():
			return netip.Prefix{}, ErrClosed
		}
	}
}

// Lease returns the current DHCP lease, if there is one.
func (st *Stack) Lease() (Lease, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.lease == nil {
		return Lease{}, false
	}
	return *st.lease, true
}

func (st *Stack) setLease(l *Lease) {
	st.mu.Lock()
	st.lease = l
	st.mu.Unlock()
}

// toAddr converts a netip.Addr to a tcpip.Address (IPv4 as 4 bytes).
func toAddr(a netip.Addr) tcpip.Address {
	if !a.IsValid() {
		return tcpip.Address{}
	}
	a = a.Unmap()
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// fromAddr converts a tcpip.Address to a netip.Addr (invalid if empty).
func fromAddr(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip
}
