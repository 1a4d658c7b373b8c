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
