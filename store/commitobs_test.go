package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCommitObserver(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var got []time.Duration
	s.SetCommitObserver(func(d time.Duration) { got = append(got, d) })
	put := func(v string) error {
		_, err := s.Update(ctx, CommitOptions{Message: "put"}, func(tx *Tx) error { return tx.Put("a/x", []byte(v)) })
		return err
	}
	if err := put("1"); err != nil {
		t.Fatal(err)
	}
	if err := put("1"); err != nil { // no change, no commit
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, CommitOptions{}, func(tx *Tx) error { return errors.New("no") }); err == nil {
		t.Fatal("no error")
	}
	if len(got) != 1 || got[0] <= 0 {
		t.Errorf("observed %v, want one positive duration (one commit)", got)
	}
	s.SetCommitObserver(nil)
	if err := put("2"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("observed after removal: %v", got)
	}
}
