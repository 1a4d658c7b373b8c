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
	share(t, a, b)
	if _, err := AddPeer(ctx, b.st, a.name, "http://"+ba.Addr()+"/replica", AddOptions{Token: tok}); err != nil {
		t.Fatal(err)
	}
	return ab, ba
}

// share makes b's store, if it has no commit yet, a clone of a's (as Join
// does for a new node): peers' histories must share a commit.
func share(t testing.TB, a, b *node) {
	t.Helper()
	if h, _ := b.st.Resolve(""); !h.IsZero() {
		return
	}
	if _, err := b.st.Pull(context.Background(), store.Remote{URL: a.st.Path()}, store.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
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
	// b's branch replica/a, as a's push makes it (the engine may not have:
	// b may have seen the write by pulling a, and a pushes nothing to a
	// peer whose main is at its head): a history unrelated to that branch
	// is what must be refused below, not only the branch's first push.
	ctx := context.Background()
	url := "http://" + b.srv.Listener.Addr().String() + "/replica/git"
	if err := a.st.Push(ctx, store.Remote{URL: url, Username: "a", Password: token(a.st, "b")}, store.SyncOptions{RemoteBranch: FromBranch("a")}); err != nil {
		t.Fatal(err)
	}
	before, _ := b.st.Resolve(FromBranch("a"))

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

	// A peer of b's (its token is good) whose store was begun apart from
	// b's: its first push to its own branch is no fast-forward of anything,
	// but its history shares no commit with b's, so it is refused; and b's
	// pull of its main (the rogue's endpoint takes b's push) is refused too.
	tok := NewToken()
	rsrv := httptest.NewServer(http.StripPrefix("/replica", rogue.st.GitHandler(nil, store.WithGitAuthenticator(func(*http.Request, string, string) (store.User, error) {
		return store.User{Name: "anyone", Git: store.GitWrite}, nil
	}))))
	t.Cleanup(rsrv.Close)
	if _, err := AddPeer(ctx, b.st, "rogue", rsrv.URL+"/replica", AddOptions{Token: tok}); err != nil {
		t.Fatal(err)
	}
	mainBefore, _ := b.st.Resolve("")
	err := rogue.st.Push(ctx, store.Remote{URL: url, Username: "rogue", Password: tok}, store.SyncOptions{RemoteBranch: FromBranch("rogue")})
	if err == nil || !contains(err.Error(), "unrelated history") {
		t.Errorf("a peer's first push of an unrelated history: %v, want refused as unrelated", err)
	}
	if h, err := b.st.Resolve(FromBranch("rogue")); err == nil && !h.IsZero() {
		t.Errorf("b took the unrelated history as %s", FromBranch("rogue"))
	}
	waitFor(t, "b's pull from the rogue to be refused", func() bool {
		b.e.Kick("rogue")
		for _, s := range b.e.Status() {
			if s.Name == "rogue" && contains(s.LastError, "unrelated history") {
				return true
			}
		}
		return false
	})
	if read(b.st, "notes/evil") != "" {
		t.Error("the rogue's item reached b")
	}
	if ok, _ := isAncestorOf(b.st, mainBefore, mustResolve(b.st, "")); !ok {
		t.Error("b's main does not descend from what it was")
	}
}

func mustResolve(st *store.Store, rev string) store.Hash {
	h, _ := st.Resolve(rev)
	return h
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

// TestRetryAfter: a peer that is down is tried again after Retry, then
// twice as long each time up to MaxRetry (the smaller of Poll and 8 s by
// default), never more: nodes find each other within MaxRetry of a heal.
func TestRetryAfter(t *testing.T) {
	o := Options{Poll: 30 * time.Second}
	o.defaults()
	var got []time.Duration
	for n := 1; n <= 8; n++ {
		got = append(got, o.retryAfter(n))
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", got, want)
	}
	// A peer that asks for a longer wait (503 with Retry-After) gets
	// it, up to Poll; a shorter one changes nothing.
	for _, c := range []struct {
		after time.Duration
		n     int
		want  time.Duration
	}{{5 * time.Second, 1, 5 * time.Second}, {5 * time.Second, 5, 8 * time.Second}, {time.Hour, 1, 30 * time.Second}, {0, 2, time.Second}} {
		err := fmt.Errorf("push: %w", &store.BusyError{After: c.after})
		if got := o.waitAfter(err, c.n); got != c.want {
			t.Errorf("Retry-After %v, failure %d: wait %v, want %v", c.after, c.n, got, c.want)
		}
	}
	if got := o.waitAfter(errors.New("refused"), 3); got != 2*time.Second {
		t.Errorf("another error, failure 3: wait %v, want 2s", got)
	}
	o = Options{Poll: 2 * time.Second, Retry: 100 * time.Millisecond}
	o.defaults()
	if o.MaxRetry != 2*time.Second || o.retryAfter(1) != 100*time.Millisecond || o.retryAfter(9) != 2*time.Second {
		t.Errorf("Poll 2 s: MaxRetry %v, waits %v .. %v", o.MaxRetry, o.retryAfter(1), o.retryAfter(9))
	}
}

// relayNodes starts a, b and c, each a peer of the other two, with opts,
// and waits until all three hold a first write of a's. It returns a's
// links to c (a to c, c to a).
func relayNodes(t *testing.T, opts Options) (a, b, c *node, ac, ca *FaultProxy) {
	t.Helper()
	a, b, c = newNode(t, "a"), newNode(t, "b"), newNode(t, "c")
	nodes := []*node{a, b, c}
	for _, n := range nodes {
		n.start(t, opts)
	}
	// The peer records are made on a and b, and b and c begin as clones
	// (records replicate; tokens and URLs are each node's own).
	ctx := context.Background()
	addPeer := func(on, n *node) {
		t.Helper()
		if _, err := AddPeer(ctx, on.st, n.name, "http://"+n.srv.Listener.Addr().String()+"/replica", AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	addPeer(a, b)
	addPeer(a, c)
	share(t, a, b)
	addPeer(b, a) // (a's own name, refused on a)
	share(t, b, c)
	proxies := map[[2]string]*FaultProxy{}
	for i, x := range nodes {
		for j, y := range nodes {
			if i == j {
				continue
			}
			p, err := NewFaultProxy(y.srv.Listener.Addr().String(), uint64(10*i+j))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			proxies[[2]string{x.name, y.name}] = p
			if err := SetLocalURL(x.st, y.name, "http://"+p.Addr()+"/replica"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, x := range nodes {
		for _, y := range nodes[i+1:] {
			tok := NewToken()
			if err := SetToken(x.st, y.name, tok); err != nil {
				t.Fatal(err)
			}
			if err := SetToken(y.st, x.name, tok); err != nil {
				t.Fatal(err)
			}
		}
	}
	ac, ca = proxies[[2]string{"a", "c"}], proxies[[2]string{"c", "a"}]
	put(t, a.st, "notes/zero", "first")
	// One head on all three (the setup's own commits, b's peer record,
	// merged everywhere), so that nothing moves a's main but the test's
	// writes.
	waitFor(t, "every node to hold a's first write, at one head", func() bool {
		ha, _ := a.st.Resolve("")
		hb, _ := b.st.Resolve("")
		hc, _ := c.st.Resolve("")
		if read(c.st, "notes/zero") != "first" || ha != hb || hb != hc {
			return false
		}
		// Every link's last sync good: no retry, which pulls, is due
		// (the first tries fail until the tokens are set).
		for _, n := range nodes {
			st := n.e.Status()
			if len(st) != 2 {
				return false
			}
			for _, p := range st {
				if p.LastError != "" || p.Syncs == 0 {
					return false
				}
			}
		}
		return true
	})
	return a, b, c, ac, ca
}

func syncsWith(t *testing.T, n *node, peer string) int {
	t.Helper()
	for _, s := range n.e.Status() {
		if s.Name == peer {
			return s.Syncs
		}
	}
	t.Fatalf("%s has no peer %s", n.name, peer)
	return 0
}

// TestRelayHeldBack: a head that another peer pushed here is passed on
// only after Options.Relay: the node that made it pushes it to every peer
// itself. With a's link to c slow, b, which has a's commit first, does
// not send it on to c (it sent it all a second time, before a's own push
// landed); with a's link to c cut, b passes it on after Relay.
func TestRelayHeldBack(t *testing.T) {
	head := func(n *node, rev string) store.Hash { h, _ := n.st.Resolve(rev); return h }
	t.Run("held", func(t *testing.T) {
		opts := fastOpts()
		opts.Poll, opts.Relay = time.Hour, time.Hour // (the poll pushes whatever)
		a, b, c, ac, _ := relayNodes(t, opts)
		ac.SetDelay(300 * time.Millisecond)
		s0 := syncsWith(t, b, "c")
		put(t, a.st, "notes/one", "from a")
		h := head(a, "")
		waitFor(t, "b to take a's head and sync with c", func() bool { return head(b, "") == h && syncsWith(t, b, "c") > s0 })
		waitFor(t, "c to get a's write from a", func() bool { return read(c.st, "notes/one") == "from a" })
		if got := head(c, FromBranch("b")); c.st.Reaches(got, h) {
			t.Errorf("b relayed a's commit %s to c before Relay (c's %s is %s)", short(h), FromBranch("b"), short(got))
		}
		if got := head(c, FromBranch("a")); !c.st.Reaches(got, h) {
			t.Errorf("c's %s = %s, which lacks a's commit %s", FromBranch("a"), short(got), short(h))
		}
	})
	t.Run("relayed", func(t *testing.T) {
		opts := fastOpts()
		opts.Poll, opts.Relay = time.Hour, 50*time.Millisecond
		a, b, c, ac, ca := relayNodes(t, opts)
		ac.SetCut(true)
		ca.SetCut(true)
		for i := 0; i < 5; i++ {
			put(t, a.st, fmt.Sprintf("notes/cut%d", i), "from a")
		}
		h := head(a, "")
		waitFor(t, "c to get a's writes through b", func() bool {
			return head(b, "") == h && read(c.st, "notes/cut4") == "from a" && tree(c.st) == tree(a.st)
		})
	})
}

func short(h store.Hash) string { return h.String()[:7] }
