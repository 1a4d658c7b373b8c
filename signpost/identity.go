package signpost

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"

	"golang.org/x/crypto/curve25519"
)

// Key is a Curve25519 public key (a WireGuard key), printed in base64 as
// WireGuard's tools print them.
type Key [32]byte

// String returns the key in base64, as `wg` prints it.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// IsZero reports whether k is all zeros (no key).
func (k Key) IsZero() bool { return k == Key{} }

// ParseKey parses a base64 WireGuard key.
func ParseKey(s string) (Key, error) {
	var k Key
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return k, fmt.Errorf("signpost: key %q: want 32 bytes in base64", s)
	}
	copy(k[:], b)
	return k, nil
}

// MarshalText implements encoding.TextMarshaler.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Key) UnmarshalText(b []byte) error {
	x, err := ParseKey(string(b))
	*k = x
	return err
}

// Identity is a node's key pairs: Curve25519 for the WireGuard tunnel and
// Ed25519 for signatures (invitations, join replies, capability tokens).
type Identity struct {
	WGPrivate Key
	WG        Key // public
	Ed        ed25519.PrivateKey
}

// EdPublic returns the node's Ed25519 public key.
func (id *Identity) EdPublic() ed25519.PublicKey { return id.Ed.Public().(ed25519.PublicKey) }

// identityFile is the node file, relative to the data directory, that holds
// the private keys. It is under the store's node folder (store.NodeDir:
// DIR/node), which is never committed, cloned or pushed.
const identityFile = "node/signpost/identity.json"

type identityJSON struct {
	WGPrivate []byte `json:"wg_private"`
	Ed25519   []byte `json:"ed25519_seed"`
}

// ErrNoIdentity is returned by LoadIdentity for a data directory whose node
// has no keys yet.
var ErrNoIdentity = errors.New("signpost: this node has no identity yet")

// LoadIdentity reads the node's keys from the data directory dir.
func LoadIdentity(dir string) (*Identity, error) {
	path := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s)", ErrNoIdentity, path)
	}
	if err != nil {
		return nil, fmt.Errorf("signpost: %w", err)
	}
	var j identityJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("signpost: %s: %v", path, err)
	}
	if len(j.WGPrivate) != 32 || len(j.Ed25519) != ed25519.SeedSize {
		return nil, fmt.Errorf("signpost: %s: keys of the wrong length", path)
	}
	return newIdentity([32]byte(j.WGPrivate), j.Ed25519)
}

func newIdentity(wg [32]byte, seed []byte) (*Identity, error) {
	// Clamp as WireGuard does.
	wg[0] &= 248
	wg[31] = (wg[31] & 127) | 64
	pub, err := curve25519.X25519(wg[:], curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("signpost: %w", err)
	}
	return &Identity{WGPrivate: wg, WG: Key(pub), Ed: ed25519.NewKeyFromSeed(seed)}, nil
}

// LoadOrCreateIdentity returns the node's keys, making them at the first
// call for a data directory (mode 0600, in a folder of mode 0700).
func LoadOrCreateIdentity(dir string) (*Identity, error) {
	id, err := LoadIdentity(dir)
	if !errors.Is(err, ErrNoIdentity) {
		return id, err
	}
	var wg [32]byte
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(wg[:])
	rand.Read(seed)
	id, err = newIdentity(wg, seed)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(identityJSON{WGPrivate: id.WGPrivate[:], Ed25519: seed})
	if err := writeFileAtomic(filepath.Join(dir, identityFile), b, true); err != nil {
		return nil, err
	}
	return id, nil
}

// writeFileAtomic replaces path with data (mode 0600): a temporary file is
// written and synced, then renamed into place. With excl it fails if path
// exists (two processes making an identity at once keep one).
func writeFileAtomic(path string, data []byte, excl bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("signpost: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("signpost: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("signpost: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("signpost: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("signpost: %w", err)
	}
	if excl {
		if err := os.Link(tmp.Name(), path); err != nil {
			return fmt.Errorf("signpost: %w", err)
		}
		return nil
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("signpost: %w", err)
	}
	return nil
}

// NetworkID names a person's network of nodes: 40 bits derived from the
// Ed25519 key of the node that founded it (the first node; every node
// founds its own network until it joins another). It fixes the network's
// IPv6 ULA prefix fdXX:XXXX:XXXX::/48 (RFC 4193: a pseudo-random global
// ID) and its IPv4 /16 inside 100.64.0.0/10.
type NetworkID [5]byte

// NetworkIDOf returns the ID of the network founded by the node with
// Ed25519 key ed.
func NetworkIDOf(ed ed25519.PublicKey) NetworkID {
	h := sha256.Sum256(append([]byte("nymote signpost network\x00"), ed...))
	return NetworkID(h[:5])
}

// String returns the ID in hex.
func (n NetworkID) String() string { return fmt.Sprintf("%x", n[:]) }

// MarshalText implements encoding.TextMarshaler.
func (n NetworkID) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (n *NetworkID) UnmarshalText(b []byte) error {
	x, err := hex.DecodeString(string(b))
	if err != nil || len(x) != len(n) {
		return fmt.Errorf("signpost: network ID %q: want 10 hex digits", b)
	}
	*n = NetworkID(x)
	return nil
}

// Prefix6 returns the network's IPv6 ULA prefix (a /48).
func (n NetworkID) Prefix6() netip.Prefix {
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:6], n[:])
	return netip.PrefixFrom(netip.AddrFrom16(a), 48)
}

// Prefix4 returns the network's IPv4 prefix: a /16 in 100.64.0.0/10
// (shared address space, RFC 6598), picked by the ID (64 networks; two of a
// person's networks may share one, which only matters to a device that
// joins both).
func (n NetworkID) Prefix4() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + n[0]&63, 0, 0}), 16)
}

// Addrs returns the tunnel addresses of the node with WireGuard key k in
// network n: an IPv6 address in the network's /48 (subnet 0, interface ID
// from a hash of the key) and an IPv4 address in its /16 (16 bits of the
// same hash). They are stable: the same key gets the same addresses.
func (n NetworkID) Addrs(k Key) (v4, v6 netip.Addr) {
	h := sha256.Sum256(append([]byte("nymote signpost address\x00"), k[:]...))
	var a [16]byte
	copy(a[:], n.Prefix6().Addr().AsSlice())
	copy(a[8:], h[:8])
	v6 = netip.AddrFrom16(a)
	p := n.Prefix4().Addr().As4()
	p[2], p[3] = h[8], h[9]
	if p[2] == 0 && p[3] == 0 || p[2] == 255 && p[3] == 255 {
		p[3] ^= 1
	}
	return netip.AddrFrom4(p), v6
}
