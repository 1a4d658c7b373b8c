package store

import (
	"context"
	"testing"
)

func TestTxCopy(t *testing.T) {
	s := newStore(t)
	put(t, s, "a/x", "x")
	put(t, s, "a/sub/y", "y")
	tests := []struct {
		name    string
		fn      func(tx *Tx) (int, error)
		want    map[string]string // path → content after the commit ("" absent)
		copied  int
		wantErr bool
	}{
		{"a folder", func(tx *Tx) (int, error) { return tx.Copy("a", "b") }, map[string]string{"b/x": "x", "b/sub/y": "y", "a/x": "x"}, 2, false},
		{"an item", func(tx *Tx) (int, error) { return tx.Copy("a/x", "c/x") }, map[string]string{"c/x": "x"}, 1, false},
		{"with the transaction's own writes", func(tx *Tx) (int, error) {
			if err := tx.Put("a/new", []byte("new")); err != nil {
				return 0, err
			}
			tx.Delete("a/sub/y")
			return tx.Copy("a", "d")
		}, map[string]string{"d/new": "new", "d/x": "x", "d/sub/y": ""}, 2, false},
		{"nothing there", func(tx *Tx) (int, error) { return tx.Copy("none", "e") }, map[string]string{"e/x": ""}, 0, false},
		{"into itself", func(tx *Tx) (int, error) { return tx.Copy("a", "a/in") }, nil, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n int
			_, err := s.Update(context.Background(), CommitOptions{Message: tc.name}, func(tx *Tx) error {
				var err error
				n, err = tc.fn(tx)
				return err
			})
			if (err != nil) != tc.wantErr {
				t.Fatalf("got error %v, want error %v", err, tc.wantErr)
			}
			if n != tc.copied {
				t.Errorf("copied %d items, want %d", n, tc.copied)
			}
			for p, want := range tc.want {
				got, err := s.Read("", p)
				if want == "" {
					if err == nil {
						t.Errorf("%s: got %q, want nothing", p, got)
					}
					continue
				}
				if err != nil || string(got) != want {
					t.Errorf("%s: got %q (%v), want %q", p, got, err, want)
				}
			}
		})
	}
	fsckOpen(t, s)
}
