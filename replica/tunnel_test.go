package replica

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/nymote/nymote/store"
)

// tunnelNet stands for Signpost's network in the tests: each node has an
// address of its own on loopback (its connections come from it, as a
// node's come from its tunnel address), a name NODE.alice.nymote that
// dials its endpoint, and can be revoked.
type tunnelNet struct {
	mu      sync.Mutex
	addr    map[string]netip.Addr // node -> its source address
	srv     map[string]string     // node -> its endpoint (host:port)
	revoked map[string]bool
}

// tunnelView is one node's Tunnel.
type tunnelView struct {
	n    *tunnelNet
	self string
}

func (v tunnelView) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(address)
	name, ok := strings.CutSuffix(host, ".alice.nymote")
	v.n.mu.Lock()
	target, known := v.n.srv[name]
	src := v.n.addr[v.self]
	v.n.mu.Unlock()
	if !ok || !known {
		return nil, fmt.Errorf("no node %s", host)
	}
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	return d.DialContext(ctx, network, target)
}

func (v tunnelView) PeerAt(local, addr netip.Addr) (string, bool) {
	v.n.mu.Lock()
	defer v.n.mu.Unlock()
	if local != netip.MustParseAddr("127.0.0.1") { // where the endpoints listen
		return "", false
	}
	for name, a := range v.n.addr {
		if a == addr && name != v.self && !v.n.revoked[name] {
			return name, true
		}
	}
	return "", false
}

func (v tunnelView) Knows(name string) bool {
	v.n.mu.Lock()
	defer v.n.mu.Unlock()
	_, ok := v.n.addr[name]
	return ok && name != v.self && !v.n.revoked[name]
}

// TestOverTunnel: two nodes whose peers are recorded as tunnel peers (no
// token on either side) sync through the tunnel, each authenticated by
// the address its requests come from; a request from another address
// with a peer's name and no token is refused; once b is revoked, a
// neither syncs with it nor takes its pushes.
func TestOverTunnel(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	tn := &tunnelNet{addr: map[string]netip.Addr{"a": netip.MustParseAddr("127.0.0.11"), "b": netip.MustParseAddr("127.0.0.12")},
		srv: map[string]string{}, revoked: map[string]bool{}}
	oa, ob := fastOpts(), fastOpts()
	oa.Tunnel, ob.Tunnel = tunnelView{tn, "a"}, tunnelView{tn, "b"}
	a.start(t, oa)
	b.start(t, ob)
	tn.srv["a"], tn.srv["b"] = a.srv.Listener.Addr().String(), b.srv.Listener.Addr().String()
	ctx := context.Background()
	if tok, err := AddPeer(ctx, a.st, "b", "http://b.alice.nymote/replica", AddOptions{Tunnel: true}); err != nil || tok != "" {
		t.Fatalf("AddPeer over the tunnel: %q %v", tok, err)
	}
	share(t, a, b)
	if _, err := AddPeer(ctx, b.st, "a", "http://a.alice.nymote/replica", AddOptions{Tunnel: true}); err != nil {
		t.Fatal(err)
	}
	if HasToken(a.st, "b") || HasToken(b.st, "a") {
		t.Fatal("a tunnel peer got a token")
	}
	put(t, a.st, "notes/one", "from a")
	waitFor(t, "b to see a's write", func() bool { return read(b.st, "notes/one") == "from a" })
	put(t, b.st, "notes/two", "from b")
	waitFor(t, "a to see b's write", func() bool { return read(a.st, "notes/two") == "from b" })

	// Another address claiming to be a, without a token: refused.
	url := "http://" + b.srv.Listener.Addr().String() + "/replica/git"
	rogue := store.Remote{URL: url, Username: "a", Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.13")}}
		return d.DialContext(ctx, network, b.srv.Listener.Addr().String())
	}}
	if _, err := a.st.Fetch(ctx, rogue, "main"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authentication") {
		t.Errorf("a request from another address with a's name: %v, want refused", err)
	}

	// b is revoked: a's engine drops it, and b's pushes are refused.
	tn.mu.Lock()
	tn.revoked["b"] = true
	tn.mu.Unlock()
	waitFor(t, "a to drop b", func() bool { return len(a.e.Status()) == 0 })
	put(t, b.st, "notes/three", "b after its revocation")
	waitFor(t, "b's sync to a to fail", func() bool {
		st := b.e.Status()
		return len(st) == 1 && strings.Contains(strings.ToLower(st[0].LastError), "authentication")
	})
	if read(a.st, "notes/three") != "" {
		t.Error("a took a revoked node's write")
	}
}
