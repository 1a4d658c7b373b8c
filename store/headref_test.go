package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestBranchHead(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if h, err := s.BranchHead(""); err != nil || !h.IsZero() {
		t.Fatalf("BranchHead of an empty store = %v, %v; want zero, nil", h, err)
	}
	for i := range 3 {
		want, err := s.Update(ctx, CommitOptions{}, func(tx *Tx) error { return tx.Put("a", []byte{byte(i)}) })
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.BranchHead(""); err != nil || got != want {
			t.Errorf("after commit %d: BranchHead = %v, %v; want %v", i, got, err, want)
		}
		if got, err := s.BranchHead(DefaultBranch); err != nil || got != want {
			t.Errorf("after commit %d: BranchHead(%s) = %v, %v; want %v", i, DefaultBranch, got, err, want)
		}
	}
	want, _ := s.Resolve("")
	s.Flush() // the branch file is written
	// A branch that is only in packed-refs is read the ordinary way.
	ref := filepath.Join(s.path, "refs", "heads", DefaultBranch)
	if err := os.Remove(ref); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.path, "packed-refs"), []byte(want.String()+" refs/heads/"+DefaultBranch+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := s.BranchHead(""); err != nil || got != want {
		t.Errorf("packed: BranchHead = %v, %v; want %v", got, err, want)
	}
	if _, err := s.BranchHead("bad..name"); err == nil {
		t.Error("BranchHead(bad..name) succeeded")
	}
	if h, err := s.BranchHead("nope"); err != nil || !h.IsZero() {
		t.Errorf("BranchHead(nope) = %v, %v; want zero, nil", h, err)
	}
}

func TestUserRecordPath(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.AddUser(ctx, "alice", "alice-password", GitNone); err != nil {
		t.Fatal(err)
	}
	sn, _ := s.Snapshot("")
	e1, err := sn.Stat(UserRecordPath("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, "alice", "another-password"); err != nil {
		t.Fatal(err)
	}
	sn, _ = s.Snapshot("")
	e2, err := sn.Stat(UserRecordPath("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if e1.Hash == e2.Hash {
		t.Error("the user record's hash did not change with the password")
	}
}

func TestSnapshotAuthenticate(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.AddUser(ctx, "alice", "alice-password", GitNone); err != nil {
		t.Fatal(err)
	}
	old, _ := s.Snapshot("")
	if err := s.SetPassword(ctx, "alice", "another-password"); err != nil {
		t.Fatal(err)
	}
	now, _ := s.Snapshot("")
	for _, tc := range []struct {
		name      string
		sn        *Snapshot
		user, pw  string
		wantError error
	}{
		// Passwords are checked against the current hashes whatever
		// the snapshot: the history holds none.
		{"old password, old snapshot", old, "alice", "alice-password", ErrAuthFailed},
		{"new password, old snapshot", old, "alice", "another-password", nil},
		{"new password, now", now, "alice", "another-password", nil},
		{"new password again (cached)", now, "alice", "another-password", nil},
		{"old password, now", now, "alice", "alice-password", ErrAuthFailed},
		{"no such user", now, "bob", "bob-password", ErrAuthFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tc.sn.Authenticate(tc.user, tc.pw)
			if !errors.Is(err, tc.wantError) {
				t.Fatalf("got %v, want %v", err, tc.wantError)
			}
			if err == nil && u.Name != tc.user {
				t.Errorf("got user %q, want %q", u.Name, tc.user)
			}
		})
	}
	sn, err := s.SnapshotOf(now.Commit())
	if err != nil || sn.Commit() != now.Commit() {
		t.Fatalf("SnapshotOf = %v, %v", sn, err)
	}
	if got, err := sn.Read(UserRecordPath("alice")); err != nil || len(got) == 0 {
		t.Errorf("SnapshotOf: Read = %q, %v", got, err)
	}
}
