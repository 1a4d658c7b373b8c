package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWatch(t *testing.T) {
	s := newStore(t)
	w, err := s.Watch("", "mail/alice")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	put(t, s, "mail/bob/1", "not watched")
	c := put(t, s, "mail/alice/INBOX/1", "hello")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.New != c || len(ev.Paths) != 1 || ev.Paths[0] != "mail/alice/INBOX/1" {
		t.Errorf("event = %+v, want commit %s changing mail/alice/INBOX/1", ev, c)
	}
	// Nothing else is queued.
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if ev, err := w.Next(short); err == nil {
		t.Errorf("unexpected event %+v", ev)
	}
	// A watcher that falls behind gets the changes coalesced, none lost.
	for i := 0; i < maxQueued+10; i++ {
		put(t, s, "mail/alice/x", string(rune('a'+i%26))+time.Now().String())
	}
	put(t, s, "mail/alice/last", "1")
	n, sawLast := 0, false
	for {
		short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		ev, err := w.Next(short)
		cancel()
		if err != nil {
			break
		}
		n++
		for _, p := range ev.Paths {
			sawLast = sawLast || p == "mail/alice/last"
		}
	}
	if n > maxQueued || !sawLast {
		t.Errorf("got %d events (want at most %d), saw the last change: %v", n, maxQueued, sawLast)
	}
	// Merges and branch moves notify too.
	s.CreateBranch(context.Background(), "b", "main")
	c2, _ := s.Update(context.Background(), CommitOptions{Branch: "b"}, func(tx *Tx) error { return tx.Put("mail/alice/m", []byte("m")) })
	if _, err := s.FastForward(context.Background(), "main", "b"); err != nil {
		t.Fatal(err)
	}
	if ev, err := w.Next(ctx); err != nil || ev.New != c2 {
		t.Errorf("after fast-forward: %+v, %v", ev, err)
	}
	s.Close()
	if _, err := w.Next(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after store Close = %v, want ErrClosed", err)
	}
}

// TestWatchMoveWithoutChanges: a merge whose tree is the branch's own (the
// other side made the same change) moves the branch without changing a
// path; a watcher of the whole branch hears of it (replicas push it on),
// one of a prefix does not.
func TestWatchMoveWithoutChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := forked(t, map[string]string{"a/x": "1"})
	write(t, s, "main", map[string]string{"a/x": "2"})
	write(t, s, "other", map[string]string{"a/x": "2"})
	all, err := s.Watch("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	under, err := s.Watch("", "a")
	if err != nil {
		t.Fatal(err)
	}
	defer under.Close()
	res, err := s.Merge(ctx, "other", CommitOptions{Deterministic: true})
	if err != nil || res.UpToDate || res.FastForward {
		t.Fatalf("Merge = %+v, %v; want a merge commit", res, err)
	}
	if ev, err := all.Next(ctx); err != nil || ev.New != res.Head || len(ev.Paths) != 0 {
		t.Errorf("whole-branch watcher: %+v, %v; want the merge %s without paths", ev, err, res.Head)
	}
	c := put(t, s, "a/y", "1")
	if ev, err := under.Next(ctx); err != nil || ev.New != c {
		t.Errorf("prefix watcher: %+v, %v; want the next change %s, not the merge", ev, err, c)
	}
}
