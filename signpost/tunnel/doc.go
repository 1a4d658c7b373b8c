// Package tunnel runs a Signpost node inside an appliance: WireGuard
// (golang.zx2c4.com/wireguard, wireguard-go) attached to the appliance's
// own gVisor netstack as its second interface, with the node's keys and
// peers from package signpost.
//
// wireguard-go's own tun/netstack pins an older gVisor than ours; one
// binary links one gVisor, so this package does not use it. Instead the
// netstack has a tunnel interface (netstack.Tunnel, a gVisor channel
// endpoint carrying bare IP packets) and this package adapts it to
// wireguard-go's tun.Device, and the netstack's UDP to its conn.Bind, so
// WireGuard's own packets go out through the netstack too (inside an
// appliance the kernel's IP stack is unconfigured).
//
// Services that listen on the unspecified address (":143") accept on the
// tunnel addresses as well. A hub (a node with a public endpoint) relays:
// a packet from one peer for another's address goes straight back to
// WireGuard with its hop limit decreased, never into the stack, which does
// not forward between its interfaces. The node watches its state file, so
// `nymote peer del` on its data directory takes effect at once, and it
// serves joins (signpost.JoinHandler) on TCP at its WireGuard port number.
package tunnel
