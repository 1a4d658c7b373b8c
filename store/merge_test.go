package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
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
