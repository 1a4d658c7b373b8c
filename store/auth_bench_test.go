package store

import (
	"context"
	"testing"
)

// BenchmarkAuthenticate: a login that the cache of recent successes
// answers (clients that authenticate every request), the common case.
func BenchmarkAuthenticate(b *testing.B) {
	s := newStore(b)
	if err := s.AddUser(context.Background(), "alice", "alice-password", GitNone); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Authenticate("alice", "alice-password"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Authenticate("alice", "alice-password"); err != nil {
			b.Fatal(err)
		}
	}
}
