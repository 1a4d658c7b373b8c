package replica

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/store"
)

// node is one replica of a test: a store, its engine, its endpoint, and a
// proxy in front of the endpoint per peer that talks to it.
type node struct {
	name string
	st   *store.Store
	e    *Engine
	srv  *httptest.Server
}

// waitFor polls cond until it holds; the bound only fails a hung test.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newNode(t testing.TB, name string) *node {
	t.Helper()
	st, err := store.InitData(filepath.Join(t.TempDir(), name), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := SetSelf(st, name); err != nil {
		t.Fatal(err)
	}
	n := &node{name: name, st: st}
	t.Cleanup(func() {
		if n.e != nil {
			n.e.Close()
		}
		if n.srv != nil {
			n.srv.Close()
		}
		st.Close()
	})
	return n
}

func (n *node) start(t testing.TB, opts Options) {
	t.Helper()
	e, err := Start(n.st, opts)
	if err != nil {
		t.Fatal(err)
	}
	n.e = e
	mux := http.NewServeMux()
	mux.Handle("/replica/", e.Handler())
	n.srv = httptest.NewServer(mux)
}

// link makes a and b peers of each other through proxies (a's link to b
// goes through ab, b's to a through ba); the same token on both sides.
func link(t testing.TB, a, b *node, seed uint64) (ab, ba *FaultProxy) {
	t.Helper()
	var err error
	if ab, err = NewFaultProxy(b.srv.Listener.Addr().String(), seed); err != nil {
		t.Fatal(err)
	}
	if ba, err = NewFaultProxy(a.srv.Listener.Addr().String(), seed+1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ab.Close)
	t.Cleanup(ba.Close)
	tok := NewToken()
	ctx := context.Background()
	if _, err := AddPeer(ctx, a.st, b.name, "http://"+ab.Addr()+"/replica", AddOptions{Token: tok}); err != nil {
		t.Fatal(err)
	}
	if _, err := AddPeer(ctx, b.st, a.name, "http://"+ba.Addr()+"/replica", AddOptions{Token: tok}); err != nil {
		t.Fatal(err)
	}
	return ab, ba
}

func put(t testing.TB, st *store.Store, path, val string) {
	t.Helper()
	if _, err := st.Update(context.Background(), store.CommitOptions{Message: "put " + path}, func(tx *store.Tx) error {
		return tx.Put(path, []byte(val))
	}); err != nil {
		t.Fatal(err)
	}
}

func read(st *store.Store, path string) string {
	b, err := st.Read("", path)
	if err != nil {
		return ""
	}
	return string(b)
}

func tree(st *store.Store) store.Hash {
	sn, err := st.Snapshot("")
	if err != nil {
		return store.Hash{}
	}
	return sn.Tree()
}

func fastOpts() Options {
	return Options{Debounce: 5 * time.Millisecond, Poll: 2 * time.Second, Retry: 50 * time.Millisecond, Rescan: 100 * time.Millisecond}
}

func TestTwoNodesConverge(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	a.start(t, fastOpts())
	b.start(t, fastOpts())
	ab, _ := link(t, a, b, 1)
	put(t, a.st, "notes/one", "from a")
	waitFor(t, "b to see a's write", func() bool { return read(b.st, "notes/one") == "from a" })
	put(t, b.st, "notes/two", "from b")
	waitFor(t, "a to see b's write", func() bool { return read(a.st, "notes/two") == "from b" })

	// Partition: both write; local writes go on.
	ab.SetCut(true)
	_, ba := ab, ab
	_ = ba
	put(t, a.st, "notes/three", "a while cut")
	put(t, b.st, "notes/four", "b while cut")
	ab.SetCut(false)
	waitFor(t, "convergence after heal", func() bool {
		return read(a.st, "notes/four") != "" && read(b.st, "notes/three") != "" && tree(a.st) == tree(b.st)
	})
	st := a.e.Status()
	if len(st) != 1 || st[0].Name != "b" {
		t.Fatalf("status %+v", st)
	}
}

