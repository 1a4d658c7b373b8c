package store

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// addGitUsers adds the users that gitServer serves.
func addGitUsers(t *testing.T, s *Store) {
	t.Helper()
	for _, u := range []struct {
		name string
		git  GitAccess
	}{{"alice", GitWrite}, {"reader", GitRead}} {
		if err := s.AddUser(context.Background(), u.name, u.name+"-password", u.git); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPushHTTPS: a push to a store served over https with a certificate
// that only Remote.CABundle trusts, through Remote.Dial; without the
// bundle it is refused.
func TestPushHTTPS(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "x/1", "one")
	addGitUsers(t, a)
	srv := httptest.NewTLSServer(a.GitHandler(nil))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	var dials atomic.Int32
	rem := Remote{URL: srv.URL + "/store.git", Username: "alice", Password: "alice-password", CABundle: ca,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, address)
		}}
	b, err := Clone(ctx, rem, filepath.Join(t.TempDir(), "b.git"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	put(t, b, "y/1", "b's")
	n := dials.Load()
	if err := b.Push(ctx, rem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, a, "main"); !strings.Contains(got, "y/1=b's") {
		t.Fatalf("after the push over https: a = %s", got)
	}
	if dials.Load() == n {
		// (A connection kept from the clone's requests may be taken up
		// again; the clone went through go-git's transport, another one.)
		t.Errorf("the push over https did not dial with Remote.Dial")
	}
	put(t, b, "y/2", "b's second")
	noCA := rem
	noCA.CABundle = nil
	if err := b.Push(ctx, noCA, SyncOptions{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("push to a certificate that nothing trusts = %v, want a certificate error", err)
	}
	if err := b.Push(ctx, rem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, a, "main"); !strings.Contains(got, "y/2=b's second") {
		t.Fatalf("after the second push over https: a = %s", got)
	}
	fsckOpen(t, a)
}

// TestPushHTTPRefused: a push that the remote refuses fails with what it
// said, never the password: a wrong password, a user without write
// access, a branch that has moved on, a commit that the remote's validator
// refuses, a busy remote, and a push whose context is cancelled.
func TestPushHTTPRefused(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "notes/1", "note 1")
	a.SetValidateFunc("notes/", func(p string, data []byte, _ func(string) ([]byte, error)) error {
		if !strings.HasPrefix(string(data), "note ") {
			return errors.New("a note starts with \"note \"")
		}
		return nil
	})
	rem, b := cloneOverHTTP(t, a)
	put(t, b, "notes/2", "not a note")
	bad := rem
	bad.Password = "s3cret-but-wrong"
	err := b.Push(ctx, bad, SyncOptions{})
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), rem.URL) || strings.Contains(err.Error(), bad.Password) {
		t.Errorf("push with a wrong password = %v; want a 401 naming the remote, not the password", err)
	}
	reader := rem
	reader.Username, reader.Password = "reader", "reader-password"
	if err := b.Push(ctx, reader, SyncOptions{}); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "may not push") {
		t.Errorf("push by a user who may only read = %v; want a 403 saying so", err)
	}
	if err := b.Push(ctx, rem, SyncOptions{}); err == nil || !strings.Contains(err.Error(), "a note starts with") {
		t.Errorf("push of a commit that the validator refuses = %v", err)
	}
	if h, _ := a.Resolve(""); h == mustResolve(t, b) {
		t.Errorf("the refused commit reached the remote")
	}
	// The remote's branch moves between the advertisement and the push.
	moved := false
	mover := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !moved {
			moved = true
			put(t, a, "notes/3", "note 3")
		}
		a.GitHandler(nil).ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mover)
	t.Cleanup(srv.Close)
	c := newStore(t)
	movRem := Remote{URL: srv.URL + "/store.git", Username: "alice", Password: "alice-password"}
	if _, err := c.Pull(ctx, movRem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	put(t, c, "notes/4", "note 4")
	if err := c.Push(ctx, movRem, SyncOptions{}); !errors.Is(err, ErrNotFastForward) {
		t.Errorf("push to a branch that moved meanwhile = %v, want ErrNotFastForward", err)
	}

	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, "too busy", http.StatusServiceUnavailable)
	}))
	t.Cleanup(busy.Close)
	busyRem := rem
	busyRem.URL = busy.URL + "/store.git"
	if err := c.Push(ctx, busyRem, SyncOptions{}); err == nil || !strings.Contains(err.Error(), "after 7 s") || errors.Is(err, ErrNotExist) {
		t.Errorf("push to a busy remote = %v; want an error that says when to try again", err)
	}

	// A push in flight stops when its context is cancelled.
	arrived := make(chan struct{})
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			close(arrived)
			<-release
			return
		}
		a.GitHandler(nil).ServeHTTP(w, r)
	}))
	t.Cleanup(stuck.Close)
	t.Cleanup(func() { close(release) })
	stuckRem := rem
	stuckRem.URL = stuck.URL + "/store.git"
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		<-arrived
		cancel()
	}()
	put(t, a, "notes/5", "note 5")
	if _, err := c.Pull(ctx, rem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	put(t, c, "notes/6", "note 6")
	if err := c.Push(cctx, stuckRem, SyncOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("push whose context was cancelled = %v, want context.Canceled", err)
	}
	fsckOpen(t, a)
}

