package store

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// newStore makes an empty store in a temporary folder.
func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Init(filepath.Join(t.TempDir(), "repo.git"), Options{})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// put commits one item.
func put(t testing.TB, s *Store, path, data string) Hash {
	t.Helper()
	h, err := s.Update(context.Background(), CommitOptions{Message: "put " + path}, func(tx *Tx) error {
		return tx.Put(path, []byte(data))
	})
	if err != nil {
		t.Fatalf("put %s: %v", path, err)
	}
	return h
}

// runGit runs stock git and returns its output.
func runGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed (make test-deps installs it)")
	}
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fsckOpen runs git fsck --strict on an open store's repository, once the
// commits it returned are written into the repository's files (Flush):
// stock git reads those files while the store's background writer may
// still be adding to them.
func fsckOpen(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	// The writer may start a pack merge after the flush, which deletes
	// the packs it merged: git fsck must not list a pack that goes away
	// before it reads it ("packfile index not opened", seen under load).
	// Packs are only removed under packsMu.
	s.packsMu.Lock()
	defer s.packsMu.Unlock()
	fsck(t, s.Path())
}

// fsck runs git fsck --strict on the store's repository.
func fsck(t testing.TB, path string) {
	t.Helper()
	runGit(t, path, "fsck", "--strict", "--no-dangling")
}
