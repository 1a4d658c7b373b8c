package dav

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/nymote/nymote/store"
)

// authCache remembers successful logins for the version of the user's
// record they were checked against, so that a request on a keep-alive
// connection costs a hash and a map lookup, not an argon2 check or a read
// of the record. A changed password or access, or a deleted user, changes
// the record's blob hash, which misses the cache.
type authCache struct {
	mu sync.Mutex
	m  map[[32]byte]time.Time // key → expiry
}

// authTTL bounds how long a success is remembered, as the store's own
// cache does.
const authTTL = 5 * time.Minute

func authKey(name, password string, record store.Hash) [32]byte {
	return sha256.Sum256([]byte(name + "\x00" + password + "\x00" + record.String()))
}

// authenticate checks a user's password against the users of view v.
func (h *Handler) authenticate(v *view, name, password string) error {
	rec, err := v.Stat(store.UserRecordPath(name))
	var key [32]byte
	if err == nil && !rec.Dir {
		key = authKey(name, password, rec.Hash)
		h.auth.mu.Lock()
		exp, ok := h.auth.m[key]
		h.auth.mu.Unlock()
		if ok && time.Now().Before(exp) {
			return nil
		}
	}
	sn, err := v.snapshot()
	if err != nil {
		return err
	}
	if _, err := sn.Authenticate(name, password); err != nil {
		return err
	}
	if rec.Hash.IsZero() {
		return nil
	}
	h.auth.mu.Lock()
	if h.auth.m == nil || len(h.auth.m) >= 1000 {
		h.auth.m = map[[32]byte]time.Time{}
	}
	h.auth.m[key] = time.Now().Add(authTTL)
	h.auth.mu.Unlock()
	return nil
}
