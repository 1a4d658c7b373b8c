package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// forked makes a store with base content and a branch "other" at the same
// commit.
func forked(t *testing.T, base map[string]string) *Store {
	t.Helper()
	s := newStore(t)
	_, err := s.Update(context.Background(), CommitOptions{Message: "base"}, func(tx *Tx) error {
		for p, v := range base {
			tx.Put(p, []byte(v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBranch(context.Background(), "other", "main"); err != nil {
		t.Fatal(err)
	}
	return s
}

func write(t *testing.T, s *Store, branch string, m map[string]string) {
	t.Helper()
	_, err := s.Update(context.Background(), CommitOptions{Branch: branch, Message: "edit " + branch}, func(tx *Tx) error {
		for p, v := range m {
			if v == "<del>" {
				tx.Delete(p)
			} else {
				tx.Put(p, []byte(v))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func contents(t *testing.T, s *Store, rev string) string {
	t.Helper()
	es, err := s.List(rev, "")
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, e := range es {
		b, _ := s.Read(rev, e.Path)
		parts = append(parts, e.Path+"="+string(b))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func TestMerge(t *testing.T) {
	base := map[string]string{"a": "1", "b": "1", "c": "1", "d": "1"}
	for _, tc := range []struct {
		name         string
		ours, theirs map[string]string
		want         string
		conflicts    []string
	}{
		{"disjoint", map[string]string{"a": "2", "new1": "x"}, map[string]string{"b": "2", "c": "<del>", "dir/new2": "y"},
			"a=2 b=2 d=1 dir/new2=y new1=x", nil},
		{"same change", map[string]string{"a": "2"}, map[string]string{"a": "2", "b": "3"}, "a=2 b=3 c=1 d=1", nil},
		{"both delete", map[string]string{"a": "<del>"}, map[string]string{"a": "<del>"}, "b=1 c=1 d=1", nil},
		{"conflicts", map[string]string{"a": "2", "b": "<del>", "n": "o"}, map[string]string{"a": "3", "b": "4", "n": "t", "c": "5"},
			"", []string{"a", "b", "n"}},
		{"item against folder", map[string]string{"x": "file"}, map[string]string{"x/y": "in folder"}, "", []string{"x/y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := forked(t, base)
			write(t, s, "main", tc.ours)
			write(t, s, "other", tc.theirs)
			before, _ := s.Resolve("main")
			res, err := s.Merge(context.Background(), "other", CommitOptions{})
			if tc.conflicts != nil {
				var ce *ConflictError
				if !errors.As(err, &ce) {
					t.Fatalf("Merge = %v, want a conflict", err)
				}
				sort.Strings(ce.Paths)
				if fmt.Sprint(ce.Paths) != fmt.Sprint(tc.conflicts) {
					t.Errorf("conflicting paths %v, want %v", ce.Paths, tc.conflicts)
				}
				if after, _ := s.Resolve("main"); after != before {
					t.Error("a conflicting merge moved the branch")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := contents(t, s, "main"); got != tc.want {
				t.Errorf("merged = %s, want %s", got, tc.want)
			}
			info, _, _ := s.Show("main")
			if len(info.Parents) != 2 || res.Head != info.Hash {
				t.Errorf("merge commit %+v, result %+v", info, res)
			}
			fsckOpen(t, s)
		})
	}
}

func TestMergeFastForwardAndUpToDate(t *testing.T) {
	s := forked(t, map[string]string{"a": "1"})
	write(t, s, "other", map[string]string{"a": "2"})
	res, err := s.Merge(context.Background(), "other", CommitOptions{})
	if err != nil || !res.FastForward {
		t.Fatalf("Merge = %+v, %v; want a fast-forward", res, err)
	}
	res, err = s.Merge(context.Background(), "other", CommitOptions{})
	if err != nil || !res.UpToDate {
		t.Fatalf("Merge again = %+v, %v; want up to date", res, err)
	}
}

func TestMergeFunc(t *testing.T) {
	s := forked(t, map[string]string{"sets/s": "a\nb\n", "plain": "1"})
	// A set union: lines added on either side survive, lines deleted on
	// either side go.
	s.SetMergeFunc("sets", func(path string, base, ours, theirs []byte) ([]byte, error) {
		lines := func(b []byte) map[string]bool {
			m := map[string]bool{}
			for _, l := range strings.Fields(string(b)) {
				m[l] = true
			}
			return m
		}
		b, o, th := lines(base), lines(ours), lines(theirs)
		var out []string
		for l := range union(o, th) {
			if b[l] && (!o[l] || !th[l]) {
				continue
			}
			out = append(out, l)
		}
		sort.Strings(out)
		return []byte(strings.Join(out, "\n") + "\n"), nil
	})
	s.SetMergeFunc("plain", func(string, []byte, []byte, []byte) ([]byte, error) {
		return nil, errors.New("refuse")
	})
	write(t, s, "main", map[string]string{"sets/s": "a\nb\nc\n"})
	write(t, s, "other", map[string]string{"sets/s": "b\nd\n"})
	res, err := s.Merge(context.Background(), "other", CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Read("main", "sets/s"); string(got) != "b\nc\nd\n" {
		t.Errorf("merged set = %q, want b c d", got)
	}
	if len(res.Resolved) != 1 || res.Resolved[0] != "sets/s" {
		t.Errorf("Resolved = %v", res.Resolved)
	}
	// A merge function's error is a conflict.
	write(t, s, "main", map[string]string{"plain": "2"})
	write(t, s, "other", map[string]string{"plain": "3"})
	if _, err := s.Merge(context.Background(), "other", CommitOptions{}); !errors.Is(err, ErrConflict) {
		t.Errorf("Merge = %v, want ErrConflict", err)
	}
	fsckOpen(t, s)
}

func union(a, b map[string]bool) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

// TestMergeDeterministic: two nodes that merge the same two heads, each
// into its own (in opposite orders, with their own messages), make one
// commit, so that each then finds the other's merge already merged.
func TestMergeDeterministic(t *testing.T) {
	ctx := context.Background()
	s := forked(t, map[string]string{"a": "1", "b": "1", "cat/x": "base"})
	// Asymmetric on purpose: ours first. The merge must still not
	// depend on which head is the branch's.
	s.SetMergeFunc("cat", func(_ string, _, ours, theirs []byte) ([]byte, error) {
		return append(append([]byte{}, ours...), theirs...), nil
	})
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	for _, w := range []struct {
		branch string
		when   time.Time
		m      map[string]string
	}{{"main", t2, map[string]string{"a": "2", "cat/x": "main"}}, {"other", t1, map[string]string{"b": "2", "cat/x": "other"}}} {
		_, err := s.Update(ctx, CommitOptions{Branch: w.branch, When: w.when, Message: "edit"}, func(tx *Tx) error {
			for p, v := range w.m {
				tx.Put(p, []byte(v))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range [][2]string{{"x", "main"}, {"y", "other"}} {
		if _, err := s.CreateBranch(ctx, b[0], b[1]); err != nil {
			t.Fatal(err)
		}
	}
	rx, err := s.Merge(ctx, "other", CommitOptions{Branch: "x", Deterministic: true, Message: "merge from node1", Author: Signature{Name: "n1", Email: "n1@x"}})
	if err != nil {
		t.Fatal(err)
	}
	ry, err := s.Merge(ctx, "main", CommitOptions{Branch: "y", Deterministic: true, Message: "merge from node0", When: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if rx.Head != ry.Head || rx.Head.IsZero() {
		t.Fatalf("merges in opposite orders made %s and %s, want one commit", rx.Head, ry.Head)
	}
	if got := contents(t, s, "x"); !strings.HasPrefix(got, "a=2 b=2 cat/x=") {
		t.Errorf("merged = %s", got)
	}
	info, _, err := s.Show("x")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Parents) != 2 || bytes.Compare(info.Parents[0][:], info.Parents[1][:]) >= 0 {
		t.Errorf("parents %v, want two sorted by hash", info.Parents)
	}
	if !info.When.Equal(t2) || info.Author != ReplicaAuthor || info.Subject() != ReplicaMergeMessage {
		t.Errorf("merge commit %v by %v: %q, want %v by %v: %q", info.When, info.Author, info.Subject(), t2, ReplicaAuthor, ReplicaMergeMessage)
	}
	// Each node now takes the other's merge as its own.
	if r, err := s.Merge(ctx, "y", CommitOptions{Branch: "x", Deterministic: true}); err != nil || !r.UpToDate {
		t.Errorf("merging the other node's merge = %+v, %v; want up to date", r, err)
	}
	// A commit that is not a merge refuses the option.
	if _, err := s.Update(ctx, CommitOptions{Deterministic: true}, func(tx *Tx) error { return tx.Put("c", []byte("1")) }); err == nil || !strings.Contains(err.Error(), "deterministic") {
		t.Errorf("Update with Deterministic = %v, want an error", err)
	}
	fsckOpen(t, s)
}
