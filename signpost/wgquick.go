package signpost

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// WGQuick returns a wg-quick(8) configuration for the node of data
// directory dir, for a laptop that joined with `nymote peer join
// --wg-quick` and runs stock WireGuard tools (kernel WireGuard, or
// wireguard-go where wg-quick falls back to it): the node's private key
// and tunnel addresses, and its peers with public endpoints; the network's
// prefixes go to its hub, which relays to the nodes behind NAT. It holds
// the private key: write it to a file of mode 0600.
func WGQuick(dir string) (string, error) {
	id, err := LoadIdentity(dir)
	if err != nil {
		return "", err
	}
	st, err := readState(dir, id)
	if err != nil {
		return "", err
	}
	v4, v6 := st.Network.Addrs(id.WG)
	var b strings.Builder
	fmt.Fprintf(&b, "# nymote network %s, node %s\n", st.Network, st.selfName())
	fmt.Fprintf(&b, "[Interface]\nPrivateKey = %s\nAddress = %s/32, %s/128\n", base64.StdEncoding.EncodeToString(id.WGPrivate[:]), v4, v6)
	if st.Endpoint != "" {
		_, port, _ := strings.Cut(st.Endpoint[strings.LastIndex(st.Endpoint, ":"):], ":")
		fmt.Fprintf(&b, "ListenPort = %s\n", port)
	}
	routed := false
	for _, p := range st.Peers {
		if st.IsRevoked(p.WG) || p.Endpoint == "" {
			continue // a node behind NAT is reached through the hub
		}
		pv4, pv6 := st.Network.Addrs(p.WG)
		allowed := []string{pv4.String() + "/32", pv6.String() + "/128"}
		if p.Hub && !routed && !st.IsHub() {
			routed = true
			allowed = append(allowed, st.Network.Prefix4().String(), st.Network.Prefix6().String())
		}
		fmt.Fprintf(&b, "\n[Peer]\n# %s\nPublicKey = %s\nAllowedIPs = %s\nEndpoint = %s\n", p.Name, p.WG, strings.Join(allowed, ", "), p.Endpoint)
		if !st.IsHub() {
			fmt.Fprintf(&b, "PersistentKeepalive = %d\n", KeepaliveSeconds)
		}
	}
	return b.String(), nil
}
