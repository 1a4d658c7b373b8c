package guard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"time"
)

// ErrBusy is the error of an attempt refused without checking its
// password: its host has failed recently and has too many attempts in
// flight.
// Protocols answer it with their "try again later" (IMAP [UNAVAILABLE],
// SMTP 454, HTTP 429).
var ErrBusy = errors.New("guard: too many login attempts in progress; try again later")

// AuthOptions configure an Auth. Zero values are the defaults named.
type AuthOptions struct {
	// FreeFailures is how many recent failures a host or an account may
	// have before attempts are delayed; zero means 5.
	FreeFailures int
	// BaseDelay is the delay after FreeFailures failures; each further
	// failure doubles it, up to MaxDelay. Zero means 250ms.
	BaseDelay time.Duration
	// MaxDelay bounds the delay of one attempt; zero means 10s. The
	// rightful owner waits at most this long whatever an attacker does.
	MaxDelay time.Duration
	// Forgive is how long it takes to forget one failure; zero means one
	// minute.
	Forgive time.Duration
	// MaxPendingPerHost is how many attempts one host that has failed
	// recently may have waiting or being checked; more are refused with
	// ErrBusy. (A host without failures is not refused: a client's first
	// parallel requests all get their answer.) Zero means 4.
	MaxPendingPerHost int
	// MaxChecks is how many attempts of the whole process may have their
	// passwords checked at once (the store hashes two at a time, the rest
	// wait there); more wait their turn, in order of arrival, rather than
	// be refused, so that the owner is served during an attack from many
	// hosts. Zero means 8.
	MaxChecks int
	// MaxKeys bounds the hosts and the accounts remembered (each); the
	// least recently seen are forgotten first. Zero means 10000.
	MaxKeys int
	// RememberSuccess is how long a password that succeeded skips the
	// delays (it is still checked); zero means one hour, negative never.
	RememberSuccess time.Duration
}

// Auth rate-limits password checks per remote host and per account. One
// Auth serves every protocol of a process, so that guesses over IMAP, SMTP,
// DAV and git add up. It is safe for concurrent use.
type Auth struct {
	o   AuthOptions
	now func() time.Time
	// sleep waits for d or ctx; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
	key   [32]byte // for fingerprints of remembered successes

	checks chan struct{} // a place to check a password

	mu       sync.Mutex
	hosts    map[string]*score
	accounts map[string]*score
	pending  int
	waiting  int                    // for a place in checks
	good     map[[32]byte]time.Time // fingerprint → expiry
}

type score struct {
	failures float64 // decays by one per Forgive
	at       time.Time
	pending  int
}

