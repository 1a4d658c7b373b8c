package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestLogShowRevert(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c1 := put(t, s, "notes/a", "one")
	c2 := put(t, s, "notes/b", "two")
	c3 := put(t, s, "notes/a", "three")

	for _, tc := range []struct {
		name string
		opts LogOptions
		want []Hash
	}{
		{"all", LogOptions{}, []Hash{c3, c2, c1}},
		{"limit", LogOptions{Limit: 2}, []Hash{c3, c2}},
		{"path", LogOptions{Path: "notes/a"}, []Hash{c3, c1}},
		{"folder", LogOptions{Path: "notes"}, []Hash{c3, c2, c1}},
		{"from revision", LogOptions{Rev: c2.String()}, []Hash{c2, c1}},
		{"tilde", LogOptions{Rev: "main~1", Path: "notes/b"}, []Hash{c2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Log(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var hs []Hash
			for _, c := range got {
				hs = append(hs, c.Hash)
			}
			if len(hs) != len(tc.want) {
				t.Fatalf("got %d commits %v, want %v", len(hs), hs, tc.want)
			}
			for i := range hs {
				if hs[i] != tc.want[i] {
					t.Errorf("commit %d = %s, want %s", i, hs[i], tc.want[i])
				}
			}
		})
	}

	info, changes, err := s.Show(c3.String()[:10])
	if err != nil {
		t.Fatal(err)
	}
	if info.Hash != c3 || info.Subject() != "put notes/a" || len(changes) != 1 || changes[0].Path != "notes/a" || changes[0].Action() != "modify" {
		t.Errorf("Show = %+v %+v", info, changes)
	}

	if d, err := s.Diff(c1.String(), "main"); err != nil || len(d) != 2 || d[0].Path != "notes/a" || d[1].Path != "notes/b" || d[1].Action() != "add" {
		t.Errorf("Diff(c1, main) = %+v, %v", d, err)
	}
	// Revert c2: notes/b goes away.
	r, err := s.Revert(ctx, c2.String(), CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.mustSnap(t).Exists("notes/b"); ok {
		t.Error("revert left notes/b")
	}
	info, _, _ = s.Show(r.String())
	if !strings.Contains(info.Message, "This reverts commit "+c2.String()) {
		t.Errorf("revert message %q", info.Message)
	}
	// Reverting c1 conflicts: notes/a changed again in c3.
	_, err = s.Revert(ctx, c1.String(), CommitOptions{})
	var ce *ConflictError
	if !errors.As(err, &ce) || len(ce.Paths) != 1 || ce.Paths[0] != "notes/a" {
		t.Errorf("Revert(c1) = %v, want a conflict on notes/a", err)
	}
	if h, _ := s.Resolve(""); h != r {
		t.Error("a conflicting revert moved the branch")
	}
	fsckOpen(t, s)
}

func TestBranches(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c1 := put(t, s, "x", "1")
	if _, err := s.CreateBranch(ctx, "feature/one", "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(ctx, "feature/one", "main"); !errors.Is(err, ErrExists) {
		t.Errorf("CreateBranch twice = %v, want ErrExists", err)
	}
	for _, bad := range []string{"a..b", "-x", "a b", "x.lock", "HEAD", "a/.b", "a~1"} {
		if _, err := s.CreateBranch(ctx, bad, "main"); err == nil {
			t.Errorf("CreateBranch(%q) accepted", bad)
		}
	}
	c2, err := s.Update(ctx, CommitOptions{Branch: "feature/one"}, func(tx *Tx) error { return tx.Put("x", []byte("2")) })
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Read("main", "x"); string(got) != "1" {
		t.Errorf("main sees the branch's write: %q", got)
	}
	bs, _ := s.Branches()
	if len(bs) != 2 || bs[0].Name != "feature/one" || bs[0].Head != c2 || bs[1].Name != "main" || bs[1].Head != c1 {
		t.Errorf("Branches = %+v", bs)
	}
	if _, err := s.FastForward(ctx, "main", "feature/one"); err != nil {
		t.Fatal(err)
	}
	c3 := put(t, s, "y", "3")
	if _, err := s.FastForward(ctx, "feature/one", c1.String()); !errors.Is(err, ErrNotFastForward) {
		t.Errorf("backwards FastForward = %v, want ErrNotFastForward", err)
	}
	if _, err := s.FastForward(ctx, "feature/one", "main"); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.Resolve("feature/one"); h != c3 {
		t.Error("fast-forward did not move the branch")
	}
	if err := s.DeleteBranch(ctx, "main"); err == nil {
		t.Error("deleted the default branch")
	}
	if err := s.DeleteBranch(ctx, "feature/one"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBranch(ctx, "feature/one"); !errors.Is(err, ErrNotExist) {
		t.Errorf("DeleteBranch twice = %v", err)
	}
	fsckOpen(t, s)
	s.Flush()
	if out := runGit(t, s.Path(), "branch", "--list"); strings.TrimSpace(out) != "* main" {
		t.Errorf("git branch: %q", out)
	}
}
