package signpost

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// InvitePrefix starts every invitation's text.
const InvitePrefix = "nymote-invite:"

// inviteVersion is the first byte of an encoded invitation.
const inviteVersion = 1

// Invite is an invitation to join a node's network: made by `nymote peer
// invite` on the inviting node (the issuer), used once by `nymote peer
// join` on the new node before it expires.
//
// Its text is InvitePrefix and, in unpadded base64url, the bytes:
//
//	version (1) | expiry (uint32, Unix seconds) | ID (16) |
//	issuer's Ed25519 key (32) | len | name | len | endpoint |
//	Ed25519 signature of all the bytes before it (64) | secret (16)
//
// about 220 characters. The secret is derived from the issuer's key and
// the signed bytes (the issuer keeps no list of the invitations it
// issued). The joiner proves with it that it holds the invitation (an
// HMAC over its keys) and never sends it: the join request carries the
// invitation without its secret (its ticket), so whoever sees the request
// on the wire cannot use the invitation. The issuer keeps the ID of an
// invitation once used, until it expires.
type Invite struct {
	Expiry   time.Time
	ID       [16]byte
	Issuer   ed25519.PublicKey
	Name     string // the name the new node gets in the network
	Endpoint string // host:port of the issuer: WireGuard (UDP), join (TCP)
	Secret   [16]byte
	sig      []byte
}

// ErrBadInvite is wrapped by the errors for an invitation that cannot be
// read or whose signature does not hold.
var ErrBadInvite = errors.New("bad invitation")

const inviteDomain = "nymote signpost invitation\x00"

func (inv *Invite) body() []byte {
	var b bytes.Buffer
	b.WriteByte(inviteVersion)
	binary.Write(&b, binary.BigEndian, uint32(inv.Expiry.Unix()))
	b.Write(inv.ID[:])
	b.Write(inv.Issuer)
	b.WriteByte(byte(len(inv.Name)))
	b.WriteString(inv.Name)
	b.WriteByte(byte(len(inv.Endpoint)))
	b.WriteString(inv.Endpoint)
	return b.Bytes()
}

// inviteSecret derives an invitation's secret from the issuer's key and
// the invitation's signed bytes.
func inviteSecret(key ed25519.PrivateKey, body []byte) [16]byte {
	m := hmac.New(sha256.New, key.Seed())
	m.Write([]byte("nymote signpost invitation secret\x00"))
	m.Write(body)
	return [16]byte(m.Sum(nil))
}

// encode signs the invitation with key, derives its secret and returns
// its text.
func (inv *Invite) encode(key ed25519.PrivateKey) string {
	body := inv.body()
	inv.sig = ed25519.Sign(key, append([]byte(inviteDomain), body...))
	inv.Secret = inviteSecret(key, body)
	raw := append(append(body, inv.sig...), inv.Secret[:]...)
	return InvitePrefix + base64.RawURLEncoding.EncodeToString(raw)
}

// ticket returns the invitation without its secret, as a join request
// carries it.
func (inv *Invite) ticket() string {
	return base64.RawURLEncoding.EncodeToString(append(inv.body(), inv.sig...))
}

// ParseInvite reads an invitation's text and checks its signature against
// the issuer key it names (whether that issuer is the node being joined is
// for the joiner to check against the reply, and the issuer's to check
// against its own key). It does not check the expiry.
func ParseInvite(s string) (*Invite, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, InvitePrefix)
	if !ok {
		return nil, badInvite("does not start with %q", InvitePrefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return nil, badInvite("not base64url: %v", err)
	}
	if len(raw) < 16 {
		return nil, badInvite("%d bytes, too short", len(raw))
	}
	inv, err := parseSigned(raw[:len(raw)-16])
	if err != nil {
		return nil, err
	}
	inv.Secret = [16]byte(raw[len(raw)-16:])
	return inv, nil
}

func badInvite(format string, args ...any) error {
	return fmt.Errorf("signpost: %w: %s", ErrBadInvite, fmt.Sprintf(format, args...))
}

// parseTicket reads a join request's ticket: an invitation without its
// secret.
func parseTicket(s string) (*Invite, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, badInvite("ticket not base64url: %v", err)
	}
	return parseSigned(raw)
}