func mustResolve(t *testing.T, s *Store) Hash {
	t.Helper()
	h, err := s.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestPushHTTPMemory: a push of a large blob streams its pack to the
// connection: when the remote's handler is called, the pushing side holds
// nothing like the pack in memory (go-git's push encoded the whole request
// into a buffer before it posted it), nor halfway through the body.
func TestPushHTTPMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("a 24 MiB push")
	}
	ctx := context.Background()
	const size = 24 << 20
	a := newStore(t)
	put(t, a, "x/1", "one")
	addGitUsers(t, a)
	var atPost, halfway atomic.Uint64
	h := a.GitHandler(nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			atPost.Store(heapNow())
			r.Body = &probeBody{ReadCloser: r.Body, at: size / 2, probe: func() { halfway.Store(heapNow()) }}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rem := Remote{URL: srv.URL + "/store.git", Username: "alice", Password: "alice-password"}
	b, err := Clone(ctx, rem, filepath.Join(t.TempDir(), "b.git"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sp := spoolOf(t, b, noise(size, 3))
	if _, err := b.Update(ctx, CommitOptions{}, func(tx *Tx) error {
		_, err := tx.PutBlobSpool("big/blob", sp)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	before := heapNow()
	if err := b.Push(ctx, rem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if mustResolve(t, a) != mustResolve(t, b) {
		t.Fatalf("the push did not reach the remote")
	}
	grow := func(at uint64) int64 { return int64(at) - int64(before) }
	t.Logf("a %d MiB blob: the heap grew by %d KiB when the remote got the push, by %d KiB halfway through its body",
		size>>20, grow(atPost.Load())>>10, grow(halfway.Load())>>10)
	if halfway.Load() == 0 {
		t.Fatalf("the remote did not read half of the push")
	}
	for _, at := range []uint64{atPost.Load(), halfway.Load()} {
		if grow(at) > size/4 {
			t.Errorf("pushing a %d MiB blob: the heap grew by %d MiB (at the request, then halfway), want under %d MiB", size>>20, grow(at)>>20, size/4>>20)
			break
		}
	}
	fsckOpen(t, a)
}

// heapNow is the heap in use after a collection.
func heapNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// probeBody calls probe once when at bytes have been read.
type probeBody struct {
	io.ReadCloser
	n, at int
	probe func()
}

func (b *probeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.n < b.at && b.n+n >= b.at {
		b.probe()
	}
	b.n += n
	return n, err
}
