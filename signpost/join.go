package signpost

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"
)

// JoinPath is the HTTP path of the join exchange, served over TCP on the
// issuer's endpoint port.
const JoinPath = "/signpost/join"

// joinRequest is what a new node sends the issuer of its invitation.
type joinRequest struct {
	// Ticket is the invitation without its secret (Invite.ticket).
	Ticket   string `json:"ticket"`
	WG       Key    `json:"wg_key"`
	Ed       []byte `json:"ed25519_key"`
	Endpoint string `json:"endpoint,omitempty"`
	// Proof is HMAC-SHA256 keyed with the invitation's secret over
	// proofMessage: the sender holds the invitation.
	Proof []byte `json:"proof"`
	// Sig is the sender's Ed25519 signature of proofMessage: it holds the
	// key it names.
	Sig []byte `json:"sig"`
}

func (r *joinRequest) proofMessage() []byte {
	var b bytes.Buffer
	b.WriteString("nymote signpost join\x00")
	b.WriteString(r.Ticket)
	b.WriteByte(0)
	b.Write(r.WG[:])
	b.Write(r.Ed)
	b.WriteString(r.Endpoint)
	return b.Bytes()
}

// joinReply is the issuer's answer: the network and its nodes, signed by
// the issuer's Ed25519 key (the one the invitation names).
type joinReply struct {
	Body []byte `json:"body"` // JSON of replyBody
	Sig  []byte `json:"sig"`
}

type replyBody struct {
	Network NetworkID `json:"network"`
	Name    string    `json:"name"` // the joiner's name
	Person  string    `json:"person,omitempty"`
	Peers   []Peer    `json:"peers"` // the issuer first
}

const replyDomain = "nymote signpost join reply\x00"

// ErrRefused is wrapped by the errors of a join the issuer refused.
var ErrRefused = errors.New("join refused")

// Accept takes a join request on the issuing node's side: it checks the
// invitation (signed by this node, not expired, not used) and the
// request's proofs, adds the new node as a peer, records the invitation
// as used, and returns the signed reply. On any error nothing is changed.
func Accept(dir string, reqJSON []byte, now time.Time) (reply []byte, added Peer, err error) {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("signpost: %w: %s", ErrRefused, fmt.Sprintf(format, args...))
	}
	var req joinRequest
	if err := json.Unmarshal(reqJSON, &req); err != nil {
		return nil, Peer{}, refuse("malformed request: %v", err)
	}
	inv, err := parseTicket(req.Ticket)
	if err != nil {
		return nil, Peer{}, refuse("%v", err)
	}
	if len(req.Ed) != ed25519.PublicKeySize || req.WG.IsZero() {
		return nil, Peer{}, refuse("the request's keys are missing or of the wrong length")
	}
	if !ed25519.Verify(req.Ed, req.proofMessage(), req.Sig) {
		return nil, Peer{}, refuse("the request is not signed by the key it names")
	}
	if req.Endpoint != "" {
		if err := checkEndpoint(req.Endpoint); err != nil {
			return nil, Peer{}, refuse("%v", err)
		}
	}
	err = UpdateState(dir, func(id *Identity, s *State) error {
		if !bytes.Equal(inv.Issuer, id.EdPublic()) {
			return refuse("the invitation was not issued by this node")
		}
		secret := inviteSecret(id.Ed, inv.body())
		mac := hmac.New(sha256.New, secret[:])
		mac.Write(req.proofMessage())
		if !hmac.Equal(mac.Sum(nil), req.Proof) {
			return refuse("the proof does not match the invitation (its secret is wrong)")
		}
		if now.After(inv.Expiry) {
			return refuse("the invitation expired at %s", inv.Expiry.UTC().Format(time.RFC3339))
		}
		if slices.ContainsFunc(s.Used, func(u UsedInvite) bool { return bytes.Equal(u.ID, inv.ID[:]) }) {
			return refuse("the invitation has been used already")
		}
		if s.IsRevoked(req.WG) {
			return refuse("key %s has been revoked from this network", req.WG)
		}
		if _, ok := s.Peer(inv.Name); ok {
			return refuse("the network has a node called %q already", inv.Name)
		}
		if req.WG == id.WG || slices.ContainsFunc(s.Peers, func(p Peer) bool { return p.WG == req.WG }) {
			return refuse("key %s is in the network already", req.WG)
		}
		added = Peer{Name: inv.Name, WG: req.WG, Ed: req.Ed, Endpoint: req.Endpoint, Added: now.UTC().Truncate(time.Second)}
		s.Peers = append(s.Peers, added)
		s.Used = append(s.Used, UsedInvite{ID: inv.ID[:], Expiry: inv.Expiry, By: inv.Name})
		self := Peer{Name: s.selfName(), WG: id.WG, Ed: id.EdPublic(), Endpoint: s.Endpoint, Hub: s.IsHub()}
		body, err := json.Marshal(replyBody{Network: s.Network, Name: inv.Name, Person: s.Person, Peers: append([]Peer{self}, s.Peers...)})
		if err != nil {
			return err
		}
		reply, err = json.Marshal(joinReply{Body: body, Sig: ed25519.Sign(id.Ed, append([]byte(replyDomain), body...))})
		return err
	})
	if err != nil {
		return nil, Peer{}, err
	}
	return reply, added, nil
}

