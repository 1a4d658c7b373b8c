package signpost

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
)

// StateReader gives a node's state to a reader in another process than
// the one that changes it (jitsu, a replica engine beside the running
// node): it reads the state file again when it has changed (a join,
// `nymote peer del`), and keeps the last good state if a read fails.
type StateReader struct {
	dir  string
	self Key

	mu    sync.Mutex
	stamp string
	st    *State
}

// NewStateReader reads the state of the node whose data directory is dir;
// the node must have its keys (ErrNoIdentity otherwise).
func NewStateReader(dir string) (*StateReader, error) {
	id, err := LoadIdentity(dir)
	if err != nil {
		return nil, err
	}
	r := &StateReader{dir: dir, self: id.WG}
	if _, err := r.State(); err != nil {
		return nil, err
	}
	return r, nil
}

// Self is the node's WireGuard key.
func (r *StateReader) Self() Key { return r.self }

// State returns the node's state as of its file now. Do not change it.
func (r *StateReader) State() (*State, error) {
	stamp := ""
	if fi, err := os.Stat(StatePath(r.dir)); err == nil {
		stamp = fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st != nil && stamp == r.stamp {
		return r.st, nil
	}
	st, err := ReadState(r.dir)
	if err != nil {
		if r.st != nil {
			return r.st, nil
		}
		return nil, err
	}
	r.st, r.stamp = st, stamp
	return st, nil
}

// ReplicaTunnel is what a replica engine (package replica, Options.Tunnel)
// needs of the tunnel: it reaches the network's nodes through it, and
// takes the tunnel's authentication of a node's key as the node's
// credential. The tunnel itself runs in the appliance's runtime (package
// tunnel) or, on a laptop, in the kernel (wg-quick); this needs only the
// node's data directory and a dialer that reaches the tunnel addresses
// (the appliance's network stack, or the host's sockets).
//
// Why an address is a credential: WireGuard admits a packet from a peer
// only with a source address among that peer's allowed IPs, which are the
// addresses derived from its key (a hub also relays its spokes' packets,
// which it admitted by the same rule). So a connection from a node's
// tunnel address, arriving on the tunnel, comes from the holder of that
// node's key. A revoked node is dropped from WireGuard at once and is no
// longer any address's owner here.
type ReplicaTunnel struct {
	dir  string
	dial DialFunc

	mu sync.Mutex
	r  *StateReader // once the node has keys
}

// NewReplicaTunnel returns the tunnel of the node whose data directory is
// dir, dialing with dial (nil: the host's sockets). A node that has no
// keys yet knows no peers until it has (it joins a network while its
// services run).
func NewReplicaTunnel(dir string, dial DialFunc) *ReplicaTunnel {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return &ReplicaTunnel{dir: dir, dial: dial}
}

// state returns the node's state.
func (t *ReplicaTunnel) state() (*State, Key, error) {
	t.mu.Lock()
	r := t.r
	if r == nil {
		var err error
		if r, err = NewStateReader(t.dir); err != nil {
			t.mu.Unlock()
			return nil, Key{}, err
		}
		t.r = r
	}
	t.mu.Unlock()
	st, err := r.State()
	return st, r.Self(), err
}

// DialContext connects to address (host:port) through the tunnel: a host
// NODE.PERSON.nymote (or SERVICE.NODE.PERSON.nymote) is the node's tunnel
// address, without DNS; an IP address must be in the network. Any other
// host is refused: the tunnel reaches the network's nodes only.
func (t *ReplicaTunnel) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("signpost: dial %s: %w", address, err)
	}
	st, self, err := t.state()
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if !st.Network.Prefix4().Contains(ip) && !st.Network.Prefix6().Contains(ip) {
			return nil, fmt.Errorf("signpost: dial %s: not an address of network %s", address, st.Network)
		}
		return t.dial(ctx, network, address)
	}
	addrs, exists, inZone := st.Lookup(self, host)
	if !inZone {
		return nil, fmt.Errorf("signpost: dial %s: not a name in %s", address, st.Zone())
	}
	if !exists || len(addrs) == 0 {
		return nil, fmt.Errorf("signpost: dial %s: no node %s in the network (unknown or revoked)", address, host)
	}
	// The IPv6 address first (network "tcp"), as a resolver would give it.
	var last error
	for _, a := range []netip.Addr{addrs[1], addrs[0]} {
		c, err := t.dial(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

// Stamp changes when the node's state does (a join, a revocation): the
// replica engine polls it.
func (t *ReplicaTunnel) Stamp() string {
	fi, err := os.Stat(StatePath(t.dir))
	if err != nil {
		return ""
	}
	return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
}

// PeerAt returns the name of the (not revoked) node whose tunnel address
// remote is, for a connection to local, one of this node's own tunnel
// addresses (on the appliance's netstack a packet for it is taken only
// from the tunnel interface).
func (t *ReplicaTunnel) PeerAt(local, remote netip.Addr) (string, bool) {
	st, self, err := t.state()
	if err != nil {
		return "", false
	}
	if v4, v6 := st.Addrs(self); local.Unmap() != v4 && local.Unmap() != v6 {
		return "", false
	}
	addr := remote.Unmap()
	for _, p := range st.Peers {
		if st.IsRevoked(p.WG) {
			continue
		}
		if v4, v6 := st.Addrs(p.WG); addr == v4 || addr == v6 {
			return p.Name, true
		}
	}
	return "", false
}

// Knows reports whether name is a node of the network, not revoked.
func (t *ReplicaTunnel) Knows(name string) bool {
	st, _, err := t.state()
	if err != nil {
		return false
	}
	p, ok := st.Peer(name)
	return ok && !st.IsRevoked(p.WG)
}
