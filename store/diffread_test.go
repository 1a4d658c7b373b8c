package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"
)

func TestDiffUnder(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(1))
	paths := []string{"a/x", "a/y", "a/b/c", "a/b/d", "b/x", "top", "c/d/e/f", "c/g"}
	var commits []Hash
	commits = append(commits, Hash{})
	for i := range 20 {
		h, err := s.Update(ctx, CommitOptions{}, func(tx *Tx) error {
			for range 3 {
				p := paths[rng.Intn(len(paths))]
				var err error
				if rng.Intn(3) == 0 {
					err = tx.Delete(p)
				} else {
					err = tx.Put(p, []byte(fmt.Sprint(i, p)))
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, h)
	}
	for i := range 40 {
		a, b := commits[rng.Intn(len(commits))], commits[rng.Intn(len(commits))]
		want, err := s.DiffCommits(a, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, prefix := range []string{"", "a", "a/b", "c/d", "nope"} {
			var w []Change
			for _, c := range want {
				if prefix == "" || strings.HasPrefix(c.Path, prefix+"/") {
					w = append(w, c)
				}
			}
			got, err := s.DiffUnder(a, b, prefix)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("%d: DiffUnder(%s, %s, %q) = %v, want %v", i, short(a), short(b), prefix, got, w)
			}
		}
	}
	var bogus Hash
	bogus[0] = 1
	if _, err := s.DiffUnder(bogus, commits[1], ""); !errors.Is(err, ErrNotExist) {
		t.Errorf("DiffUnder from an unknown commit: %v, want ErrNotExist", err)
	}
}
