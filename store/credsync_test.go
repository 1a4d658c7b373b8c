package store

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPeerCredentials: a password and an app password set on one replica
// reach another through PeerCredentials and AcceptPeerCredentials (never
// through the history), a login checks the hash the record names, and a
// revocation or a deletion drops the hashes.
func TestPeerCredentials(t *testing.T) {
	ctx := context.Background()
	a := newStore(t)
	a.SetMergeFunc(UsersPrefix+"/", MergeUserRecords)
	if err := a.AddUser(ctx, "alice", "first password", GitNone); err != nil {
		t.Fatal(err)
	}
	// (Closed and opened again around the clone: see replicas.md.)
	b, err := Clone(ctx, Remote{URL: a.Path()}, filepath.Join(t.TempDir(), "b.git"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	b.SetMergeFunc(UsersPrefix+"/", MergeUserRecords)
	pull := func(to, from *Store) {
		t.Helper()
		if _, err := to.Pull(ctx, Remote{URL: from.Path()}, SyncOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	exchange := func(to, from *Store) int {
		t.Helper()
		m, err := from.PeerCredentials()
		if err != nil {
			t.Fatal(err)
		}
		n, err := to.AcceptPeerCredentials(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	login := func(s *Store, pw string) bool {
		_, err := s.AuthenticateClient("alice", pw)
		return err == nil
	}
	if login(b, "first password") {
		t.Fatal("a clone logs in without the hash")
	}
	if w, _ := b.CredentialsWanted(); !w {
		t.Error("CredentialsWanted: false on a clone without hashes")
	}
	if n := exchange(b, a); n != 1 || !login(b, "first password") {
		t.Fatalf("after the exchange: took %d, login %v", n, login(b, "first password"))
	}
	if w, _ := b.CredentialsWanted(); w {
		t.Error("CredentialsWanted: true with every hash here")
	}
	// A change on a: its record reaches b first; the old password stops
	// working there at once, the new one once the hash comes.
	if err := a.SetPassword(ctx, "alice", "second password"); err != nil {
		t.Fatal(err)
	}
	pull(b, a)
	if login(b, "first password") || login(b, "second password") {
		t.Error("b: a login works with a hash the record does not name")
	}
	exchange(b, a)
	if login(b, "first password") || !login(b, "second password") {
		t.Error("b after the exchange: want the second password only")
	}
	// App passwords: made on a, revoked on a.
	ap, pw, err := a.AddAppPassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	pull(b, a)
	exchange(b, a)
	if !login(b, pw) {
		t.Error("b: the app password made on a does not work")
	}
	if err := a.DeleteAppPassword(ctx, "alice", ap.ID); err != nil {
		t.Fatal(err)
	}
	pull(b, a)
	if login(b, pw) {
		t.Error("b: a revoked app password works")
	}
	exchange(b, a)
	if h, _ := b.passwordHashes(); h[appKey("alice", ap.ID)] != "" {
		t.Error("b keeps the hash of a revoked app password")
	}
	// A peer's hash that no record names is not taken.
	if n, _ := b.AcceptPeerCredentials(ctx, map[string]string{"alice": mustHash(t, "not hers at all")}); n != 0 || login(b, "not hers at all") {
		t.Error("b took a hash that its record does not name")
	}
	// No hash in either history.
	for _, s := range []*Store{a, b} {
		if out := runGit(t, s.Path(), "log", "-p", "--branches", "--remotes"); strings.Contains(out, "argon2") {
			t.Errorf("%s: a hash in the history", s.Path())
		}
	}
	// A deletion drops the hashes on the other node too.
	if err := a.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	pull(b, a)
	exchange(b, a)
	if h, _ := b.passwordHashes(); len(h) != 0 {
		t.Errorf("b keeps hashes of a deleted user: %v", h)
	}
}

func mustHash(t *testing.T, pw string) string {
	h, err := hashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestMergeUserRecords: the password set last wins, app passwords merge as
// a set, other fields take the side that changed them, a deletion wins.
func TestMergeUserRecords(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := func(pw string, set time.Time, q uint64, apps ...string) []byte {
		r := userRecord{User: User{Name: "alice", Git: GitNone, Quota: Quota{Messages: q}}, Password: pw, PasswordSet: set}
		for i, id := range apps {
			r.AppPasswords = append(r.AppPasswords, AppPassword{ID: id, Name: id, Created: t0.Add(time.Duration(i) * time.Minute)})
		}
		b, _ := json.Marshal(r)
		return b
	}
	base := rec("p0", t0, 0, "keep", "gone")
	ours := rec("p1", t0.Add(2*time.Hour), 0, "keep", "mine")
	theirs := rec("p2", t0.Add(time.Hour), 5, "keep", "gone", "yours")
	for _, sides := range [][2][]byte{{ours, theirs}, {theirs, ours}} {
		out, err := MergeUserRecords("users/alice", base, sides[0], sides[1])
		if err != nil {
			t.Fatal(err)
		}
		var m userRecord
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, a := range m.AppPasswords {
			ids = append(ids, a.ID)
		}
		if m.Password != "p1" || m.Quota.Messages != 5 || strings.Join(ids, " ") != "keep mine yours" {
			t.Errorf("merge: password %s, quota %d, apps %v; want p1, 5, [keep mine yours]", m.Password, m.Quota.Messages, ids)
		}
	}
	if out, err := MergeUserRecords("users/alice", base, nil, theirs); out != nil || err != nil {
		t.Errorf("deleted on one side: %s, %v", out, err)
	}
}

// TestPasswordChangeCrash: a crash after a password change wrote the new
// hash and before its record committed leaves the old password, which the
// record still names, in force (never a lock-out), and the next exchange
// drops the hash that no record names.
func TestPasswordChangeCrash(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.AddUser(ctx, "alice", "old password", GitNone); err != nil {
		t.Fatal(err)
	}
	// What modifyUser writes before the record's commit.
	newHash := mustHash(t, "new password")
	if err := s.setPasswordHashes(ctx, "test", func(m map[string]string) {
		m["alice"+prevSuffix] = m["alice"]
		m["alice"] = newHash
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", "old password"); err != nil {
		t.Errorf("old password: %v, want it in force", err)
	}
	if _, err := s.Authenticate("alice", "new password"); err == nil {
		t.Error("the new password works without its record")
	}
	if _, err := s.AcceptPeerCredentials(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.passwordHashes(); len(h) != 1 || passwordID(h["alice"]) == passwordID(newHash) {
		t.Errorf("after the exchange: %d hashes, want the old one only", len(h))
	}
	if _, err := s.Authenticate("alice", "old password"); err != nil {
		t.Errorf("old password after the exchange: %v", err)
	}
}
