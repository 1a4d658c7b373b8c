package tunnel

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.zx2c4.com/wireguard/device"

	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/signpost"
)

// DefaultPort is the WireGuard port (UDP) and the join port (TCP).
const DefaultPort = signpost.DefaultPort

// TunnelMTU is the MTU of the tunnel interface: WireGuard's default, for
// an outer link of 1500 bytes (80 bytes of IPv6, UDP and WireGuard
// headers).
const TunnelMTU = 1420

// Config configures a Node.
type Config struct {
	// Dir is the data directory (the node's keys and state are in
	// DIR/node/signpost).
	Dir string
	// Stack is the appliance's netstack: the tunnel is its second
	// interface, and WireGuard's own UDP goes out on it.
	Stack *netstack.Stack
	// Port is the WireGuard UDP port and the join TCP port. Zero means
	// DefaultPort.
	Port int
	// Logger receives the node's records. Nil discards them.
	Logger *slog.Logger
	// Poll is how often the node looks for changes to its state made by
	// the host tool (`nymote peer del`). Zero means a second.
	Poll time.Duration
}

// Node is a running member of a person's network: WireGuard on the
// appliance's netstack, the join endpoint, and the relay of a hub.
type Node struct {
	cfg  Config
	log  *slog.Logger
	id   *signpost.Identity
	dev  *device.Device
	tun  *tunDevice
	join net.Listener
	srv  *http.Server

	dnsServers []*dns.Server
	dnsConns   []net.PacketConn
	dnsWG      sync.WaitGroup

	v4, v6 netip.Addr
	net    signpost.NetworkID

	mu      sync.Mutex // held by Reload, Close, and readers of dev
	stateMu sync.Mutex // guards state, for the name server
	state   *signpost.State
	stamp   string                // the state file's size and time when last read
	peers   map[signpost.Key]bool // configured WireGuard peers
	refused atomic.Uint64         // handshakes refused
	hub     atomic.Bool           // this node relays
	local   map[netip.Addr]bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start starts the node: it makes the node's keys at first start, adds the
// tunnel interface with the node's addresses to the stack, brings
// WireGuard up with the node's peers, and serves joins.
func Start(cfg Config) (_ *Node, err error) {
	if cfg.Stack == nil {
		return nil, errors.New("signpost: Config.Stack is nil")
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Poll == 0 {
		cfg.Poll = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id, err := signpost.LoadOrCreateIdentity(cfg.Dir)
	if err != nil {
		return nil, err
	}
	st, err := signpost.ReadState(cfg.Dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, log: log.With("service", "signpost"), id: id, peers: map[signpost.Key]bool{}, ctx: ctx, cancel: cancel}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if err := n.up(st); err != nil {
		return nil, err
	}
	n.join, err = cfg.Stack.Listen("tcp", fmt.Sprintf(":%d", cfg.Port))
	if err != nil {
		return nil, fmt.Errorf("signpost: join listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(signpost.JoinPath, signpost.JoinHandler(cfg.Dir, func(p signpost.Peer) {
		n.log.Info("node joined", "name", p.Name, "key", p.WG.String())
		if err := n.Reload(); err != nil {
			n.log.Error("reload after join", "err", err)
		}
	}))
	n.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		n.srv.Serve(n.join)
	}()
	go func() {
		defer n.wg.Done()
		n.watch()
	}()
	n.log.Info("signpost up", "network", st.Network.String(), "zone", st.Zone(), "addr4", n.v4.String(), "addr6", n.v6.String(),
		"key", id.WG.String(), "port", cfg.Port, "peers", len(st.Peers), "hub", st.IsHub())
	return n, nil
}

// up brings WireGuard up in st's network: the tunnel interface with the
// node's addresses in it, the device with its peers, and the name server.
func (n *Node) up(st *signpost.State) error {
	n.net = st.Network
	n.v4, n.v6 = st.Network.Addrs(n.id.WG)
	n.local = map[netip.Addr]bool{n.v4: true, n.v6: true}
	tunnel, err := n.cfg.Stack.AddTunnel("wg0", TunnelMTU, []netip.Addr{n.v4, n.v6}, []netip.Prefix{st.Network.Prefix4(), st.Network.Prefix6()})
	if err != nil {
		return err
	}
	n.tun = newTunDevice(tunnel, n.relays)
	n.dev = device.NewDevice(n.tun, &stackBind{listen: n.cfg.Stack.ListenPacket}, n.wgLogger())
	n.peers = map[signpost.Key]bool{}
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=%d\n", hex.EncodeToString(n.id.WGPrivate[:]), n.cfg.Port)
	if err := n.dev.IpcSet(b.String()); err != nil {
		return fmt.Errorf("signpost: configure WireGuard: %w", err)
	}
	if err := n.apply(st); err != nil {
		return err
	}
	if err := n.dev.Up(); err != nil {
		return fmt.Errorf("signpost: WireGuard up: %w", err)
	}
	if err := n.serveDNS(); err != nil {
		return fmt.Errorf("signpost: name server: %w", err)
	}
	return nil
}

// down stops what up started.
func (n *Node) down() {
	for _, s := range n.dnsServers {
		s.Shutdown()
	}
	for _, pc := range n.dnsConns {
		pc.Close() // a server not yet started when Shutdown came
	}
	n.dnsWG.Wait()
	n.dnsServers, n.dnsConns = nil, nil
	if n.dev != nil {
		n.dev.Close() // closes the tun device (and the tunnel) and the bind
	} else if n.tun != nil {
		n.tun.Close()
	}
	n.dev, n.tun = nil, nil
}

// Addrs returns the node's tunnel addresses.
func (n *Node) Addrs() (v4, v6 netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.v4, n.v6
}

// Identity returns the node's keys.
func (n *Node) Identity() *signpost.Identity { return n.id }

// Refused returns how many handshakes from unknown or revoked keys the
// node has refused.
func (n *Node) Refused() uint64 { return n.refused.Load() }

// HasPeer reports whether WireGuard has the peer with key k configured.
func (n *Node) HasPeer(k signpost.Key) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dev != nil && n.dev.LookupPeer(device.NoisePublicKey(k)) != nil
}

