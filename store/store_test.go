package store

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestUpdateReadList(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	h1, err := s.Update(ctx, CommitOptions{Message: "first", Author: Signature{Name: "Alice", Email: "alice@example.org"}}, func(tx *Tx) error {
		for _, p := range []string{"a/b/c", "a/b/d", "a/e", "f", "empty"} {
			data := "data of " + p
			if p == "empty" {
				data = ""
			}
			if err := tx.Put(p, []byte(data)); err != nil {
				return err
			}
		}
		got, err := tx.Get("a/e")
		if err != nil || string(got) != "data of a/e" {
			t.Errorf("tx.Get(a/e) = %q, %v; want read-your-writes", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{{"a/b/c", "data of a/b/c"}, {"f", "data of f"}, {"empty", ""}} {
		got, err := s.Read("", tc.path)
		if err != nil || string(got) != tc.want {
			t.Errorf("Read(%s) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
	if _, err := s.Read("", "a/b"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Read(folder) error = %v, want ErrNotExist", err)
	}
	if _, err := s.Read("", "nope"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Read(missing) error = %v, want ErrNotExist", err)
	}
	list, err := s.List("", "a")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range list {
		paths = append(paths, e.Path)
	}
	if got, want := strings.Join(paths, ","), "a/b/c,a/b/d,a/e"; got != want {
		t.Errorf("List(a) = %s, want %s", got, want)
	}
	sn, _ := s.Snapshot("")
	dir, _ := sn.ReadDir("a")
	if len(dir) != 2 || !dir[0].Dir || dir[0].Path != "a/b" || dir[1].Path != "a/e" {
		t.Errorf("ReadDir(a) = %+v", dir)
	}

	// Deleting the last item of a folder removes the folder.
	h2, err := s.Update(ctx, CommitOptions{Message: "second"}, func(tx *Tx) error {
		tx.Delete("a/b/c")
		tx.Delete("a/b/d")
		return tx.Delete("never-existed")
	})
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h1 {
		t.Fatal("delete made no commit")
	}
	if dir, _ := s.List("", "a/b"); len(dir) != 0 {
		t.Errorf("a/b still lists %v", dir)
	}
	// The old revision still has it.
	if got, err := s.Read(h1.String(), "a/b/c"); err != nil || string(got) != "data of a/b/c" {
		t.Errorf("Read(h1, a/b/c) = %q, %v", got, err)
	}
	// A transaction that changes nothing makes no commit.
	h3, err := s.Update(ctx, CommitOptions{}, func(tx *Tx) error { return tx.Put("f", []byte("data of f")) })
	if err != nil || h3 != h2 {
		t.Errorf("no-op Update = %s, %v; want %s (no new commit)", h3, err, h2)
	}
	// A failing transaction writes nothing.
	boom := errors.New("boom")
	if _, err := s.Update(ctx, CommitOptions{}, func(tx *Tx) error { tx.Put("g", []byte("x")); return boom }); !errors.Is(err, boom) {
		t.Errorf("Update error = %v, want boom", err)
	}
	if ok, _ := sn.s.mustSnap(t).Exists("g"); ok {
		t.Error("failed transaction left g behind")
	}
	fsckOpen(t, s)
	s.Flush()
	log := runGit(t, s.Path(), "log", "--format=%an <%ae> %s", "main")
	if !strings.Contains(log, "Alice <alice@example.org> first") || strings.Count(log, "\n") != 2 {
		t.Errorf("git log:\n%s", log)
	}
}

func (s *Store) mustSnap(t *testing.T) *Snapshot {
	sn, err := s.Snapshot("")
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

func TestInvalidPaths(t *testing.T) {
	s := newStore(t)
	for _, tc := range []struct{ name, path, why string }{
		{"empty", "", "empty"},
		{"absolute", "/etc/passwd", "absolute"},
		{"dotdot", "a/../b", `segment 2 is ".."`},
		{"dot", "./a", `segment 1 is "."`},
		{"empty segment", "a//b", "segment 2 is empty"},
		{"trailing slash", "a/", "ends with /"},
		{"nul", "a\x00b", "NUL"},
		{"dotgit", "x/.GIT/config", "git refuses"},
		{"bad utf8", "a\xffb", "UTF-8"},
		{"long segment", strings.Repeat("x", 256), "longer than 255"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error { return tx.Put(tc.path, []byte("x")) })
			if !errors.Is(err, ErrInvalidPath) || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("Put(%q) error = %v, want ErrInvalidPath saying %q", tc.path, err, tc.why)
			}
			if _, err := s.Read("", tc.path); !errors.Is(err, ErrInvalidPath) {
				t.Errorf("Read(%q) error = %v, want ErrInvalidPath", tc.path, err)
			}
		})
	}
	// Items and folders cannot take each other's place.
	put(t, s, "a/b", "x")
	for _, tc := range []struct{ path, why string }{{"a", "is a folder"}, {"a/b/c", "is an item"}} {
		_, err := s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error { return tx.Put(tc.path, []byte("y")) })
		if !errors.Is(err, ErrInvalidPath) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Put(%s) error = %v, want %q", tc.path, err, tc.why)
		}
	}
	// ...unless the transaction removes the other first.
	_, err := s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error {
		tx.Delete("a/b")
		return tx.Put("a", []byte("now an item"))
	})
	if err != nil {
		t.Fatalf("replace folder by item: %v", err)
	}
	fsckOpen(t, s)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing"), Options{}); !errors.Is(err, ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
	os.WriteFile(filepath.Join(dir, "junk"), []byte("x"), 0o600)
	if _, err := Init(dir, Options{}); !errors.Is(err, ErrExists) {
		t.Errorf("Init(non-empty) = %v, want ErrExists", err)
	}
	s := newStore(t)
	put(t, s, "x", "1")
	path := s.Path()
	if _, err := Init(path, Options{}); !errors.Is(err, ErrExists) {
		t.Errorf("Init(existing repo) = %v, want ErrExists", err)
	}
	s.Close()

	// Corruptions are reported, never repaired by reinitialising.
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"objects removed", func(t *testing.T, path string) {
			packs, _ := filepath.Glob(filepath.Join(path, "objects/pack/*"))
			for _, p := range packs {
				os.Remove(p)
			}
		}},
		{"HEAD removed", func(t *testing.T, path string) { os.Remove(filepath.Join(path, "HEAD")) }},
		{"branch garbage", func(t *testing.T, path string) {
			os.WriteFile(filepath.Join(path, "refs/heads/main"), []byte("0123456789012345678901234567890123456789\n"), 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := filepath.Join(t.TempDir(), "copy.git")
			runGit(t, ".", "clone", "--quiet", "--bare", "--no-local", path, cp)
			tc.damage(t, cp)
			before, _ := os.ReadDir(cp)
			_, err := Open(cp, Options{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open(damaged) = %v, want ErrCorrupt", err)
			}
			after, _ := os.ReadDir(cp)
			if len(after) != len(before) {
				t.Errorf("Open changed the damaged repository: %d entries before, %d after", len(before), len(after))
			}
		})
	}
}

func TestShard(t *testing.T) {
	p := Shard("message-1")
	if err := ValidatePath(p); err != nil {
		t.Fatal(err)
	}
	if strings.Count(p, "/") != 2 || Unshard(p) != "message-1" {
		t.Errorf("Shard = %q", p)
	}
	if Shard("message-1") != p {
		t.Error("Shard is not deterministic")
	}
}

// TestBlobHash: BlobHash is the id git gives the same content (git
// hash-object), and the hash the store records for a file so written.
func TestBlobHash(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"},
		{"hello\n", "ce013625030ba8dba906f756967f9e9ca394464a"},
	} {
		if got := BlobHash([]byte(tc.data)).String(); got != tc.want {
			t.Errorf("BlobHash(%q) = %s, want %s", tc.data, got, tc.want)
		}
	}
}

// TestUnderMemoryLimit: caches keep their full size without a memory
// limit and shrink with one, never below their floor.
func TestUnderMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(math.MaxInt64)
	defer debug.SetMemoryLimit(old)
	if got := underMemoryLimit(1<<16, 4096, 2048); got != 1<<16 {
		t.Errorf("no limit: %d entries, want %d", got, 1<<16)
	}
	debug.SetMemoryLimit(25 << 20)
	if got := underMemoryLimit(1<<16, 4096, 2048); got != 12800 {
		t.Errorf("25 MiB: %d entries, want 12800", got)
	}
	debug.SetMemoryLimit(4 << 20)
	if got := underMemoryLimit(1<<16, 4096, 2048); got != 4096 {
		t.Errorf("4 MiB: %d entries, want the floor 4096", got)
	}
}
