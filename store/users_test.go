package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

func TestUsers(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.AddUser(ctx, "alice", "correct horse", GitWrite); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "alice", "another password", GitRead); !errors.Is(err, ErrExists) {
		t.Errorf("AddUser twice = %v, want ErrExists", err)
	}
	for _, tc := range []struct{ name, pw, why string }{
		{"Bad Name", "long enough", "user name"},
		{"../x", "long enough", "user name"},
		{"bob", "short", "at least 8"},
		{"bob", "line\nbreak!", "line breaks"},
	} {
		if err := s.AddUser(ctx, tc.name, tc.pw, GitNone); err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("AddUser(%q, %q) = %v, want an error about %s", tc.name, tc.pw, err, tc.why)
		}
	}
	if err := s.AddUser(ctx, "bob", "bobs password", ""); err != nil {
		t.Fatal(err)
	}
	u, err := s.Authenticate("alice", "correct horse")
	if err != nil || u.Name != "alice" || u.Git != GitWrite {
		t.Errorf("Authenticate = %+v, %v", u, err)
	}
	for _, tc := range []struct{ name, pw string }{{"alice", "wrong"}, {"nobody", "correct horse"}, {"", ""}, {"Bad/Name", "x"}} {
		if _, err := s.Authenticate(tc.name, tc.pw); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrAuthFailed", tc.name, tc.pw, err)
		}
	}
	if err := s.SetPassword(ctx, "alice", "battery staple"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", "correct horse"); !errors.Is(err, ErrAuthFailed) {
		t.Error("the old password still works (auth cache not cleared)")
	}
	if _, err := s.Authenticate("alice", "battery staple"); err != nil {
		t.Error(err)
	}
	us, _ := s.Users()
	if len(us) != 2 || us[0].Name != "alice" || us[1].Name != "bob" || us[1].Git != GitNone {
		t.Errorf("Users = %+v", us)
	}
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("bob", "bobs password"); !errors.Is(err, ErrAuthFailed) {
		t.Error("a deleted user can log in")
	}
	if err := s.DeleteUser(ctx, "bob"); !errors.Is(err, ErrNotExist) {
		t.Errorf("DeleteUser twice = %v", err)
	}
	// Passwords never reach the repository, only argon2id hashes.
	s.Flush()
	if all := runGit(t, s.Path(), "cat-file", "--batch-all-objects", "--batch"); strings.Contains(all, "battery staple") || strings.Contains(all, "correct horse") {
		t.Error("a password is stored in the repository")
	}
	// The record on the branch holds no hash; CredentialsRef does.
	b, _ := s.Read("", "users/alice")
	if strings.Contains(string(b), "$argon2id$") || !strings.Contains(string(b), `"password"`) {
		t.Errorf("user record %s", b)
	}
	if b, err := s.Read(CredentialsRef, "users/alice"); err != nil || !strings.HasPrefix(string(b), "$argon2id$") {
		t.Errorf("credentials of alice: %q, %v", b, err)
	}
	if log := runGit(t, s.Path(), "log", "-p", "main"); strings.Contains(log, "$argon2id$") {
		t.Errorf("a password hash is in the history of main:\n%s", log)
	}
}

func TestQuota(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.AddUser(ctx, "alice", "correct horse", GitNone); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.LookupUser("alice"); u.Quota != (Quota{}) {
		t.Errorf("a new user has quota %+v, want none", u.Quota)
	}
	if b, _ := s.Read("", "users/alice"); strings.Contains(string(b), "quota") {
		t.Errorf("a record without quota writes one: %s", b)
	}
	for _, tc := range []struct {
		name string
		q    Quota
		why  string
	}{
		{"alice", Quota{StorageKiB: MaxQuota + 1}, "storage"},
		{"alice", Quota{Messages: MaxQuota + 1}, "messages"},
		{"nobody", Quota{Messages: 1}, "does not exist"},
	} {
		if err := s.SetQuota(ctx, tc.name, tc.q); err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("SetQuota(%s, %+v) = %v, want an error about %s", tc.name, tc.q, err, tc.why)
		}
	}
	want := Quota{StorageKiB: 1024, Messages: 10}
	if err := s.SetQuota(ctx, "alice", want); err != nil {
		t.Fatal(err)
	}
	// The limits are on the branch (so they replicate), in the record.
	if b, _ := s.Read("", "users/alice"); !strings.Contains(string(b), `"storage_kib": 1024`) || !strings.Contains(string(b), `"messages": 10`) {
		t.Errorf("user record %s", b)
	}
	us, err := s.Users()
	if err != nil || len(us) != 1 || us[0].Quota != want {
		t.Errorf("Users = %+v, %v", us, err)
	}
	if err := s.SetQuota(ctx, "alice", Quota{}); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.LookupUser("alice"); u.Quota != (Quota{}) {
		t.Errorf("quota after removing it: %+v", u.Quota)
	}
}