// LastHandshake returns the time of the last handshake with the peer with
// key k (zero if none).
func (n *Node) LastHandshake(k signpost.Key) time.Time {
	var b bytes.Buffer
	n.mu.Lock()
	dev := n.dev
	n.mu.Unlock()
	if dev == nil {
		return time.Time{}
	}
	if err := dev.IpcGetOperation(&b); err != nil {
		return time.Time{}
	}
	cur := false
	want := "public_key=" + hex.EncodeToString(k[:])
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, "public_key=") {
			cur = line == want
		}
		if v, ok := strings.CutPrefix(line, "last_handshake_time_sec="); ok && cur {
			var s int64
			fmt.Sscan(v, &s)
			if s == 0 {
				return time.Time{}
			}
			return time.Unix(s, 0)
		}
	}
	return time.Time{}
}

// relays reports whether a packet from a peer for dst is relayed to
// another peer rather than delivered to the stack.
func (n *Node) relays(dst netip.Addr) bool {
	if !n.hub.Load() || n.local[dst] {
		return false
	}
	return n.net.Prefix6().Contains(dst) || n.net.Prefix4().Contains(dst)
}

// wgLogger turns wireguard-go's log lines into records, and counts the
// handshakes it refuses.
func (n *Node) wgLogger() *device.Logger {
	var last atomic.Int64
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if strings.HasPrefix(format, "Received invalid initiation message") {
				n.refused.Add(1)
				// At most one record a second: a flood must not flood the log.
				if now := time.Now().Unix(); last.Swap(now) != now {
					n.log.Warn("handshake refused: the key is not one of this network's (unknown or revoked)", "from", fmt.Sprint(args...))
				}
				return
			}
			n.log.Debug("wireguard: " + fmt.Sprintf(format, args...))
		},
		Errorf: func(format string, args ...any) {
			n.log.Warn("wireguard: " + fmt.Sprintf(format, args...))
		},
	}
}

