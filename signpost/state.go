package signpost

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// stateFile is the node file, relative to the data directory, holding what
// the node knows of its network: its peers, the invitations it has
// accepted, the keys it revoked. Like the keys it is node-local (DIR/node,
// never in the store's history).
const (
	stateFile = "node/signpost/state.json"
	lockFile  = "node/signpost/state.lock"
)

// Peer is another node of the person's network, as this node knows it.
type Peer struct {
	Name string `json:"name"`
	WG   Key    `json:"wg_key"`
	Ed   []byte `json:"ed25519_key,omitempty"`
	// Endpoint is where the peer's WireGuard listens (host:port), if it
	// has a public address; empty for a node behind NAT, which keeps its
	// tunnel to a hub open itself (persistent keepalive).
	Endpoint string `json:"endpoint,omitempty"`
	// Hub is set for a peer that relays between the network's other
	// nodes: a node without an endpoint of its own routes the whole
	// network through its hub.
	Hub   bool      `json:"hub,omitempty"`
	Added time.Time `json:"added"`
}

// State is what a node knows of its network, kept in the data directory.
type State struct {
	// Network is the network the node belongs to: its own (founded at
	// first start) until it joins another.
	Network NetworkID `json:"network"`
	// Name is the node's name in its network (given by the invitation it
	// joined with); empty for a founder, which calls itself "self".
	Name string `json:"name,omitempty"`
	// Person names the person whose network it is, in the network's DNS
	// names: NODE.PERSON.nymote (see Names). Set by the founder's first
	// invitation (default DefaultPerson) and carried to joining nodes.
	Person string `json:"person,omitempty"`
	// Endpoint is this node's public WireGuard endpoint (host:port), if it
	// has one: it is then a hub, relaying for its peers behind NAT, and
	// its invitations name it.
	Endpoint string `json:"endpoint,omitempty"`
	Peers    []Peer `json:"peers,omitempty"`
	// Used are the invitations this node has accepted, until they expire
	// (single use).
	Used []UsedInvite `json:"used_invitations,omitempty"`
	// Revoked are keys of peers deleted from the network: a join or a
	// handshake with one is refused.
	Revoked []Key `json:"revoked,omitempty"`
	// RevokedTokens are the IDs of capability tokens this node minted and
	// has revoked (package capability), with every token made from them.
	RevokedTokens []string `json:"revoked_tokens,omitempty"`
}

// UsedInvite records an accepted invitation.
type UsedInvite struct {
	ID     []byte    `json:"id"`
	Expiry time.Time `json:"expiry"`
	By     string    `json:"by"` // the name of the node that joined with it
}

// Peer returns the peer called name.
func (s *State) Peer(name string) (Peer, bool) {
	for _, p := range s.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

// IsRevoked reports whether k has been revoked.
func (s *State) IsRevoked(k Key) bool { return slices.Contains(s.Revoked, k) }

// IsHub reports whether this node relays for its network (it has a public
// endpoint).
func (s *State) IsHub() bool { return s.Endpoint != "" }

// Addrs returns the tunnel addresses of the peer with key k in this node's
// network.
func (s *State) Addrs(k Key) (v4, v6 netip.Addr) { return s.Network.Addrs(k) }

// readState reads the state of the data directory dir; a node with none yet
// gets a new one in its own network.
func readState(dir string, id *Identity) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Network: NetworkIDOf(id.EdPublic())}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("signpost: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("signpost: %s: %v", filepath.Join(dir, stateFile), err)
	}
	return &s, nil
}

// ReadState returns the node's state (its own network and no peers before
// it has joined or invited anyone).
func ReadState(dir string) (*State, error) {
	id, err := LoadIdentity(dir)
	if err != nil {
		return nil, err
	}
	return readState(dir, id)
}

