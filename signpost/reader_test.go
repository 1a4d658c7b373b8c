package signpost

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// TestReplicaTunnel: the replica engine's view of the network from the
// hub's data directory: names and addresses of nodes are dialed at their
// tunnel addresses (anything else refused); a connection from a node's
// tunnel address to this node's own is that node's, to another local
// address is nobody's; after Revoke the node is unknown, and the stamp
// has changed.
func TestReplicaTunnel(t *testing.T) {
	dirA, inv := hub(t, "b")
	dirB := t.TempDir()
	if _, err := Join(context.Background(), dirB, inv, "", serve(t, dirA)); err != nil {
		t.Fatal(err)
	}
	st, _ := ReadState(dirA)
	idA, _ := LoadIdentity(dirA)
	idB, _ := LoadIdentity(dirB)
	a4, a6 := st.Addrs(idA.WG)
	b4, b6 := st.Addrs(idB.WG)
	var dialed []string
	rt := NewReplicaTunnel(dirA, func(_ context.Context, _, address string) (net.Conn, error) {
		dialed = append(dialed, address)
		return nil, errors.New("test: not dialing")
	})
	if !rt.Knows("b") || rt.Knows("zed") {
		t.Errorf("Knows b %v, zed %v", rt.Knows("b"), rt.Knows("zed"))
	}
	for _, tc := range []struct {
		local, remote netip.Addr
		want          string
	}{
		{a4, b4, "b"}, {a6, b6, "b"}, {a6, b4, "b"},
		{netip.MustParseAddr("198.51.100.2"), b4, ""}, // not over the tunnel
		{a4, netip.MustParseAddr("100.64.9.9"), ""},   // no node's
		{a4, a4, ""}, // itself: no peer
	} {
		if got, ok := rt.PeerAt(tc.local, tc.remote); got != tc.want || ok != (tc.want != "") {
			t.Errorf("PeerAt(%s, %s) = %q %v, want %q", tc.local, tc.remote, got, ok, tc.want)
		}
	}
	ctx := context.Background()
	rt.DialContext(ctx, "tcp", "b.my.nymote:9418")
	rt.DialContext(ctx, "tcp", "imaps.B.my.nymote:993")
	rt.DialContext(ctx, "tcp", net.JoinHostPort(b4.String(), "80"))
	want := []string{net.JoinHostPort(b6.String(), "9418"), net.JoinHostPort(b4.String(), "9418"),
		net.JoinHostPort(b6.String(), "993"), net.JoinHostPort(b4.String(), "993"), net.JoinHostPort(b4.String(), "80")}
	if strings.Join(dialed, " ") != strings.Join(want, " ") {
		t.Errorf("dialed %v, want %v", dialed, want)
	}
	for addr, msg := range map[string]string{"example.org:80": "not a name in my.nymote", "192.0.2.1:80": "not an address of network",
		"zed.my.nymote:1": "no node zed.my.nymote", "nonsense": "missing port"} {
		if _, err := rt.DialContext(ctx, "tcp", addr); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("dial %s: %v, want %q", addr, err, msg)
		}
	}
	stamp := rt.Stamp()
	if _, err := Revoke(dirA, "b"); err != nil {
		t.Fatal(err)
	}
	if rt.Stamp() == stamp {
		t.Error("the stamp did not change with the state")
	}
	if _, ok := rt.PeerAt(a4, b4); ok || rt.Knows("b") {
		t.Error("a revoked node is still known")
	}
	if _, err := rt.DialContext(ctx, "tcp", "b.my.nymote:9418"); err == nil || !strings.Contains(err.Error(), "no node") {
		t.Errorf("dial a revoked node: %v", err)
	}
}