// apply configures WireGuard's peers from the state: each peer with its
// tunnel addresses, a hub also with the network's prefixes when this node
// is not a hub itself (it reaches the rest of the network through it), its
// endpoint if it has one, and keepalives towards it from behind NAT.
func (n *Node) apply(st *signpost.State) error {
	n.hub.Store(st.IsHub())
	want := map[signpost.Key]bool{}
	var b strings.Builder
	routedHub := false
	for _, p := range st.Peers {
		if st.IsRevoked(p.WG) || p.WG == n.id.WG {
			continue
		}
		want[p.WG] = true
		fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(p.WG[:]))
		if n.peers[p.WG] {
			b.WriteString("update_only=true\n")
		}
		b.WriteString("replace_allowed_ips=true\n")
		v4, v6 := n.net.Addrs(p.WG)
		fmt.Fprintf(&b, "allowed_ip=%s/32\nallowed_ip=%s/128\n", v4, v6)
		if p.Hub && !st.IsHub() && !routedHub {
			routedHub = true
			fmt.Fprintf(&b, "allowed_ip=%s\nallowed_ip=%s\n", n.net.Prefix4(), n.net.Prefix6())
		}
		if p.Endpoint != "" && !n.peers[p.WG] {
			ap, err := n.resolve(p.Endpoint)
			if err != nil {
				n.log.Warn("peer endpoint", "peer", p.Name, "endpoint", p.Endpoint, "err", err)
			} else {
				fmt.Fprintf(&b, "endpoint=%s\n", ap)
			}
			if !st.IsHub() {
				fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", signpost.KeepaliveSeconds)
			}
		}
	}
	for k := range n.peers {
		if !want[k] {
			fmt.Fprintf(&b, "public_key=%s\nremove=true\n", hex.EncodeToString(k[:]))
			n.log.Info("peer removed", "key", k.String())
		}
	}
	if b.Len() > 0 {
		if err := n.dev.IpcSet(b.String()); err != nil {
			return fmt.Errorf("signpost: configure WireGuard peers: %w", err)
		}
	}
	n.peers = want
	n.stateMu.Lock()
	n.state = st
	n.stateMu.Unlock()
	return nil
}

// resolve turns HOST:PORT into an address, through the stack's resolver
// for a name.
func (n *Node) resolve(ep string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(ep); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	ips, err := n.cfg.Stack.Resolver().LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %v", host, err)
	}
	return netip.ParseAddrPort(net.JoinHostPort(ips[0].Unmap().String(), port))
}

// Reload reads the node's state again and applies it.
func (n *Node) Reload() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stamp = stateStamp(n.cfg.Dir)
	st, err := signpost.ReadState(n.cfg.Dir)
	if err != nil {
		return err
	}
	if st.Network != n.net {
		// The node joined another network (peer join on its data
		// directory): new addresses, so a new tunnel.
		n.log.Info("the node's network changed: restarting its tunnel", "was", n.net.String(), "now", st.Network.String())
		n.down()
		if err := n.up(st); err != nil {
			return err
		}
		n.log.Info("signpost up", "network", st.Network.String(), "zone", st.Zone(), "addr4", n.v4.String(), "addr6", n.v6.String(), "peers", len(st.Peers))
		return nil
	}
	return n.apply(st)
}

func stateStamp(dir string) string {
	fi, err := os.Stat(signpost.StatePath(dir))
	if err != nil {
		return ""
	}
	return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
}

// watch reloads the state when the host tool changes it.
func (n *Node) watch() {
	t := time.NewTicker(n.cfg.Poll)
	defer t.Stop()
	n.mu.Lock()
	n.stamp = stateStamp(n.cfg.Dir)
	n.mu.Unlock()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.mu.Lock()
		changed := stateStamp(n.cfg.Dir) != n.stamp
		n.mu.Unlock()
		if changed {
			if err := n.Reload(); err != nil {
				n.log.Error("reload state", "err", err)
			}
		}
	}
}

// Close stops the node: the join endpoint, WireGuard, the name server and
// the tunnel interface.
func (n *Node) Close() error {
	n.cancel()
	if n.srv != nil {
		n.srv.Close()
	} else if n.join != nil {
		n.join.Close()
	}
	n.wg.Wait()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down()
	return nil
}