// UpdateState reads the node's state, calls f on it and writes it back
// unless f fails, holding a lock on the node's state for the whole change
// (the running node and the host tool may both change it).
func UpdateState(dir string, f func(*Identity, *State) error) error {
	id, err := LoadOrCreateIdentity(dir)
	if err != nil {
		return err
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("signpost: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("signpost: lock %s: %w", lf.Name(), err)
	}
	s, err := readState(dir, id)
	if err != nil {
		return err
	}
	if err := f(id, s); err != nil {
		return err
	}
	now := time.Now()
	s.Used = slices.DeleteFunc(s.Used, func(u UsedInvite) bool { return now.After(u.Expiry.Add(time.Hour)) })
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("signpost: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, stateFile), append(b, '\n'), false)
}

// ErrNoPeer is wrapped by Revoke's error for a name the node does not know.
var ErrNoPeer = errors.New("no such peer")

// Revoke deletes the peer called name from the node's network and revokes
// its key: a running node drops its tunnel to it at once (it watches its
// state), and refuses its handshakes and joins from then on.
func Revoke(dir, name string) (Peer, error) {
	var p Peer
	err := UpdateState(dir, func(_ *Identity, s *State) error {
		i := slices.IndexFunc(s.Peers, func(p Peer) bool { return p.Name == name })
		if i < 0 {
			return fmt.Errorf("signpost: peer %q: %w", name, ErrNoPeer)
		}
		p = s.Peers[i]
		s.Peers = slices.Delete(s.Peers, i, i+1)
		if !s.IsRevoked(p.WG) {
			s.Revoked = append(s.Revoked, p.WG)
		}
		return nil
	})
	return p, err
}

// StatePath returns the path of the node's state file in data directory
// dir (a running node watches it for changes made by the host tool).
func StatePath(dir string) string { return filepath.Join(dir, stateFile) }

// KeepaliveSeconds is the persistent keepalive a node without a public
// endpoint sends its hubs, to keep its NAT's mapping open.
const KeepaliveSeconds = 25

// DefaultPort is the WireGuard port (UDP) and the join port (TCP).
const DefaultPort = 51820

// DefaultPerson is the person label of a network whose founder gave none.
const DefaultPerson = "my"

// Domain is the top-level label of the networks' DNS names.
const Domain = "nymote"

// Zone returns the network's DNS zone: PERSON.nymote.
func (s *State) Zone() string {
	p := s.Person
	if p == "" {
		p = DefaultPerson
	}
	return p + "." + Domain
}

// Names returns the DNS names of the network's nodes as this node knows
// them, NODE.PERSON.nymote (lower case, no final dot), with their tunnel
// addresses; self is this node's WireGuard key.
func (s *State) Names(self Key) map[string][]netip.Addr {
	m := map[string][]netip.Addr{}
	add := func(name string, k Key) {
		v4, v6 := s.Network.Addrs(k)
		m[name+"."+s.Zone()] = []netip.Addr{v4, v6}
	}
	add(s.selfName(), self)
	for _, p := range s.Peers {
		if !s.IsRevoked(p.WG) {
			add(p.Name, p.WG)
		}
	}
	return m
}

// Lookup resolves name (any case, with or without its final dot) in the
// network's zone as this node knows it; self is this node's WireGuard
// key. NODE.PERSON.nymote are the node's tunnel addresses, and so is
// SERVICE.NODE.PERSON.nymote (any first label before a node's name: a
// service on that node, as jitsu names services). inZone is false for a
// name outside PERSON.nymote; exists is false for a name in it that names
// no node (the zone's apex exists, with no addresses). The name server of
// each node (package tunnel) and jitsu answer with it.
func (s *State) Lookup(self Key, name string) (addrs []netip.Addr, exists, inZone bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	zone := s.Zone()
	if name == zone {
		return nil, true, true
	}
	if !strings.HasSuffix(name, "."+zone) {
		return nil, false, false
	}
	names := s.Names(self)
	if a, ok := names[name]; ok {
		return a, true, true
	}
	if _, rest, cut := strings.Cut(name, "."); cut {
		if a, ok := names[rest]; ok {
			return a, true, true
		}
	}
	return nil, false, true
}
