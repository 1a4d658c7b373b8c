package store

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A push is checked as the apps check their clients' writes: an invalid
// path, a symbolic link, an item a validator refuses or a user record
// with a hash is refused with the path and the reason, and the branch stays
// where it was.
func TestPushValidation(t *testing.T) {
	s := newStore(t)
	put(t, s, "notes/"+Shard("a"), "note a")
	s.SetValidateFunc("notes/", func(p string, data []byte, _ func(string) ([]byte, error)) error {
		if !strings.HasPrefix(string(data), "note ") {
			return errors.New("a note starts with \"note \"")
		}
		return nil
	})
	srv := gitServer(t, s)
	work := t.TempDir()
	clone := filepath.Join(work, "clone")
	runGit(t, work, "clone", "--quiet", userURL(srv, "alice"), clone)
	runGit(t, clone, "config", "user.name", "Alice")
	runGit(t, clone, "config", "user.email", "alice@example.org")
	base := strings.TrimSpace(runGit(t, clone, "rev-parse", "HEAD"))

	// commitTree makes a commit on base whose tree adds one entry (mode,
	// name, content) to the root, with git's plumbing, so that names a
	// checkout could not hold are possible.
	commitTree := func(mode, name, content string) string {
		t.Helper()
		blob := gitIn(t, clone, content, "hash-object", "-w", "--stdin")
		ls := runGit(t, clone, "ls-tree", "HEAD")
		tree := gitIn(t, clone, ls+mode+" blob "+blob+"\t"+name+"\n", "mktree", "--missing")
		return strings.TrimSpace(runGit(t, clone, "commit-tree", tree, "-p", base, "-m", "bad push"))
	}
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		name, mode, path, content, want string
	}{
		{"segment too long", "100644", long, "data", "longer than 255 bytes"},
		{"symbolic link", "120000", "link", "/etc/passwd", "symbolic link"},
		{"refused by the app's validator", "100644", "notes", "", ""},
		{"user record with a hash", "100644", "users", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c string
			switch tc.name {
			case "refused by the app's validator":
				runGit(t, clone, "reset", "--quiet", "--hard", base)
				p := filepath.Join(clone, "notes", "xx")
				os.MkdirAll(p, 0o755)
				os.WriteFile(filepath.Join(p, "b"), []byte("not a note"), 0o644)
				runGit(t, clone, "add", "-A")
				runGit(t, clone, "commit", "--quiet", "-m", "a bad note")
				c = strings.TrimSpace(runGit(t, clone, "rev-parse", "HEAD"))
				tc.want = "notes/xx/b (commit " + c[:12] + "): a note starts with"
			case "user record with a hash":
				runGit(t, clone, "reset", "--quiet", "--hard", base)
				os.WriteFile(filepath.Join(clone, "users", "eve"), []byte(`{"name":"eve","git":"write","hash":"$argon2id$v=19$m=1,t=1,p=1$AAAA$AAAA"}`), 0o644)
				runGit(t, clone, "add", "-A")
				runGit(t, clone, "commit", "--quiet", "-m", "eve")
				c = strings.TrimSpace(runGit(t, clone, "rev-parse", "HEAD"))
				tc.want = "users/eve (commit " + c[:12] + "): user records hold no password hash"
			default:
				c = commitTree(tc.mode, tc.path, tc.content)
			}
			before, _ := s.Branches()
			gitFail(t, clone, tc.want, "push", "origin", c+":refs/heads/main")
			after, _ := s.Branches()
			if len(after) != len(before) || after[0] != before[0] {
				t.Errorf("the refused push moved the branches: %v, then %v", before, after)
			}
		})
	}
	// A valid push still goes through.
	runGit(t, clone, "reset", "--quiet", "--hard", base)
	os.WriteFile(filepath.Join(clone, "notes", "ok"), []byte("note ok"), 0o644)
	runGit(t, clone, "add", "-A")
	runGit(t, clone, "commit", "--quiet", "-m", "a good note")
	runGit(t, clone, "push", "--quiet", "origin", "HEAD:main")
	if b, err := s.Read("", "notes/ok"); err != nil || string(b) != "note ok" {
		t.Errorf("after a valid push: notes/ok = %q, %v", b, err)
	}
	fsckOpen(t, s)
}

// gitIn runs git with stdin and returns its trimmed output.
func gitIn(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(cmd.Environ(), "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestNewCommits(t *testing.T) {
	s := newStore(t)
	a := put(t, s, "x", "1")
	b := put(t, s, "x", "2")
	if _, err := s.CreateBranch(t.Context(), "side", a.String()); err != nil {
		t.Fatal(err)
	}
	c := put(t, s, "x", "3")
	err := s.readObjs(func(o *objReader) error {
		for _, tc := range []struct {
			name string
			head Hash
			old  []Hash
			want int
		}{
			{"all new", c, nil, 3},
			{"one new", c, []Hash{b}, 1},
			{"none new", a, []Hash{c}, 0},
			{"two heads", c, []Hash{a, b}, 1},
		} {
			got, _, err := newCommitsSince(o, []Hash{tc.head}, tc.old, 0)
			if err != nil {
				return err
			}
			if len(got) != tc.want {
				t.Errorf("%s: %d new commits, want %d", tc.name, len(got), tc.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
