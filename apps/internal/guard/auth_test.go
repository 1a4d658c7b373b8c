package guard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var errWrong = errors.New("wrong password")

// fakeAuth is an Auth on a fake clock: a wait advances the clock and is
// recorded instead of slept.
func fakeAuth(o AuthOptions) (*Auth, *[]time.Duration) {
	a := NewAuth(o)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var waits []time.Duration
	a.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		now = now.Add(d)
		return ctx.Err()
	}
	return a, &waits
}

func verifier(right string) func(pw string) func() error {
	return func(pw string) func() error {
		return func() error {
			if pw != right {
				return errWrong
			}
			return nil
		}
	}
}

func TestHostKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:143", "127.0.0.1"},
		{"[::ffff:10.0.0.1]:1", "10.0.0.1"},
		{"[2001:db8:1:2:3:4:5:6]:993", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:993", "2001:db8:1:2::/64"},
		{"pipe", "pipe"},
	} {
		if got := HostKey(tc.in); got != tc.want {
			t.Errorf("HostKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestAuthSlowsDownNotOut replays M2: failures from one address or against
// one account make later attempts wait longer, up to MaxDelay, and the
// right password is still accepted after the wait, from the attacker's
// address and from another.
func TestAuthSlowsDownNotOut(t *testing.T) {
	check := verifier("right password")
	for _, tc := range []struct {
		name, attacker, owner string
	}{
		{"same address", "192.0.2.1:1000", "192.0.2.1:2000"},
		{"other address", "192.0.2.1:1000", "198.51.100.7:2000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, waits := fakeAuth(AuthOptions{FreeFailures: 3, BaseDelay: time.Second, MaxDelay: 8 * time.Second})
			for i := 0; i < 100; i++ {
				if err := a.Check(context.Background(), tc.attacker, "alice", fmt.Sprint("guess", i), check(fmt.Sprint("guess", i))); !errors.Is(err, errWrong) {
					t.Fatalf("guess %d: %v, want the wrong password's error", i, err)
				}
			}
			want := []time.Duration{0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
			for i, w := range want {
				if (*waits)[i] != w {
					t.Fatalf("waits %v, want them to start %v", (*waits)[:len(want)], want)
				}
			}
			*waits = nil
			if err := a.Check(context.Background(), tc.owner, "ALICE", "right password", check("right password")); err != nil {
				t.Fatalf("owner after 100 failures: %v, want in", err)
			}
			if len(*waits) != 1 || (*waits)[0] > 8*time.Second {
				t.Errorf("owner waited %v, want one wait of at most MaxDelay", *waits)
			}
			// A login that succeeded skips the wait next time.
			*waits = nil
			if err := a.Check(context.Background(), tc.owner, "alice", "right password", check("right password")); err != nil || (*waits)[0] != 0 {
				t.Errorf("owner again: %v after %v, want in at once", err, *waits)
			}
		})
	}
}

// TestAuthCountsBeforeChecking replays H2's bypass: attempts in parallel
// are counted before their passwords are checked, so they see each other's
// delay, and a host's attempts over MaxPendingPerHost are refused without a
// check once it has failed.
func TestAuthCountsBeforeChecking(t *testing.T) {
	a, _ := fakeAuth(AuthOptions{FreeFailures: 2, MaxPendingPerHost: 3})
	a.Check(context.Background(), "192.0.2.1:1", "alice", "x", func() error { return errWrong })
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Check(context.Background(), "192.0.2.1:1", "alice", "x", func() error {
				entered <- struct{}{}
				<-release
				return errWrong
			})
		}()
	}
	for i := 0; i < 3; i++ {
		<-entered
	}
	checked := false
	err := a.Check(context.Background(), "192.0.2.1:2", "bob", "y", func() error { checked = true; return nil })
	if !errors.Is(err, ErrBusy) || checked {
		t.Errorf("4th attempt in flight: %v (checked %v), want ErrBusy unchecked", err, checked)
	}
	// Another host still gets its turn.
	if err := a.Check(context.Background(), "192.0.2.2:1", "bob", "y", func() error { return nil }); err != nil {
		t.Errorf("another host: %v", err)
	}
	close(release)
	wg.Wait()
	if s := a.Stats(); s.Pending != 0 {
		t.Errorf("pending %d after all finished", s.Pending)
	}
	// 4 failures + 1 refusal counted: the next attempt waits.
	var waited time.Duration
	a.sleep = func(ctx context.Context, d time.Duration) error { waited = d; return nil }
	a.Check(context.Background(), "192.0.2.1:3", "carol", "z", func() error { return errWrong })
	if waited == 0 {
		t.Error("an attempt after 4 counted failures did not wait")
	}
}

// TestAuthMaxChecks: no more than MaxChecks passwords are checked at once;
// the next attempt waits its turn (it is not refused) and is checked once
// a place is free.
func TestAuthMaxChecks(t *testing.T) {
	a, _ := fakeAuth(AuthOptions{MaxChecks: 2})
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Check(context.Background(), fmt.Sprintf("192.0.2.%d:1", i+1), "alice", "x", func() error {
				entered <- struct{}{}
				<-release
				return nil
			})
		}()
	}
	<-entered
	<-entered
	var checked atomic.Bool
	third := make(chan error, 1)
	go func() {
		third <- a.Check(context.Background(), "192.0.2.9:1", "bob", "y", func() error { checked.Store(true); return nil })
	}()
	deadline := time.Now().Add(bound)
	for a.Stats().Waiting != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the third attempt never waited for a place")
		}
		time.Sleep(time.Millisecond)
	}
	if checked.Load() {
		t.Fatal("a third password was checked while two were")
	}
	close(release)
	if err := <-third; err != nil || !checked.Load() {
		t.Errorf("third attempt: %v (checked %v), want checked and in", err, checked.Load())
	}
	wg.Wait()
}