// JoinHandler serves JoinPath for the node whose data directory is dir,
// calling joined (if not nil) after each accepted join. Refusals answer 403
// with the reason as text.
func JoinHandler(dir string, joined func(Peer)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "signpost: POST a join request", http.StatusMethodNotAllowed)
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, 16<<10))
		if err != nil {
			http.Error(w, "signpost: "+err.Error(), http.StatusBadRequest)
			return
		}
		reply, p, err := Accept(dir, b, time.Now())
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, ErrRefused) {
				code = http.StatusForbidden
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(reply)
		if joined != nil {
			joined(p)
		}
	})
}

// DialFunc opens a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Join joins the network of the invitation's issuer: it sends this node's
// keys (made now if the node has none) to the issuer's endpoint over TCP,
// checks the issuer's signed reply and records the network, the node's
// name and its peers in the node's state. endpoint is this node's own
// public endpoint, empty for a node behind NAT. dial nil uses host
// sockets. A node that is in a network already (it has peers) is refused.
func Join(ctx context.Context, dir, invitation, endpoint string, dial DialFunc) (*State, error) {
	inv, err := ParseInvite(invitation)
	if err != nil {
		return nil, err
	}
	if time.Now().After(inv.Expiry) {
		return nil, fmt.Errorf("signpost: %w: it expired at %s", ErrBadInvite, inv.Expiry.UTC().Format(time.RFC3339))
	}
	if endpoint != "" {
		if err := checkEndpoint(endpoint); err != nil {
			return nil, fmt.Errorf("signpost: %v", err)
		}
	}
	id, err := LoadOrCreateIdentity(dir)
	if err != nil {
		return nil, err
	}
	if s, err := readState(dir, id); err != nil {
		return nil, err
	} else if len(s.Peers) > 0 {
		return nil, fmt.Errorf("signpost: this node is in network %s already, with %d peers", s.Network, len(s.Peers))
	}
	req := joinRequest{Ticket: inv.ticket(), WG: id.WG, Ed: id.EdPublic(), Endpoint: endpoint}
	mac := hmac.New(sha256.New, inv.Secret[:])
	mac.Write(req.proofMessage())
	req.Proof = mac.Sum(nil)
	req.Sig = ed25519.Sign(id.Ed, req.proofMessage())
	reqJSON, _ := json.Marshal(req)

	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	client := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}, Timeout: 30 * time.Second}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+inv.Endpoint+JoinPath, bytes.NewReader(reqJSON))
	if err != nil {
		return nil, fmt.Errorf("signpost: %w", err)
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("signpost: join %s: %w", inv.Endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("signpost: join %s: %w", inv.Endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("signpost: join %s: %s", inv.Endpoint, bytes.TrimSpace(b))
	}
	var rep joinReply
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("signpost: join %s: malformed reply: %v", inv.Endpoint, err)
	}
	if !ed25519.Verify(inv.Issuer, append([]byte(replyDomain), rep.Body...), rep.Sig) {
		return nil, fmt.Errorf("signpost: join %s: the reply is not signed by the invitation's issuer", inv.Endpoint)
	}
	var body replyBody
	if err := json.Unmarshal(rep.Body, &body); err != nil || len(body.Peers) == 0 {
		return nil, fmt.Errorf("signpost: join %s: malformed reply body", inv.Endpoint)
	}
	if body.Name != inv.Name || !bytes.Equal(body.Peers[0].Ed, inv.Issuer) {
		return nil, fmt.Errorf("signpost: join %s: the reply does not match the invitation", inv.Endpoint)
	}
	var st *State
	err = UpdateState(dir, func(id *Identity, s *State) error {
		s.Network, s.Name, s.Person = body.Network, body.Name, body.Person
		if endpoint != "" {
			s.Endpoint = endpoint
		}
		s.Peers = nil
		now := time.Now().UTC().Truncate(time.Second)
		for _, p := range body.Peers {
			if p.WG == id.WG {
				continue
			}
			p.Added = now
			s.Peers = append(s.Peers, p)
		}
		c := *s
		st = &c
		return nil
	})
	return st, err
}