func TestHashSlots(t *testing.T) {
	for _, tc := range []struct {
		limit int64
		want  int
	}{
		{28 << 20, 1},      // a 64 MiB VM: MemTotal 52 MiB less 24 MiB
		{37 << 20, 1},      // 70 % of a 64 MiB VM's 52 MiB
		{75 << 20, 1},      // under four hashes of 19 MiB
		{76 << 20, 2},      // four hashes
		{170 << 20, 2},     // a 256 MiB VM
		{math.MaxInt64, 2}, // no limit (a host process)
	} {
		if got := hashSlots(tc.limit); got != tc.want {
			t.Errorf("hashSlots(%d MiB) = %d, want %d", tc.limit>>20, got, tc.want)
		}
	}
}

// TestArgonParams: under a small memory limit new hashes take OWASP's
// 7 MiB, 5-pass equivalent of 19 MiB, 2 passes; hashes made at either
// are checked at their own parameters whatever the limit.
func TestArgonParams(t *testing.T) {
	for _, tc := range []struct {
		limit        int64
		wantT, wantM uint32
	}{
		{28 << 20, 5, 7168},       // a 64 MiB VM
		{75 << 20, 5, 7168},       // under four hashes of 19 MiB
		{76 << 20, 2, 19456},      // four hashes
		{math.MaxInt64, 2, 19456}, // no limit (a host process)
	} {
		if gt, gm := argonParams(tc.limit); gt != tc.wantT || gm != tc.wantM {
			t.Errorf("argonParams(%d MiB) = t=%d m=%d, want t=%d m=%d", tc.limit>>20, gt, gm, tc.wantT, tc.wantM)
		}
	}
	big, err := hashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	old := debug.SetMemoryLimit(28 << 20)
	small, err := hashPassword("correct horse")
	debug.SetMemoryLimit(old)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(small, "$m=7168,t=5,p=1$") || !strings.Contains(big, "$m=19456,t=2,p=1$") {
		t.Fatalf("hashes %q (28 MiB limit) and %q (none): want m=7168,t=5 and m=19456,t=2", small, big)
	}
	for _, h := range []string{small, big} {
		if !checkPassword(h, "correct horse") || checkPassword(h, "correct horsf") {
			t.Errorf("%s: the right password must pass and only it", h)
		}
		if !validHash(h) {
			t.Errorf("%s: not a valid hash for a replica", h)
		}
	}
}

// TestAuthenticateTogether: logins of one user with one password at once
// (a mail client opening its connections) cost one argon2 check, whatever
// the order they run in; a wrong password among them is refused and costs
// its own check.
func TestAuthenticateTogether(t *testing.T) {
	s := newStore(t)
	if err := s.AddUser(context.Background(), "alice", "correct horse", GitNone); err != nil {
		t.Fatal(err)
	}
	before := passwordChecks.Load()
	const n = 8
	errs := make(chan error, n+1)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			_, err := s.Authenticate("alice", "correct horse")
			errs <- err
		}()
	}
	go func() {
		<-start
		_, err := s.Authenticate("alice", "wrong horse")
		if !errors.Is(err, ErrAuthFailed) {
			errs <- fmt.Errorf("wrong password: %v, want ErrAuthFailed", err)
			return
		}
		errs <- nil
	}()
	close(start)
	for range n + 1 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := passwordChecks.Load() - before; got != 2 {
		t.Errorf("%d argon2 checks for %d logins with the right password and one with a wrong one, want 2", got, n)
	}
}
