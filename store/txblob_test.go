package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
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

// TestPutBlobOf: a Blob hashed once by NewBlob is stored by PutBlobOf as
// PutBlob stores its content (read back by path and by hash, git fsck
// clean); NewBlob copies the content, and a Blob it did not make is
// refused.
func TestPutBlobOf(t *testing.T) {
	s := newStore(t)
	data := []byte(strings.Repeat("a message body\r\n", 2000))
	b := NewBlob(data)
	if b.Hash() != BlobHash(data) {
		t.Fatalf("NewBlob's hash %s, want %s", b.Hash(), BlobHash(data))
	}
	data[0] = 'X' // the caller's slice is its own again
	var got Hash
	_, err := s.Update(context.Background(), CommitOptions{}, func(tx *Tx) error {
		var err error
		if got, err = tx.PutBlobOf("m/1.eml", b); err != nil {
			return err
		}
		if _, err := tx.PutBlobOf("m/2.eml", Blob{}); err == nil {
			return errors.New("a zero Blob was taken")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte(strings.Repeat("a message body\r\n", 2000))
	sn, err := s.Snapshot("")
	if err != nil {
		t.Fatal(err)
	}
	if byPath, err := sn.Read("m/1.eml"); err != nil || !bytes.Equal(byPath, want) {
		t.Fatalf("read by path: %d bytes, %v", len(byPath), err)
	}
	if byHash, err := s.ReadBlob(got); err != nil || !bytes.Equal(byHash, want) {
		t.Fatalf("read by hash %s: %d bytes, %v", got, len(byHash), err)
	}
	fsckOpen(t, s)
}
