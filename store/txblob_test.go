package store

import (
	"context"
	"testing"
)

// TestPutBlob: the hash PutBlob returns is the one the tree records, and
// ReadBlob reads the content back by it once committed, loose and packed.
func TestPutBlob(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var h Hash
	_, err := s.Update(ctx, CommitOptions{Message: "put"}, func(tx *Tx) error {
		var err error
		h, err = tx.PutBlob("a/b/item", []byte("content of the item"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := s.Snapshot("")
	if err != nil {
		t.Fatal(err)
	}
	e, err := sn.Stat("a/b/item")
	if err != nil {
		t.Fatal(err)
	}
	if e.Hash != h {
		t.Errorf("got hash %s, want %s (the tree's)", h, e.Hash)
	}
	for _, stage := range []string{"loose", "packed"} {
		if stage == "packed" {
			if _, err := s.GC(ctx); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ReadBlob(h)
		if err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		if string(got) != "content of the item" {
			t.Errorf("%s: got %q", stage, got)
		}
	}
	if _, err := s.Update(ctx, CommitOptions{}, func(tx *Tx) error {
		_, err := tx.PutBlob("/bad", nil)
		return err
	}); err == nil {
		t.Error("PutBlob accepted an invalid path")
	}
}
