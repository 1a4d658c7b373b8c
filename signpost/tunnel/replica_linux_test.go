//go:build linux

package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/signpost"
	"github.com/nymote/nymote/signpost/tunnel"
	"github.com/nymote/nymote/store"
)

// replicaNode is a node's store with its replica engine, its endpoint
// served on the node's netstack (every address: the tunnel's too), and the
// engine's Tunnel from the node's data directory.
func replicaNode(t *testing.T, dir, self, peer string, st *netstack.Stack) (*store.Store, *replica.Engine) {
	t.Helper()
	s, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := replica.SetSelf(s, self); err != nil {
		t.Fatal(err)
	}
	// The peer at its name in the network, through the tunnel: no token.
	if _, err := replica.AddPeer(context.Background(), s, peer, "http://"+peer+".alice.nymote:9418/replica", replica.AddOptions{Tunnel: true}); err != nil {
		t.Fatal(err)
	}
	e, err := replica.Start(s, replica.Options{Logger: testLogger(t).With("replica", self), Debounce: 5 * time.Millisecond,
		Poll: 2 * time.Second, Retry: 50 * time.Millisecond, Timeout: 5 * time.Second,
		Tunnel: signpost.NewReplicaTunnel(dir, st.DialContext)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := st.Listen("tcp", ":9418")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/replica/", e.Handler())
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		e.Close()
	})
	return s, e
}

// mailNode runs the mail service on st's netstack with its replication
// endpoint on the git port (:9418, plain HTTP) and no replica Tunnel given:
// the service takes its data directory's Signpost node itself. Its store
// begins as a clone of from's (peers' histories must share a commit).
func mailNode(t *testing.T, dir, self, peer string, st *netstack.Stack, from *store.Store) *store.Store {
	t.Helper()
	s, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), store.Remote{URL: from.Path()}, store.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := replica.SetSelf(s, self); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.AddPeer(context.Background(), s, peer, "http://"+peer+".alice.nymote:9418/replica", replica.AddOptions{Tunnel: true}); err != nil {
		t.Fatal(err)
	}
	ln, err := st.Listen("tcp", ":9418")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- mailsvc.Serve(ctx, mailsvc.Config{Store: s, DataDir: dir, Domains: []string{self + ".alice.nymote"}, InsecureAuth: true,
			Dial: st.DialContext, Logger: testLogger(t).With("mail", self),
			Replica: replica.Options{Debounce: 5 * time.Millisecond, Poll: 2 * time.Second, Retry: 50 * time.Millisecond, Timeout: 5 * time.Second}},
			mailsvc.Listeners{Git: ln})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mail: %v", err)
		}
		s.Close()
	})
	return s
}

// peerStatus is the status of the only peer that the running engine of s
// last wrote.
func peerStatus(s *store.Store) (replica.Status, error) {
	_, ps, err := replica.ReadStatus(s)
	if err != nil {
		return replica.Status{}, err
	}
	if len(ps) != 1 {
		return replica.Status{}, fmt.Errorf("%d peers in the status", len(ps))
	}
	return ps[0], nil
}

func putItem(t *testing.T, s *store.Store, path, val string) {
	t.Helper()
	if _, err := s.Update(context.Background(), store.CommitOptions{Message: "put " + path}, func(tx *store.Tx) error {
		return tx.Put(path, []byte(val))
	}); err != nil {
		t.Fatal(err)
	}
}

func hasItem(s *store.Store, path, val string) error {
	b, err := s.Read("", path)
	if err != nil {
		return err
	}
	if string(b) != val {
		return fmt.Errorf("%s = %q", path, b)
	}
	return nil
}

