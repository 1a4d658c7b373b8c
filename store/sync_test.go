package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func TestPullPushByPath(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "x/1", "one")
	b, err := Clone(ctx, Remote{URL: a.Path()}, filepath.Join(t.TempDir(), "b.git"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, _ := b.Read("", "x/1"); string(got) != "one" {
		t.Fatalf("clone: x/1 = %q", got)
	}
	// Both sides change different paths: pull merges, push fast-forwards.
	put(t, a, "x/2", "two")
	put(t, b, "y/1", "b's")
	if err := b.Push(ctx, Remote{URL: a.Path()}, SyncOptions{}); !errors.Is(err, ErrNotFastForward) {
		t.Errorf("push of a diverged branch = %v, want ErrNotFastForward", err)
	}
	res, err := b.Pull(ctx, Remote{URL: a.Path()}, SyncOptions{})
	if err != nil || res.FastForward || res.UpToDate {
		t.Fatalf("Pull = %+v, %v; want a merge", res, err)
	}
	if err := b.Push(ctx, Remote{URL: a.Path()}, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := contents(t, a, "main"), "x/1=one x/2=two y/1=b's"; got != want {
		t.Errorf("a after push = %s, want %s", got, want)
	}
	ha, _ := a.Resolve("")
	hb, _ := b.Resolve("")
	if ha != hb {
		t.Errorf("heads differ after push: %s %s", ha, hb)
	}
	// Conflicting edits: pull refuses and changes nothing.
	put(t, a, "x/1", "a's edit")
	put(t, b, "x/1", "b's edit")
	if _, err := b.Pull(ctx, Remote{URL: a.Path()}, SyncOptions{}); !errors.Is(err, ErrConflict) {
		t.Errorf("Pull = %v, want a conflict", err)
	}
	if got, _ := b.Read("", "x/1"); string(got) != "b's edit" {
		t.Errorf("conflicting pull changed x/1 to %q", got)
	}
	// The fetched head is kept for inspection.
	if h, err := b.Resolve("origin/main"); err != nil || h.IsZero() {
		t.Errorf("origin/main = %s, %v", h, err)
	}
	fsckOpen(t, a)
	fsckOpen(t, b)
}

// gitServer serves s over HTTP with users alice (write), reader (read) and
// nobody (no git access).
func gitServer(t *testing.T, s *Store) *httptest.Server {
	t.Helper()
	ctx := context.Background()
	for _, u := range []struct {
		name string
		git  GitAccess
	}{{"alice", GitWrite}, {"reader", GitRead}, {"nobody", GitNone}} {
		if err := s.AddUser(ctx, u.name, u.name+"-password", u.git); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(s.GitHandler(nil))
	t.Cleanup(srv.Close)
	return srv
}

func userURL(srv *httptest.Server, user string) string {
	u, _ := url.Parse(srv.URL)
	u.User = url.UserPassword(user, user+"-password")
	u.Path = "/store.git"
	return u.String()
}

// gitFail runs git and expects it to fail with a message containing want.
func gitFail(t *testing.T, dir, want string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("git %s: err %v, output:\n%s\nwant a failure saying %q", strings.Join(args, " "), err, out, want)
	}
}

func TestGitSmartHTTP(t *testing.T) {
	s := newStore(t)
	for i := 0; i < 20; i++ {
		put(t, s, "items/"+Shard(fmt.Sprint(i)), fmt.Sprint("item ", i))
	}
	srv := gitServer(t, s)
	work := t.TempDir()
	clone := filepath.Join(work, "clone")
	runGit(t, work, "clone", "--quiet", userURL(srv, "reader"), clone)
	es, _ := s.List("", "")
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(clone, filepath.FromSlash(e.Path)))
		want, _ := s.Read("", e.Path)
		if err != nil || string(b) != string(want) {
			t.Errorf("clone: %s = %q, %v; want %q", e.Path, b, err, want)
		}
	}
	if got := strings.TrimSpace(runGit(t, clone, "rev-list", "--count", "HEAD")); got != "23" {
		t.Errorf("clone has %s commits, want 24", got)
	}

	// An incremental fetch after more commits.
	put(t, s, "items/late", "late")
	runGit(t, clone, "pull", "--quiet", "--ff-only")
	if b, _ := os.ReadFile(filepath.Join(clone, "items/late")); string(b) != "late" {
		t.Errorf("after pull: items/late = %q", b)
	}

	// Pushing needs write access.
	runGit(t, clone, "-c", "user.name=Carol", "-c", "user.email=carol@example.org", "commit", "--quiet", "--allow-empty", "-m", "from stock git")
	os.WriteFile(filepath.Join(clone, "pushed.txt"), []byte("pushed by git\n"), 0o644)
	runGit(t, clone, "add", "pushed.txt")
	runGit(t, clone, "-c", "user.name=Carol", "-c", "user.email=carol@example.org", "commit", "--quiet", "-m", "add pushed.txt")
	gitFail(t, clone, "may not push", "push", userURL(srv, "reader"), "main")
	runGit(t, clone, "push", "--quiet", userURL(srv, "alice"), "main")
	if b, err := s.Read("", "pushed.txt"); err != nil || string(b) != "pushed by git\n" {
		t.Errorf("after push: pushed.txt = %q, %v", b, err)
	}
	// A thin pack (git push sends a changed file as a delta against the
	// version the store has) is resolved against the store.
	big := strings.Repeat("a line of a larger file, the same in both versions\n", 200)
	for i, content := range []string{big + "first\n", big + "second\n"} {
		os.WriteFile(filepath.Join(clone, "big.txt"), []byte(content), 0o644)
		runGit(t, clone, "add", "big.txt")
		runGit(t, clone, "-c", "user.name=Carol", "-c", "user.email=carol@example.org", "commit", "--quiet", "-m", fmt.Sprint("big ", i))
		runGit(t, clone, "push", "--quiet", userURL(srv, "alice"), "main")
		if b, err := s.Read("", "big.txt"); err != nil || string(b) != content {
			t.Fatalf("after push %d: big.txt = %d bytes, %v", i, len(b), err)
		}
	}
	runGit(t, clone, "reset", "--quiet", "--hard", "HEAD~2")
	// History cannot be rewritten.
	runGit(t, clone, "reset", "--quiet", "--hard", "HEAD~2")
	runGit(t, clone, "-c", "user.name=Carol", "-c", "user.email=carol@example.org", "commit", "--quiet", "--allow-empty", "-m", "rewrite")
	gitFail(t, clone, "non-fast-forward", "push", "--force", userURL(srv, "alice"), "main")
	gitFail(t, clone, "cannot be deleted", "push", userURL(srv, "alice"), ":main")
	// Authentication is required, and a user without git access is refused.
	gitFail(t, work, "could not read Username", "ls-remote", srv.URL+"/store.git")
	gitFail(t, work, "Authentication failed", "ls-remote", strings.Replace(userURL(srv, "alice"), "alice-password", "wrong", 1))
	gitFail(t, work, "403", "ls-remote", userURL(srv, "nobody"))
	fsckOpen(t, s)

	// Dumb HTTP and stray paths are refused.
	for _, p := range []string{"/store.git/info/refs", "/store.git/HEAD", "/store.git/objects/info/packs"} {
		req, _ := http.NewRequest("GET", srv.URL+p, nil)
		req.SetBasicAuth("alice", "alice-password")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("GET %s = 200", p)
		}
	}
}

