package store

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// untarLegacy unpacks testdata/legacy-store.tar.gz (a store written by the
// version before secrets left the history; see make-legacy-store.sh) into
// a new data directory.
func untarLegacy(t *testing.T) string {
	t.Helper()
	f, err := os.Open("testdata/legacy-store.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return data
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(data, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o700)
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Dir(p), 0o700)
			if err := os.WriteFile(p, b, os.FileMode(h.Mode)&0o777); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// commitMeta lists, per commit of every branch, everything but hashes:
// author, committer, dates and message.
func commitMeta(t *testing.T, repo string) string {
	return runGit(t, repo, "log", "--branches", "--topo-order", "--format=%an <%ae> %ad | %cn <%ce> %cd | %B%x00")
}

func TestUpgradeMovesSecretsOutOfHistory(t *testing.T) {
	data := untarLegacy(t)
	repo := filepath.Join(data, RepoDir)
	before := runGit(t, repo, "log", "-p", "--all")
	for _, secret := range []string{"$argon2id$", "PRIVATE KEY"} {
		if !strings.Contains(before, secret) {
			t.Fatalf("the legacy store's history lacks %q: the fixture is not what this test needs", secret)
		}
	}
	oldKey := runGit(t, repo, "show", "main:tls/key.pem")
	oldCard := runGit(t, repo, "show", "main:contacts/alice/c/work/o/"+Shard("card-1.vcf"))
	// A remote-tracking branch (as Pull leaves) reaches the secrets too.
	runGit(t, repo, "update-ref", "refs/remotes/peer/main", "main~1")
	metaBefore := commitMeta(t, repo)
	countBefore := runGit(t, repo, "rev-list", "--count", "--branches")

	var logs bytes.Buffer
	s, err := OpenData(data, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "moved secrets out of the history") {
		t.Errorf("no log line says what the upgrade did:\n%s", logs.String())
	}
	fsckOpen(t, s)

	after := runGit(t, repo, "log", "-p", "--exclude=refs/nymote/*", "--all")
	for _, secret := range []string{"$argon2id$", "PRIVATE KEY", "tls/"} {
		if strings.Contains(after, secret) {
			t.Errorf("the history still shows %q after the upgrade", secret)
		}
	}
	if got := commitMeta(t, repo); got != metaBefore {
		t.Errorf("commits changed beyond their trees:\nbefore:\n%s\nafter:\n%s", metaBefore, got)
	}
	if got := runGit(t, repo, "rev-list", "--count", "--branches"); got != countBefore {
		t.Errorf("%s commits after, %s before", got, countBefore)
	}
	if !strings.Contains(after, "user passwd alice") || !strings.Contains(after, `"password"`) {
		t.Error("the history no longer shows that alice changed her password")
	}
	// Nothing on disk holds the old key or alice's first hash any more.
	objects := runGit(t, repo, "cat-file", "--batch-all-objects", "--batch")
	if strings.Contains(objects, "PRIVATE KEY") {
		t.Error("an object still holds the TLS key")
	}
	if n := strings.Count(objects, "$argon2id$"); n != 2 {
		t.Errorf("%d objects hold password hashes, want 2 (alice's and bob's current ones)", n)
	}
	// The key moved to the node folder, readable by its owner only.
	key, err := s.ReadNodeFile("tls/key.pem")
	if err != nil || string(key) != oldKey {
		t.Errorf("node file tls/key.pem = %q, %v; want the key from the store", key, err)
	}
	if fi, err := os.Stat(filepath.Join(data, "node", "tls", "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node key: %v, %v; want mode 0600", fi, err)
	}
	if got, _ := s.Read("", "contacts/alice/c/work/o/"+Shard("card-1.vcf")); string(got) != oldCard {
		t.Errorf("the contact changed: %q", got)
	}
	for _, tc := range []struct {
		user, pw string
		want     error
	}{
		{"alice", "alice-password-2", nil},
		{"alice", "alice-password-1", ErrAuthFailed},
		{"bob", "bob-password-12", nil},
	} {
		if _, err := s.Authenticate(tc.user, tc.pw); !errors.Is(err, tc.want) {
			t.Errorf("Authenticate(%s, %s) = %v, want %v", tc.user, tc.pw, err, tc.want)
		}
	}
	heads, _ := s.Branches()
	s.Close()

	// Done once: opening again changes nothing; with the record lost (a
	// crash before it was written), the upgrade finds nothing to rewrite.
	for _, lose := range []bool{false, true} {
		if lose {
			os.Remove(filepath.Join(repo, upgradesName))
		}
		logs.Reset()
		s, err = OpenData(data, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		again, _ := s.Branches()
		s.Close()
		if len(again) != len(heads) || again[0] != heads[0] || again[1] != heads[1] {
			t.Errorf("reopening moved the branches: %v, then %v", heads, again)
		}
		if strings.Contains(logs.String(), "rewritten") {
			t.Errorf("reopening rewrote again:\n%s", logs.String())
		}
	}
}

// A clone over smart HTTP gets the branches, no secret, and cannot ask
// for the credentials by hash.
func TestCloneHasNoSecrets(t *testing.T) {
	data := untarLegacy(t)
	s, err := OpenData(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.SetPassword(ctx, "alice", "alice-password"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.GitHandler(nil))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	u.User = url.UserPassword("alice", "alice-password")
	work := t.TempDir()
	clone := filepath.Join(work, "clone")
	runGit(t, work, "clone", "--quiet", "--mirror", u.String(), clone)
	all := runGit(t, clone, "log", "-p", "--all")
	for _, secret := range []string{"$argon2id$", "PRIVATE KEY"} {
		if strings.Contains(all, secret) {
			t.Errorf("the clone's history shows %q", secret)
		}
	}
	if refs := runGit(t, work, "ls-remote", u.String()); strings.Contains(refs, "refs/nymote") {
		t.Errorf("the credentials are advertised:\n%s", refs)
	}
	if objs := runGit(t, clone, "cat-file", "--batch-all-objects", "--batch"); strings.Contains(objs, "$argon2id$") {
		t.Error("the clone holds a password hash")
	}
	creds, err := s.Resolve(CredentialsRef)
	if err != nil {
		t.Fatal(err)
	}
	// Stock git asks only for advertised tips; a client that asks for
	// the credentials' commit by hash is refused.
	body := pktLine("want "+creds.String()+" ofs-delta\n") + "0000" + pktLine("done\n")
	resp, err := srv.Client().Post(u.String()+"/git-upload-pack", "application/x-git-upload-pack-request", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "ERR want "+creds.String()+": not on any branch") || strings.Contains(string(b), "PACK") {
		t.Errorf("upload-pack of the credentials' commit answered %q", b)
	}
	runGit(t, clone, "fsck", "--strict")

	// A store cloned with go-git has the users, without passwords.
	c, err := Clone(ctx, Remote{URL: srv.URL, Username: "alice", Password: "alice-password"}, filepath.Join(t.TempDir(), "c.git"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if users, err := c.Users(); err != nil || len(users) != 2 {
		t.Errorf("the clone's users: %v, %v", users, err)
	}
	if _, err := c.Authenticate("alice", "alice-password"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("a clone authenticates alice: %v", err)
	}
	if h, _ := c.Resolve(CredentialsRef); !h.IsZero() {
		t.Errorf("the clone has credentials %s", h)
	}
}

func pktLine(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }

func TestNodeFiles(t *testing.T) {
	s := newStore(t)
	if _, err := s.ReadNodeFile("tls/key.pem"); !errors.Is(err, ErrNotExist) {
		t.Errorf("a missing node file: %v, want ErrNotExist", err)
	}
	if err := s.WriteNodeFile("../escape", []byte("x")); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("WriteNodeFile(../escape) = %v, want ErrInvalidPath", err)
	}
	for _, content := range []string{"one", "two"} {
		if err := s.WriteNodeFile("tls/key.pem", []byte(content)); err != nil {
			t.Fatal(err)
		}
		if b, err := s.ReadNodeFile("tls/key.pem"); err != nil || string(b) != content {
			t.Errorf("ReadNodeFile = %q, %v; want %q", b, err, content)
		}
	}
	fi, err := os.Stat(filepath.Join(s.NodeDir(), "tls", "key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node file mode: %v, %v", fi, err)
	}
	if di, err := os.Stat(filepath.Join(s.NodeDir(), "tls")); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("node folder mode: %v, %v", di, err)
	}
	if strings.HasPrefix(s.NodeDir(), s.Path()) {
		t.Errorf("node folder %s is inside the repository %s", s.NodeDir(), s.Path())
	}
}

// The upgrade stopped after any of its durable steps, as by a crash,
// leaves a store that the next Open upgrades to the same branches as an
// upgrade that ran through.
func TestUpgradeSurvivesACrash(t *testing.T) {
	clean := untarLegacy(t)
	s, err := OpenData(clean, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := s.Branches()
	s.Close()
	for _, step := range []string{"rewritten", "moved refs/heads/main", "moved refs/heads/side", "pruned"} {
		t.Run(step, func(t *testing.T) {
			data := untarLegacy(t)
			repo := filepath.Join(data, RepoDir)
			old := runGit(t, repo, "show-ref", "--heads")
			upgradeStep = func(s string) error {
				if s == step {
					return errors.New("crash at " + s)
				}
				return nil
			}
			_, err := OpenData(data, Options{})
			upgradeStep = func(string) error { return nil }
			if err == nil || !strings.Contains(err.Error(), "crash at "+step) {
				t.Fatalf("Open with a crash at %s: %v", step, err)
			}
			if step == "rewritten" {
				if got := runGit(t, repo, "show-ref", "--heads"); got != old {
					t.Errorf("the branches moved before the commit point:\n%s\nwant\n%s", got, old)
				}
			}
			s, err := OpenData(data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, _ := s.Branches()
			if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("branches %v, want %v (as an upgrade without a crash)", got, want)
			}
			fsckOpen(t, s)
			if log := runGit(t, repo, "log", "-p", "--branches"); strings.Contains(log, "$argon2id$") || strings.Contains(log, "PRIVATE KEY") {
				t.Error("secrets are still in the history")
			}
			objects := runGit(t, repo, "cat-file", "--batch-all-objects", "--batch")
			if strings.Contains(objects, "PRIVATE KEY") || strings.Count(objects, "$argon2id$") != 2 {
				t.Error("old secrets are still on disk")
			}
			if _, err := s.Authenticate("alice", "alice-password-2"); err != nil {
				t.Errorf("alice cannot log in: %v", err)
			}
		})
	}
}

// Passwords are found when git has packed the credentials' reference
// (git pack-refs, as git gc does), and a password change is seen at once,
// whatever was cached.
func TestCredentialsRef(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.AddUser(ctx, "alice", "alice-password", GitNone); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", "alice-password"); err != nil {
		t.Fatal(err)
	}
	first, _ := s.Resolve(CredentialsRef)
	if err := s.SetPassword(ctx, "alice", "other-password"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pw   string
		want error
	}{{"alice-password", ErrAuthFailed}, {"other-password", nil}} {
		if _, err := s.Authenticate("alice", tc.pw); !errors.Is(err, tc.want) {
			t.Errorf("Authenticate(alice, %s) = %v, want %v", tc.pw, err, tc.want)
		}
	}
	// Each change is a new commit without parents: the old hash is
	// unreachable.
	if got := strings.TrimSpace(runGit(t, s.Path(), "rev-list", "--count", CredentialsRef)); got != "1" {
		t.Errorf("%s reaches %s commits, want 1", CredentialsRef, got)
	}
	if s.Flush(); strings.Contains(runGit(t, s.Path(), "rev-list", "--objects", "--all"), first.String()) {
		t.Error("the old credentials are still reachable")
	}
	runGit(t, s.Path(), "pack-refs", "--all")
	if _, err := os.Stat(filepath.Join(s.Path(), filepath.FromSlash(CredentialsRef))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("git pack-refs left the reference loose: %v", err)
	}
	s.authc.forget("alice")
	if _, err := s.Authenticate("alice", "other-password"); err != nil {
		t.Errorf("with the reference packed: %v", err)
	}
	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Read(CredentialsRef, "users/alice"); !errors.Is(err, ErrNotExist) {
		t.Errorf("a deleted user's hash is kept: %q, %v", b, err)
	}
}
