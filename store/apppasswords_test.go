package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestAppPasswords(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		if err := s.AddUser(ctx, u, u+" password", GitNone); err != nil {
			t.Fatal(err)
		}
	}
	ap, pw, err := s.AddAppPassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := appPasswordID(pw); !ok || id != ap.ID || ap.Name != "phone" {
		t.Fatalf("AddAppPassword = %+v, %q: want an app password named phone whose first group is its ID", ap, pw)
	}
	if _, _, err := s.AddAppPassword(ctx, "alice", "phone"); !errors.Is(err, ErrExists) {
		t.Errorf("a second app password named phone: %v, want ErrExists", err)
	}
	for _, bad := range []string{"", " phone", "a\nb", strings.Repeat("x", 65)} {
		if _, _, err := s.AddAppPassword(ctx, "alice", bad); err == nil {
			t.Errorf("app password named %q: no error", bad)
		}
	}
	if _, _, err := s.AddAppPassword(ctx, "nobody", "phone"); !errors.Is(err, ErrNotExist) {
		t.Errorf("app password of a user that does not exist: %v, want ErrNotExist", err)
	}
	_, laptop, err := s.AddAppPassword(ctx, "alice", "laptop")
	if err != nil {
		t.Fatal(err)
	}

	// The protocols' check takes it and says which; the console's and
	// git's (Authenticate) do not.
	u, err := s.AuthenticateClient("alice", pw)
	if err != nil || u.Name != "alice" || u.AppPassword != "phone" {
		t.Errorf("AuthenticateClient(alice, app password) = %+v, %v; want alice by phone", u, err)
	}
	if u, err := s.AuthenticateClient("alice", "alice password"); err != nil || u.AppPassword != "" {
		t.Errorf("AuthenticateClient(alice, her password) = %+v, %v", u, err)
	}
	if _, err := s.Authenticate("alice", pw); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Authenticate (console, git) with an app password = %v, want ErrAuthFailed", err)
	}
	if _, err := s.AuthenticateClient("bob", pw); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("bob with alice's app password = %v, want ErrAuthFailed", err)
	}
	wrong := pw[:len(pw)-1] + string(appAlphabet[(strings.IndexByte(appAlphabet, pw[len(pw)-1])+1)%len(appAlphabet)])
	if _, err := s.AuthenticateClient("alice", wrong); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("a wrong secret with the right ID = %v, want ErrAuthFailed", err)
	}

	// Listed in the record (it replicates), the hash only in the
	// credentials.
	list, err := s.AppPasswords("alice")
	if err != nil || len(list) != 2 || list[0].Name != "phone" || list[1].Name != "laptop" {
		t.Errorf("AppPasswords = %+v, %v", list, err)
	}
	if list, err := s.AppPasswords("bob"); err != nil || len(list) != 0 {
		t.Errorf("bob's app passwords = %+v, %v", list, err)
	}
	sn, err := s.Snapshot("")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := sn.Read("users/alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rec), `"phone"`) || strings.Contains(string(rec), "argon2") || strings.Contains(string(rec), pw[appIDLen+1:]) {
		t.Errorf("alice's record: %s: want the app passwords listed without hash or secret", rec)
	}
	if err := validateUserRecord("users/alice", rec, nil); err != nil {
		t.Errorf("alice's record does not validate: %v", err)
	}
	if hs, _ := s.passwordHashes(); !strings.HasPrefix(hs[appKey("alice", ap.ID)], "$argon2id$") {
		t.Errorf("the app password's hash is not in the credentials: %q", hs[appKey("alice", ap.ID)])
	}
	log, err := s.Log(LogOptions{Limit: 1})
	if err != nil || len(log) != 1 || log[0].Subject() != "user app-password add alice laptop" {
		t.Errorf("last commit = %+v, %v", log, err)
	}

	// Revoked: fails at once (the cache of successes does not keep it).
	if err := s.DeleteAppPassword(ctx, "alice", "phone"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateClient("alice", pw); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("revoked app password = %v, want ErrAuthFailed", err)
	}
	if err := s.DeleteAppPassword(ctx, "alice", "phone"); !errors.Is(err, ErrNotExist) {
		t.Errorf("revoking twice = %v, want ErrNotExist", err)
	}
	if u, err := s.AuthenticateClient("alice", laptop); err != nil || u.AppPassword != "laptop" {
		t.Errorf("the other app password = %+v, %v", u, err)
	}
	// A deleted user's app passwords go with their password.
	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if hs, _ := s.passwordHashes(); len(hs) != 1 || hs["bob"] == "" {
		t.Errorf("credentials after alice left: %d hashes, want bob's only", len(hs))
	}
}