// NewAuth returns an Auth.
func NewAuth(o AuthOptions) *Auth {
	if o.FreeFailures == 0 {
		o.FreeFailures = 5
	}
	if o.BaseDelay == 0 {
		o.BaseDelay = 250 * time.Millisecond
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = 10 * time.Second
	}
	if o.Forgive == 0 {
		o.Forgive = time.Minute
	}
	if o.MaxPendingPerHost == 0 {
		o.MaxPendingPerHost = 4
	}
	if o.MaxChecks == 0 {
		o.MaxChecks = 8
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = 10000
	}
	if o.RememberSuccess == 0 {
		o.RememberSuccess = time.Hour
	}
	a := &Auth{o: o, now: time.Now, sleep: sleepCtx,
		hosts: map[string]*score{}, accounts: map[string]*score{}, good: map[[32]byte]time.Time{},
		checks: make(chan struct{}, o.MaxChecks)}
	if _, err := rand.Read(a.key[:]); err != nil {
		panic(fmt.Sprintf("guard: no randomness: %v", err))
	}
	return a
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HostKey is the key of a remote address: its IP, an IPv6 address by its
// /64 (one host's share of a network), or the address as given when it has
// no IP.
func HostKey(remote string) string {
	h, _, err := net.SplitHostPort(remote)
	if err != nil {
		h = remote
	}
	ip := net.ParseIP(h)
	if ip == nil {
		return h
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// Check checks one login of account (as the client named it) from remote
// (a net.Addr's String) with verify, which checks the password and returns
// nil when it is right. Before verify runs, the attempt is counted against
// the host and the account and waits the delay their recent failures
// earn; an attempt over a pending cap is refused with ErrBusy without
// checking the password, and one whose ctx ends while it waits returns
// ctx's error. A success uncounts the attempt and remembers the password's
// fingerprint, so that the same login skips the delays for a while.
func (a *Auth) Check(ctx context.Context, remote, account, password string, verify func() error) error {
	host, acct := HostKey(remote), strings.ToLower(account)
	fp := a.fingerprint(acct, password)
	a.mu.Lock()
	now := a.now()
	known := false
	if exp, ok := a.good[fp]; ok {
		known = now.Before(exp)
		if !known {
			delete(a.good, fp)
		}
	}
	hs, as := a.get(a.hosts, host, now), a.get(a.accounts, acct, now)
	if !known && hs.pending >= a.o.MaxPendingPerHost && hs.failures-float64(hs.pending) >= 0.5 {
		hs.failures++ // a refused attempt is a guess all the same
		a.mu.Unlock()
		return ErrBusy
	}
	delay := max(a.delay(hs.failures), a.delay(as.failures))
	if known {
		delay = 0
	}
	// Counted before the password is hashed, so that parallel attempts see
	// each other.
	hs.failures++
	as.failures++
	hs.pending++
	as.pending++
	a.pending++
	a.mu.Unlock()

	err := a.sleep(ctx, delay)
	if err == nil {
		err = a.check(ctx, verify)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	hs.pending--
	as.pending--
	a.pending--
	now = a.now()
	hs.at, as.at = now, now
	if err == nil {
		hs.failures = math.Max(0, hs.failures-1)
		as.failures = math.Max(0, as.failures-1)
		if a.o.RememberSuccess > 0 {
			a.remember(fp, now)
		}
		return nil
	}
	delete(a.good, fp)
	return err
}

// check runs verify when a place among MaxChecks is free.
func (a *Auth) check(ctx context.Context, verify func() error) error {
	select {
	case a.checks <- struct{}{}:
	default:
		a.mu.Lock()
		a.waiting++
		a.mu.Unlock()
		var err error
		select {
		case a.checks <- struct{}{}:
		case <-ctx.Done():
			err = ctx.Err()
		}
		a.mu.Lock()
		a.waiting--
		a.mu.Unlock()
		if err != nil {
			return err
		}
	}
	defer func() { <-a.checks }()
	return verify()
}

// delay is the wait that n recent failures earn.
func (a *Auth) delay(n float64) time.Duration {
	over := int(n) - a.o.FreeFailures
	if over < 0 {
		return 0
	}
	if over > 30 {
		return a.o.MaxDelay
	}
	return min(a.o.MaxDelay, a.o.BaseDelay<<over)
}

// get returns the score of key, decayed to now; a.mu is held.
func (a *Auth) get(m map[string]*score, key string, now time.Time) *score {
	s := m[key]
	if s == nil {
		if len(m) >= a.o.MaxKeys {
			a.prune(m, now)
		}
		s = &score{at: now}
		m[key] = s
		return s
	}
	if el := now.Sub(s.at); el > 0 {
		s.failures = math.Max(0, s.failures-float64(el)/float64(a.o.Forgive))
		s.at = now
	}
	return s
}

// prune makes room in m: it drops the scores that have decayed to nothing
// and, if that is not enough, the least recently seen of the rest that
// have nothing in flight (in flight are at most MaxPending).
func (a *Auth) prune(m map[string]*score, now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, s := range m {
		if s.pending > 0 {
			continue
		}
		if s.failures-float64(now.Sub(s.at))/float64(a.o.Forgive) <= 0 {
			delete(m, k)
			continue
		}
		if oldest == "" || s.at.Before(oldestAt) {
			oldest, oldestAt = k, s.at
		}
	}
	if len(m) >= a.o.MaxKeys && oldest != "" {
		delete(m, oldest)
	}
}

// remember records a successful login's fingerprint; a.mu is held.
func (a *Auth) remember(fp [32]byte, now time.Time) {
	if len(a.good) >= a.o.MaxKeys {
		for k, exp := range a.good {
			if !now.Before(exp) {
				delete(a.good, k)
			}
		}
		for k := range a.good { // still full: forget one at random
			if len(a.good) < a.o.MaxKeys {
				break
			}
			delete(a.good, k)
		}
	}
	a.good[fp] = now.Add(a.o.RememberSuccess)
}

// fingerprint is a keyed hash of a login: the key is random per process,
// so what is kept in memory is no table for guessing passwords offline.
func (a *Auth) fingerprint(account, password string) [32]byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte(account))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var fp [32]byte
	copy(fp[:], m.Sum(nil))
	return fp
}

// Stats are an Auth's counts, for tests and a status page.
type Stats struct {
	// Hosts and Accounts are how many are remembered; Pending how many
	// attempts are in flight, Waiting how many of them wait for a place
	// to be checked.
	Hosts, Accounts, Pending, Waiting int
}

// Stats returns the current counts.
func (a *Auth) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Stats{Hosts: len(a.hosts), Accounts: len(a.accounts), Pending: a.pending, Waiting: a.waiting}
}
