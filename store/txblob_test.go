package store

import (
	"context"
	"errors"
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

// TestPutHash: an item deleted in one commit is put back by its blob hash
// in a later one, and a hash the store does not hold is refused.
func TestPutHash(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var h Hash
	if _, err := s.Update(ctx, CommitOptions{Message: "put"}, func(tx *Tx) error {
		var err error
		h, err = tx.PutBlob("a/item", []byte("old content"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, CommitOptions{Message: "del"}, func(tx *Tx) error { return tx.Delete("a/item") }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, CommitOptions{Message: "restore"}, func(tx *Tx) error { return tx.PutHash("b/item", h) }); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read("", "b/item")
	if err != nil || string(got) != "old content" {
		t.Fatalf("restored item: %q, %v", got, err)
	}
	missing := BlobHash([]byte("never stored"))
	_, err = s.Update(ctx, CommitOptions{Message: "bad"}, func(tx *Tx) error { return tx.PutHash("c/item", missing) })
	if !errors.Is(err, ErrNotExist) {
		t.Fatalf("PutHash of an unknown blob: %v, want ErrNotExist", err)
	}
	tree, err := s.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	if err := func() error {
		_, err := s.Update(ctx, CommitOptions{Message: "commit hash"}, func(tx *Tx) error { return tx.PutHash("d/item", tree) })
		return err
	}(); !errors.Is(err, ErrNotExist) {
		t.Fatalf("PutHash of a commit: %v, want ErrNotExist", err)
	}
}