// TestReplicaOverTunnel: two nodes in namespaces, hub A with a public
// address and B behind a NAT, each with its store, replica engine and
// endpoint on its own netstack (B's: the mail service's, on its git port). Their peer records name each other by
// NODE.alice.nymote and hold no token: the engines reach each other
// through the in-appliance tunnel, and each takes the other's requests
// because they come from the other's tunnel address (WireGuard
// authenticated its key). Writes sync both ways from B's join on; after
// `peer del b` on A, B's syncs fail and A drops B.
func TestReplicaOverTunnel(t *testing.T) {
	netstacktest.NeedRoot(t)
	netstacktest.NeedCommand(t, "nft", "nftables")

	inet := netstacktest.NewNS(t)
	netstacktest.RunNS(t, inet, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	nsA, natB, nsB := netstacktest.NewNS(t), netstacktest.NewNS(t), netstacktest.NewNS(t)
	stA := netstackIn(t, nsA, inet, netip.MustParsePrefix("198.51.100.2/24"), netip.MustParseAddr("198.51.100.1"))
	natRouter(t, natB, inet, netip.MustParsePrefix("203.0.113.2/24"), netip.MustParseAddr("203.0.113.1"))
	stB := netstackIn(t, nsB, natB, netip.MustParsePrefix("10.1.0.2/24"), netip.MustParseAddr("10.1.0.1"))

	dirA, dirB := t.TempDir(), t.TempDir()
	invB, err := signpost.Issue(dirA, "b", "198.51.100.2:51820", "alice", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	nodeA, err := tunnel.Start(tunnel.Config{Dir: dirA, Stack: stA, Logger: testLogger(t).With("node", "A"), Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer nodeA.Close()
	nodeB, err := tunnel.Start(tunnel.Config{Dir: dirB, Stack: stB, Logger: testLogger(t).With("node", "B"), Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer nodeB.Close()
	// Both stores run before B joins (their peers unknown to the tunnel:
	// not synced yet). B is a mail service, which takes the tunnel from
	// its data directory itself.
	sA, eA := replicaNode(t, dirA, "hub", "b", stA)
	sB := mailNode(t, dirB, "b", "hub", stB, sA)
	putItem(t, sA, "notes/one", "from the hub")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	joined := time.Now()
	if _, err := signpost.Join(ctx, dirB, invB, "", stB.DialContext); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "B gets A's write over the tunnel", func() error { return hasItem(sB, "notes/one", "from the hub") })
	t.Logf("peer join to first sync (B has A's write): %s", time.Since(joined))
	putItem(t, sB, "notes/two", "from b")
	waitFor(t, 60*time.Second, "A gets B's write over the tunnel", func() error { return hasItem(sA, "notes/two", "from b") })
	if st := eA.Status(); len(st) != 1 || st[0].LastContact.IsZero() {
		t.Errorf("A's status: %+v", st)
	}
	waitFor(t, 30*time.Second, "B's status file shows its contact with A", func() error {
		st, err := peerStatus(sB)
		if err == nil && st.LastContact.IsZero() {
			err = errors.New("no contact")
		}
		return err
	})
	// B cannot pass for another peer of A's: its requests come from its
	// own tunnel address.
	if _, err := replica.AddPeer(ctx, sA, "c", "http://c.alice.nymote:9418/replica", replica.AddOptions{Tunnel: true}); err != nil {
		t.Fatal(err)
	}
	a4, _ := nodeA.Addrs()
	claim := store.Remote{URL: "http://" + netip.AddrPortFrom(a4, 9418).String() + "/replica/git", Username: "c", Dial: stB.DialContext}
	if _, err := sB.Fetch(ctx, claim, "main"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authentication") {
		t.Errorf("B's request in the name of c: %v, want refused", err)
	}

	// peer del b on A: its tunnel goes, and with it its credential.
	if _, err := signpost.Revoke(dirA, "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "A's engine drops B", func() error {
		if n := len(eA.Status()); n != 0 {
			return fmt.Errorf("%d peers", n)
		}
		return nil
	})
	putItem(t, sB, "notes/three", "from b, revoked")
	var last replica.Status
	waitFor(t, 60*time.Second, "B's sync to A fails", func() error {
		st, err := peerStatus(sB)
		if err == nil && st.LastError == "" {
			err = errors.New("no failure yet")
		}
		last = st
		return err
	})
	if err := hasItem(sA, "notes/three", "from b, revoked"); err == nil {
		t.Fatal("A took a revoked node's write")
	}
	t.Logf("B's sync after its revocation: %s", last.LastError)
}
