// Package signpost is Nymote's node identity and pairing: the third part
// of the stack, after the appliances and their store, which lets a
// person's nodes (appliances, and laptops through the host tool) recognise
// and reach each other wherever they are.
//
// Identity. Every node has two key pairs, made at first start and kept in
// its data directory beside the store (DIR/node/signpost/identity.json,
// mode 0600; store.NodeDir is DIR/node, never committed, cloned or
// pushed): Curve25519 for its WireGuard tunnel and Ed25519 for signatures.
// `nymote id show --data DIR` prints the public halves.
//
// Addresses. A person's nodes form a network named by 40 bits derived from
// the key of its founding node (NetworkID): an IPv6 ULA /48 (RFC 4193's
// pseudo-random global ID) and an IPv4 /16 in 100.64.0.0/10. Each node's
// addresses in it come from a hash of its WireGuard key, so they are
// stable and need no allocation.
//
// Pairing. `nymote peer invite NAME` prints an invitation (Invite): about
// 220 characters, signed by the issuer's Ed25519 key, naming the new node
// and the issuer's endpoint, with an expiry, a random ID and a secret
// derived from the issuer's key. `nymote peer join INVITATION` on the new
// node sends the issuer, over TCP on the issuer's WireGuard port number
// (JoinPath), its keys and the invitation without its secret, with an
// HMAC keyed by the secret (it holds the invitation; an eavesdropper on
// the request learns nothing it can use) and its Ed25519 signature (it
// holds its key). The issuer (Accept) checks the invitation was signed by
// itself, re-derives the secret, checks it has not expired and was not
// used, records its ID until expiry (single use), adds the peer and
// answers with the network and its nodes, signed. Anything wrong is
// refused with the reason, and nothing is changed. `nymote peer del NAME`
// (Revoke) removes a node and revokes its key: a running node drops its
// tunnel at once and refuses its handshakes and joins from then on.
//
// Topology. A node with a public endpoint (given when it first invites)
// is a hub. Nodes behind NAT keep a tunnel to their hub open (persistent
// keepalive, KeepaliveSeconds) and route the whole network through it;
// the hub relays between them (package tunnel). Relaying is by WireGuard's
// allowed IPs, not a mesh: two nodes behind NATs always talk through the
// hub. A laptop joins with stock tools: `nymote peer join --wg-quick`
// prints a wg-quick configuration (WGQuick).
//
// Names and replicas from other processes: StateReader reads a node's
// state again when it changes; jitsu answers the network's names from it,
// and ReplicaTunnel gives a replica engine (package replica) the network's
// nodes as peers, reached through the tunnel and authenticated by their
// tunnel addresses.
//
// The tunnel itself, WireGuard (wireguard-go) on the appliance's own gVisor
// netstack, is package tunnel: this package has no network stack of its
// own, so the host tool can use it.
package signpost