func TestPeerInput(t *testing.T) {
	a := newNode(t, "a")
	ctx := context.Background()
	for _, c := range []struct{ name, url, want string }{
		{"B", "http://x/replica", "node name"},
		{"b", "ftp://x/", "want an http"},
		{"b", "http://u:p@x/", "no user name"},
		{"b", "http:///x", "no host"},
		{"a", "http://x/", "own name"},
	} {
		if _, err := AddPeer(ctx, a.st, c.name, c.url, AddOptions{}); err == nil || !contains(err.Error(), c.want) {
			t.Errorf("AddPeer(%q, %q) = %v, want an error with %q", c.name, c.url, err, c.want)
		}
	}
	if _, err := AddPeer(ctx, a.st, "b", "http://127.0.0.1:1/replica", AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := AddPeer(ctx, a.st, "b", "http://127.0.0.1:2/replica", AddOptions{}); err == nil || !contains(err.Error(), "exists already") {
		t.Fatalf("duplicate: %v", err)
	}
	ps, err := Peers(a.st)
	if err != nil || len(ps) != 1 || ps[0].URL != "http://127.0.0.1:1/replica" {
		t.Fatalf("Peers = %+v, %v", ps, err)
	}
	// The token is a node file, not in the history.
	if tok := token(a.st, "b"); len(tok) != 64 {
		t.Fatalf("token %q", tok)
	}
	sn, _ := a.st.Snapshot("")
	ents, _ := sn.List("")
	for _, e := range ents {
		if b, _ := sn.Read(e.Path); contains(string(b), token(a.st, "b")) {
			t.Fatalf("%s holds the token", e.Path)
		}
	}
	if err := DelPeer(ctx, a.st, "b"); err != nil {
		t.Fatal(err)
	}
	if err := DelPeer(ctx, a.st, "b"); err == nil || !contains(err.Error(), "no peer") {
		t.Fatalf("second del: %v", err)
	}
	if token(a.st, "b") != "" {
		t.Fatal("token left after del")
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

var _ = errors.Is
var _ = fmt.Sprint

// TestRefusals: wrong credentials, a push to a branch not the peer's own,
// and a history that does not descend from what the peer pushed before are
// refused, and the store is unchanged.
func TestRefusals(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	a.start(t, fastOpts())
	b.start(t, fastOpts())
	link(t, a, b, 7)
	put(t, a.st, "notes/one", "from a")
	waitFor(t, "b to see a's write", func() bool { return read(b.st, "notes/one") == "from a" })
	// And a's push to have made b's branch replica/a (b may have seen the
	// write by pulling a first): a history unrelated to that branch is
	// what must be refused below, not the branch's first push.
	waitFor(t, "a's push to reach b's replica/a", func() bool {
		h, err := b.st.Resolve(FromBranch("a"))
		return err == nil && !h.IsZero()
	})
	before, _ := b.st.Resolve(FromBranch("a"))
	ctx := context.Background()
	url := "http://" + b.srv.Listener.Addr().String() + "/replica/git"

	rogue := newNode(t, "rogue")
	put(t, rogue.st, "notes/evil", "x")
	for _, c := range []struct {
		name string
		rem  store.Remote
		opts store.SyncOptions
		want string
	}{
		{"wrong token", store.Remote{URL: url, Username: "a", Password: NewToken()}, store.SyncOptions{RemoteBranch: FromBranch("a")}, "authentication"},
		{"unknown peer", store.Remote{URL: url, Username: "zed", Password: token(a.st, "b")}, store.SyncOptions{RemoteBranch: FromBranch("zed")}, "authentication"},
		{"another branch", store.Remote{URL: url, Username: "a", Password: token(a.st, "b")}, store.SyncOptions{RemoteBranch: "replica/other"}, "may push to replica/a only"},
		{"unrelated history", store.Remote{URL: url, Username: "a", Password: token(a.st, "b")}, store.SyncOptions{RemoteBranch: FromBranch("a")}, "fast-forward"},
	} {
		err := rogue.st.Push(ctx, c.rem, c.opts)
		if err == nil || !contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) {
			t.Errorf("%s: push: %v, want an error with %q", c.name, err, c.want)
		}
	}
	// (b's main may move meanwhile: a's own syncs.)
	if read(b.st, "notes/evil") != "" {
		t.Error("the rogue's item reached b")
	}
	if h, err := b.st.Resolve("replica/other"); err == nil && !h.IsZero() {
		t.Error("the rogue made a branch on b")
	}
	if h, _ := b.st.Resolve(FromBranch("a")); h.IsZero() {
		t.Error("a's branch on b is gone")
	} else if ok, _ := isAncestorOf(b.st, before, h); !ok {
		t.Errorf("a's branch on b does not descend from %s", before)
	}
}

func isAncestorOf(st *store.Store, a, b store.Hash) (bool, error) {
	n, err := st.CountNew(a, []store.Hash{b}, 0)
	return n == 0, err
}

// TestNoEcho: a node whose main moved to the head a peer pushed to it does
// not push that head back (the peer has it), and the peer, whose push was
// taken, counts itself in sync.
func TestNoEcho(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	opts := fastOpts()
	opts.Poll = time.Hour // only commits and pushes make them talk
	a.start(t, opts)
	b.start(t, opts)
	link(t, a, b, 1)
	put(t, a.st, "notes/one", "from a")
	head := func(n *node, rev string) store.Hash { h, _ := n.st.Resolve(rev); return h }
	// Quiet: one head, which each node took from the other or gave it.
	gave := func(n *node, peer string) store.Hash {
		n.e.mu.Lock()
		p := n.e.peers[peer]
		n.e.mu.Unlock()
		if p == nil {
			return store.Hash{}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.pushed
	}
	waitFor(t, "the first exchange", func() bool {
		h := head(a, "")
		return read(b.st, "notes/one") == "from a" && head(b, "") == h &&
			(head(a, FromBranch("b")) == h || gave(a, "b") == h) && (head(b, FromBranch("a")) == h || gave(b, "a") == h)
	})
	syncs := func(n *node) int {
		st := n.e.Status()
		if len(st) != 1 {
			t.Fatalf("%s: status %+v", n.name, st)
		}
		return st[0].Syncs
	}
	was, b0 := head(a, FromBranch("b")), syncs(b)
	put(t, a.st, "notes/two", "from a")
	h2 := head(a, "")
	waitFor(t, "b to move to a's head and sync", func() bool { return head(b, "") == h2 && syncs(b) > b0 })
	if got := head(a, FromBranch("b")); got != was {
		t.Errorf("b pushed a's own head back to it: a's %s is %s, was %s", FromBranch("b"), got, was)
	}
	waitFor(t, "a to count b in sync", func() bool {
		st := a.e.Status()
		return len(st) == 1 && st[0].Ahead == 0 && st[0].Behind == 0 && !st[0].LastContact.IsZero() && st[0].InSync.Equal(st[0].LastContact)
	})
}
