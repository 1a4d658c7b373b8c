package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/store"
)

// waitFor polls cond until it holds; the bound only fails a hung test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric reads one sample of /metrics (ok false when absent).
func (e *env) metric(name string) (float64, bool) {
	e.t.Helper()
	r := e.api("GET", "/metrics", "alice", "")
	if r.status != 200 {
		e.t.Fatalf("/metrics: %d %s", r.status, r.body)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(r.body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	return v, true
}

// TestPeers: the console's node "a" replicates with "b" (through a
// proxy that the test cuts); the peers page, the API and the metrics show
// the sync state and follow it: in sync, then cut off (lag grows, failed
// syncs counted), then in sync again. A peer record without a token here
// is listed as not paired. Only admins see any of it.
func TestPeers(t *testing.T) {
	var eng *replica.Engine
	e := newEnv(t, func(o *Options) {
		o.Peers = func() []replica.Status {
			if eng == nil {
				return nil
			}
			return eng.Status()
		}
	})
	ctx := context.Background()
	opts := replica.Options{Debounce: 5 * time.Millisecond, Poll: 2 * time.Second, Retry: 50 * time.Millisecond, Rescan: 100 * time.Millisecond}
	// b is a clone of a made after a recorded both (and c, a record
	// without a token here): the two start with the same head, and only
	// a writes, so that "in sync" is reached and stays until a cut.
	srvA, srvB := httptest.NewUnstartedServer(nil), httptest.NewUnstartedServer(nil)
	ab, err := replica.NewFaultProxy(srvB.Listener.Addr().String(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ab.Close)
	tok := replica.NewToken()
	if _, err := replica.AddPeer(ctx, e.st, "a", "http://"+srvA.Listener.Addr().String()+"/replica", replica.AddOptions{Token: tok}); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.AddPeer(ctx, e.st, "b", "http://"+ab.Addr()+"/replica", replica.AddOptions{Token: tok}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Update(ctx, store.CommitOptions{Message: "peer record of c"}, func(tx *store.Tx) error {
		return tx.Put(replica.PeersPrefix+"/c.json", []byte(`{"url":"https://c.example.org/replica","added":"2026-12-01T00:00:00Z"}`))
	}); err != nil {
		t.Fatal(err)
	}
	stB, err := store.Clone(ctx, store.Remote{URL: e.st.Path()}, filepath.Join(t.TempDir(), "b", "store.git"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stB.Close() })
	if err := replica.SetToken(stB, "a", tok); err != nil {
		t.Fatal(err)
	}
	serve := func(st *store.Store, name string, srv *httptest.Server) *replica.Engine {
		if err := replica.SetSelf(st, name); err != nil {
			t.Fatal(err)
		}
		en, err := replica.Start(st, opts)
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/replica/", en.Handler())
		srv.Config.Handler = mux
		srv.Start()
		t.Cleanup(func() { en.Close(); srv.Close() })
		return en
	}
	eng = serve(e.st, "a", srvA)
	serve(stB, "b", srvB)
	statusB := func() replica.Status {
		for _, s := range eng.Status() {
			if s.Name == "b" {
				return s
			}
		}
		return replica.Status{}
	}
	head := func(st *store.Store) store.Hash {
		h, err := st.BranchHead("")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	waitFor(t, "a and b in sync", func() bool {
		s := statusB()
		return !s.InSync.IsZero() && s.Ahead == 0 && s.Behind == 0 && s.LastError == "" && head(e.st) == head(stB)
	})

	// The API, for admins only.

	var got struct {
		Self  string     `json:"self"`
		Peers []PeerInfo `json:"peers"`
	}
	r := e.api("GET", "/api/v1/admin/peers", "alice", "")
	r.json(t, &got)
	if r.status != 200 || got.Self != "a" || len(got.Peers) != 2 {
		t.Fatalf("peers: %d %s", r.status, r.body)
	}
	if b := got.Peers[0]; b.Name != "b" || !b.Synced || b.State != "in sync" || b.LastContact.IsZero() || b.LagSeconds == nil {
		t.Errorf("peer b: %+v", b)
	}
	if c := got.Peers[1]; c.Name != "c" || c.Synced || !strings.Contains(c.State, "not paired") || c.URL != "https://c.example.org/replica" {
		t.Errorf("peer c: %+v", c)
	}
	if r := e.api("GET", "/api/v1/admin/peers", "bob", ""); r.status != 403 {
		t.Errorf("bob's peers: %d, want 403", r.status)
	}
	if r := e.api("GET", "/api/v1/admin/peers", "", ""); r.status != 401 {
		t.Errorf("peers without credentials: %d, want 401", r.status)
	}
	// The page.
	c, _ := e.login("alice")
	r = do(t, c, mustReq("GET", e.srv.URL+"/console/peers", nil))
	for _, want := range []string{"This node is <strong>a</strong>", "<strong>b</strong>", `<td class="state">in sync</td>`, "not paired with this node"} {
		if r.status != 200 || !strings.Contains(r.body, want) {
			t.Errorf("peers page lacks %q: %d\n%s", want, r.status, r.body)
		}
	}
	cb, _ := e.login("bob")
	if r := do(t, cb, mustReq("GET", e.srv.URL+"/console/peers", nil)); r.status != 403 {
		t.Errorf("bob's peers page: %d, want 403", r.status)
	}

	// Metrics: in sync.
	const lag, behind, fails = `nymote_replica_sync_lag_seconds{peer="b"}`, `nymote_replica_behind_commits{peer="b"}`, `nymote_replica_sync_failures_total{peer="b"}`
	if v, ok := e.metric(behind); !ok || v != 0 {
		t.Errorf("%s = %v, %v; want 0", behind, v, ok)
	}
	lag0, ok := e.metric(lag)
	if !ok {
		t.Fatalf("no %s", lag)
	}
	commits0, _ := e.metric("nymote_store_commit_seconds_count")

	// Cut off: a's writes fail to reach b; the lag grows.
	ab.SetCut(true)
	e.deliver("alice", "while b is away")
	waitFor(t, "a failed sync with b", func() bool { v, _ := e.metric(fails); return v > 0 })
	if v, _ := e.metric("nymote_store_commit_seconds_count"); v <= commits0 {
		t.Errorf("nymote_store_commit_seconds_count %v after a commit, was %v", v, commits0)
	}
	lag1, _ := e.metric(lag)
	waitFor(t, "the lag to grow while cut", func() bool { v, _ := e.metric(lag); return v > lag1 && v > lag0 })
	if s := statusB(); s.LastError == "" {
		t.Errorf("b's status while cut: %+v", s)
	}
	r = do(t, c, mustReq("GET", e.srv.URL+"/console/peers", nil))
	if !strings.Contains(r.body, "unreachable since") {
		t.Errorf("peers page while cut:\n%s", r.body)
	}

	// Healed: in sync again, the lag starts over.
	healed := time.Now()
	ab.SetCut(false)
	waitFor(t, "in sync again", func() bool {
		s := statusB()
		return s.LastError == "" && s.Ahead == 0 && s.Behind == 0 && s.InSync.After(healed)
	})
	if v, _ := e.metric(lag); v > time.Since(healed).Seconds() {
		t.Errorf("%s = %v after the heal %v ago", lag, v, time.Since(healed))
	}
}