func TestPullPushOverHTTP(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "x/1", "one")
	rem, b := cloneOverHTTP(t, a)
	if got, _ := b.Read("", "x/1"); string(got) != "one" {
		t.Fatalf("clone over HTTP: x/1 = %q", got)
	}
	put(t, a, "x/2", "two")
	put(t, b, "y/1", "b's")
	if err := b.Push(ctx, rem, SyncOptions{}); !errors.Is(err, ErrNotFastForward) {
		t.Errorf("push of a diverged branch = %v, want ErrNotFastForward", err)
	}
	if _, err := b.Pull(ctx, rem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx, rem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := contents(t, a, "main"), contents(t, b, "main"); got != want || !strings.Contains(got, "y/1=b's") {
		t.Errorf("after push: a = %s, b = %s", got, want)
	}
	bad := rem
	bad.Password = "s3cret-but-wrong"
	if _, err := b.Pull(ctx, bad, SyncOptions{}); err == nil || strings.Contains(err.Error(), bad.Password) {
		t.Errorf("pull with a wrong password = %v (and must not show the password)", err)
	}
	fsckOpen(t, a)
	fsckOpen(t, b)
}

// TestRemoteDial: with Remote.Dial, fetches and pushes over HTTP open
// their connections with it (a remote named by a host that the system
// cannot resolve is reached through it), and a remote without Dial in
// the same process still dials on its own.
func TestRemoteDial(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	put(t, a, "x/1", "one")
	srv := gitServer(t, a)
	var dials atomic.Int32
	rem := Remote{URL: "http://replica-a.invalid:8080/store.git", Username: "alice", Password: "alice-password",
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if address != "replica-a.invalid:8080" {
				return nil, fmt.Errorf("dial %s: want replica-a.invalid:8080", address)
			}
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
		}}
	b := newStore(t)
	if _, err := b.Pull(ctx, rem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	put(t, b, "y/1", "b's")
	if err := b.Push(ctx, rem, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, a, "main"); !strings.Contains(got, "y/1=b's") || dials.Load() == 0 {
		t.Fatalf("through Dial (%d dials): a = %s", dials.Load(), got)
	}
	n := dials.Load()
	direct := Remote{URL: srv.URL + "/store.git", Username: "alice", Password: "alice-password"}
	put(t, a, "x/2", "two")
	if _, err := b.Pull(ctx, direct, SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if dials.Load() != n {
		t.Errorf("a remote without Dial used another remote's Dial")
	}
	noHost := rem
	noHost.URL, noHost.Dial = "http://replica-b.invalid:8080/store.git", nil
	if _, err := b.Pull(ctx, noHost, SyncOptions{}); err == nil {
		t.Errorf("replica-b.invalid reached without Dial")
	}
}

// TestPushSkipIfAt: a push with SkipIfAt sends nothing, not even the ref
// update, when the remote's branch of that name is at the head already
// (over HTTP and by path); otherwise it pushes as ever.
func TestPushSkipIfAt(t *testing.T) {
	ctx := context.Background()
	forPushRemotes(t, func(_ int, a, b *Store, rem Remote) {
		opts := SyncOptions{RemoteBranch: "mirror", SkipIfAt: DefaultBranch}
		if err := b.Push(ctx, rem, opts); err != nil {
			t.Fatal(err)
		}
		if h, err := a.Resolve("mirror"); err == nil && !h.IsZero() {
			t.Errorf("%s: the push with the remote's main at the head made branch mirror (%s)", rem.URL, h)
		}
		put(t, b, "y/1", "b's")
		if err := b.Push(ctx, rem, opts); err != nil {
			t.Fatal(err)
		}
		hb, _ := b.Resolve("")
		if h, err := a.Resolve("mirror"); err != nil || h != hb {
			t.Errorf("%s: mirror = %s, %v; want b's head %s", rem.URL, h, err, hb)
		}
		if err := a.DeleteBranch(ctx, "mirror"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPushSkipIfHeld: a push with SkipIfHeld sends nothing, not even the
// ref update, when one of the remote's branches reaches the head (the
// remote moved on past it: a replica's peer that pushed a later head, or
// took this one from a third node); otherwise it pushes as ever (over
// HTTP and by path).
func TestPushSkipIfHeld(t *testing.T) {
	ctx := context.Background()
	forPushRemotes(t, func(i int, a, b *Store, rem Remote) {
		// a moves on, and b learns of it without moving its main: b's
		// head is behind a's main, not at it (SkipIfAt alone would
		// push).
		put(t, a, fmt.Sprintf("x/%d", i+2), "a's")
		if _, err := b.Fetch(ctx, rem, DefaultBranch); err != nil {
			t.Fatal(err)
		}
		opts := SyncOptions{RemoteBranch: "mirror", SkipIfAt: DefaultBranch, SkipIfHeld: true}
		if err := b.Push(ctx, rem, opts); err != nil {
			t.Fatal(err)
		}
		if h, err := a.Resolve("mirror"); err == nil && !h.IsZero() {
			t.Errorf("%s: the push of a head that a's main reaches made branch mirror (%s)", rem.URL, h)
		}
		// Without SkipIfHeld the same push moves the branch.
		if err := b.Push(ctx, rem, SyncOptions{RemoteBranch: "mirror", SkipIfAt: DefaultBranch}); err != nil {
			t.Fatal(err)
		}
		hb, _ := b.Resolve("")
		if h, err := a.Resolve("mirror"); err != nil || h != hb {
			t.Errorf("%s: without SkipIfHeld, mirror = %s, %v; want b's head %s", rem.URL, h, err, hb)
		}
		// A head the remote lacks is pushed.
		put(t, b, fmt.Sprintf("y/%d", i), "b's")
		if err := b.Push(ctx, rem, opts); err != nil {
			t.Fatal(err)
		}
		hb, _ = b.Resolve("")
		if h, err := a.Resolve("mirror"); err != nil || h != hb {
			t.Errorf("%s: mirror = %s, %v; want b's new head %s", rem.URL, h, err, hb)
		}
		if err := a.DeleteBranch(ctx, "mirror"); err != nil {
			t.Fatal(err)
		}
	})
}

// SkipIfNewer: a push is skipped when the remote's branch of that name is
// at a commit this store lacks (another writer reached the remote after
// it last pushed here), and goes out when the store has that commit, or
// the branch is not there. SkipIfHas: skipped when a remote branch
// reaches the commit named.
func TestPushSkipIfNewerOrHas(t *testing.T) {
	ctx := context.Background()
	forPushRemotes(t, func(i int, a, b *Store, rem Remote) {
		put(t, b, fmt.Sprintf("y/%d", i), "b's")
		hb, _ := b.Resolve("")
		opts := SyncOptions{RemoteBranch: "relayed", SkipIfNewer: "from-c"}
		// No branch from-c on a: pushed.
		if err := b.Push(ctx, rem, opts); err != nil {
			t.Fatal(err)
		}
		if h, err := a.Resolve("relayed"); err != nil || h != hb {
			t.Fatalf("%s: without from-c on the remote, relayed = %s, %v; want %s", rem.URL, h, err, hb)
		}
		// from-c at a commit b has: pushed.
		if _, err := a.CreateBranch(ctx, "from-c", DefaultBranch); err != nil {
			t.Fatal(err)
		}
		put(t, b, fmt.Sprintf("y/%d", i+10), "b's again")
		hb, _ = b.Resolve("")
		if err := b.Push(ctx, rem, opts); err != nil {
			t.Fatal(err)
		}
		if h, _ := a.Resolve("relayed"); h != hb {
			t.Fatalf("%s: with from-c at a commit b has, relayed = %s; want %s", rem.URL, h, hb)
		}
		// from-c at a commit b lacks: skipped.
		put(t, a, fmt.Sprintf("z/%d", i), "c's, through a")
		if err := a.DeleteBranch(ctx, "from-c"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.CreateBranch(ctx, "from-c", DefaultBranch); err != nil {
			t.Fatal(err)
		}
		put(t, b, fmt.Sprintf("y/%d", i+20), "b's once more")
		if err := b.Push(ctx, rem, opts); err != nil {
			t.Fatal(err)
		}
		if h, _ := a.Resolve("relayed"); h != hb {
			t.Errorf("%s: with from-c at a commit b lacks, relayed moved to %s; want it left at %s", rem.URL, h, hb)
		}
		// SkipIfHas: pushed when no branch of a's reaches the commit
		// named, skipped when one does.
		old, _ := b.Resolve("") // pushed nowhere yet (skipped above)
		opts = SyncOptions{RemoteBranch: "relayed", SkipIfHas: []Hash{old}}
		if err := b.Push(ctx, rem, opts); err != nil {
			t.Fatal(err)
		}
		if h, _ := a.Resolve("relayed"); h != old {
			t.Fatalf("%s: with SkipIfHas naming a commit a lacks, relayed = %s; want b's head %s", rem.URL, h, old)
		}
		put(t, b, fmt.Sprintf("y/%d", i+30), "b's last")
		if err := b.Push(ctx, rem, opts); err != nil {
			t.Fatal(err)
		}
		if h, _ := a.Resolve("relayed"); h != old {
			t.Errorf("%s: with SkipIfHas naming a commit that a's relayed reaches, relayed moved to %s; want it left at %s", rem.URL, h, old)
		}
		for _, br := range []string{"relayed", "from-c"} {
			if err := a.DeleteBranch(ctx, br); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// forPushRemotes runs f twice, over HTTP and by path: a is a store with one
// commit (served over HTTP), b a clone of it through rem.
func forPushRemotes(t *testing.T, f func(i int, a, b *Store, rem Remote)) {
	t.Helper()
	a := newStore(t)
	put(t, a, "x/1", "one")
	srv := gitServer(t, a)
	for i, rem := range []Remote{{URL: srv.URL + "/store.git", Username: "alice", Password: "alice-password"}, {URL: a.Path()}} {
		b, err := Clone(context.Background(), rem, filepath.Join(t.TempDir(), "b.git"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		f(i, a, b, rem)
	}
}