// parseSigned reads the signed bytes of an invitation and their signature.
func parseSigned(raw []byte) (*Invite, error) {
	bad := badInvite
	const fixed = 1 + 4 + 16 + 32
	if len(raw) < fixed+2+ed25519.SignatureSize {
		return nil, bad("%d bytes, too short", len(raw))
	}
	if raw[0] != inviteVersion {
		return nil, bad("version %d, want %d", raw[0], inviteVersion)
	}
	inv := &Invite{Expiry: time.Unix(int64(binary.BigEndian.Uint32(raw[1:5])), 0)}
	copy(inv.ID[:], raw[5:21])
	inv.Issuer = ed25519.PublicKey(bytes.Clone(raw[21:53]))
	p := raw[53 : len(raw)-ed25519.SignatureSize]
	field := func() (string, bool) {
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return "", false
		}
		v := string(p[1 : 1+int(p[0])])
		p = p[1+int(p[0]):]
		return v, true
	}
	var ok bool
	if inv.Name, ok = field(); !ok {
		return nil, bad("the name is cut short")
	}
	if inv.Endpoint, ok = field(); !ok {
		return nil, bad("the endpoint is cut short")
	}
	if len(p) != 0 {
		return nil, bad("%d bytes after the endpoint", len(p))
	}
	body, sig := raw[:len(raw)-ed25519.SignatureSize], raw[len(raw)-ed25519.SignatureSize:]
	if !ed25519.Verify(inv.Issuer, append([]byte(inviteDomain), body...), sig) {
		return nil, bad("the signature does not match (altered or cut?)")
	}
	inv.sig = bytes.Clone(sig)
	if err := checkName(inv.Name); err != nil {
		return nil, bad("%v", err)
	}
	if err := checkEndpoint(inv.Endpoint); err != nil {
		return nil, bad("%v", err)
	}
	return inv, nil
}

// checkName checks a node name: 1 to 32 of a-z, 0-9 and '-', as a DNS label
// (names become jitsu names: mail.NAME.nymote).
func checkName(name string) error {
	if name == "" || len(name) > 32 {
		return fmt.Errorf("node name %q: want 1 to 32 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("node name %q: only a-z, 0-9 and '-'", name)
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return fmt.Errorf("node name %q: may not start or end with '-'", name)
	}
	return nil
}

// checkEndpoint checks a host:port endpoint.
func checkEndpoint(ep string) error {
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return fmt.Errorf("endpoint %q: want HOST:PORT", ep)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("endpoint %q: bad port", ep)
	}
	if host == "" || len(host) > 200 {
		return fmt.Errorf("endpoint %q: bad host", ep)
	}
	return nil
}

// Issue makes an invitation for a new node to join this node's network
// under the name name, valid for ttl. endpoint is this node's public
// WireGuard endpoint (HOST:PORT, UDP; the join itself goes to the same
// HOST:PORT over TCP); empty means the one recorded by an earlier
// invitation. Issuing records the endpoint (the node becomes its network's
// hub) but not the invitation: invitations are checked by their
// signature, and remembered once used.
//
// person, if not empty, names the person whose network it is, in DNS
// names (NODE.PERSON.nymote); it can be set while the network has only its
// founder.
func Issue(dir, name, endpoint, person string, ttl time.Duration) (string, error) {
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("signpost: %v", err)
	}
	if ttl <= 0 || ttl > 30*24*time.Hour {
		return "", fmt.Errorf("signpost: invitation lifetime %s: want up to 30 days", ttl)
	}
	var text string
	err := UpdateState(dir, func(id *Identity, s *State) error {
		if endpoint == "" {
			endpoint = s.Endpoint
		}
		if endpoint == "" {
			return errors.New("signpost: this node has no public endpoint yet: give one (--endpoint HOST:PORT), where the new node reaches it")
		}
		if err := checkEndpoint(endpoint); err != nil {
			return fmt.Errorf("signpost: %v", err)
		}
		if _, ok := s.Peer(name); ok || name == s.selfName() {
			return fmt.Errorf("signpost: the network has a node called %q already", name)
		}
		if person != "" && person != s.Person {
			if err := checkName(person); err != nil {
				return fmt.Errorf("signpost: person: %v", err)
			}
			if len(s.Peers) > 0 || s.Name != "" {
				return fmt.Errorf("signpost: the network's person is %q already: it is set by its founder before the first node joins", s.Zone())
			}
			s.Person = person
		}
		s.Endpoint = endpoint
		inv := &Invite{Expiry: time.Now().Add(ttl).Truncate(time.Second), Issuer: id.EdPublic(), Name: name, Endpoint: endpoint}
		rand.Read(inv.ID[:])
		text = inv.encode(id.Ed)
		return nil
	})
	return text, err
}

// selfName is the node's own name in its network.
func (s *State) selfName() string {
	if s.Name == "" {
		return "hub"
	}
	return s.Name
}