// TestAuthForgetsAndBounds: failures decay with time, and the maps stay
// within MaxKeys however many hosts and accounts are tried.
func TestAuthForgetsAndBounds(t *testing.T) {
	a, waits := fakeAuth(AuthOptions{FreeFailures: 1, MaxKeys: 50, Forgive: time.Minute})
	for i := 0; i < 1000; i++ {
		a.Check(context.Background(), fmt.Sprintf("10.0.%d.%d:1", i/250, i%250), fmt.Sprint("user", i), "x", func() error { return errWrong })
	}
	if s := a.Stats(); s.Hosts > 50 || s.Accounts > 50 {
		t.Errorf("remembered %d hosts, %d accounts, want at most 50 each", s.Hosts, s.Accounts)
	}
	for i := 0; i < 5; i++ {
		a.Check(context.Background(), "192.0.2.1:1", "alice", "x", func() error { return errWrong })
	}
	// An hour later everything is forgiven.
	a.sleep(context.Background(), time.Hour)
	*waits = nil
	a.Check(context.Background(), "192.0.2.1:1", "alice", "x", func() error { return nil })
	if (*waits)[0] != 0 {
		t.Errorf("waited %v an hour after the failures, want 0", (*waits)[0])
	}
}

// TestAuthContext: an attempt whose client goes away while it waits ends
// with the context's error, unchecked.
func TestAuthContext(t *testing.T) {
	a := NewAuth(AuthOptions{FreeFailures: 1, BaseDelay: time.Hour, MaxDelay: time.Hour})
	a.Check(context.Background(), "192.0.2.1:1", "alice", "x", func() error { return errWrong })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	checked := false
	if err := a.Check(ctx, "192.0.2.1:1", "alice", "y", func() error { checked = true; return nil }); !errors.Is(err, context.Canceled) || checked {
		t.Errorf("got %v (checked %v), want context.Canceled unchecked", err, checked)
	}
}
