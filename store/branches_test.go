package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

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

// TestBranchesPending: Branches answers pending commits' heads from memory
// (a branch's file is written with its batch), also a branch that only a
// pending commit made, whether or not the batch is written meanwhile.
func TestBranchesPending(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		h := put(t, s, "x", fmt.Sprint(i))
		side, err := s.Update(ctx, CommitOptions{Branch: "side"}, func(tx *Tx) error {
			return tx.Put("y", []byte(fmt.Sprint(i)))
		})
		if err != nil {
			t.Fatal(err)
		}
		bs, err := s.Branches()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]Hash{}
		for _, b := range bs {
			got[b.Name] = b.Head
		}
		if got[DefaultBranch] != h || got["side"] != side || len(bs) != 2 {
			t.Fatalf("commit %d: branches %v; want main at %s, side at %s", i, bs, short(h), short(side))
		}
		if i%5 == 4 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
