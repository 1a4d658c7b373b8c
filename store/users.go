package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// UsersPrefix is the folder that holds the store's users, one item each.
const UsersPrefix = "users"

// GitAccess is what a user may do over git smart HTTP. Git access covers the
// whole store, every user's data included, so grant it only to the store's
// owner.
type GitAccess string

// Git access levels.
const (
	GitNone  GitAccess = "none"
	GitRead  GitAccess = "read"
	GitWrite GitAccess = "write"
)

// ParseGitAccess parses "none", "read" or "write".
func ParseGitAccess(s string) (GitAccess, error) {
	switch a := GitAccess(s); a {
	case GitNone, GitRead, GitWrite:
		return a, nil
	}
	return "", fmt.Errorf("store: git access %q: want none, read or write", s)
}

// User is one of the store's users, as listed. The password hash is never
// returned.
type User struct {
	Name    string    `json:"name"`
	Git     GitAccess `json:"git"`
	Created time.Time `json:"created"`
	// Quota are the limits the apps hold the user's data to; zero fields
	// mean no limit. Records written before quotas existed have none.
	Quota Quota `json:"quota,omitzero"`
	// AppPassword is, on a User that AuthenticateClient returned, the name
	// of the app password that logged in ("" for the user's own
	// password). It is never stored.
	AppPassword string `json:"-"`
}

// Quota is a user's limits, plain numbers that the store keeps and the
// apps enforce (the mail app on its messages, RFC 9208's STORAGE and
// MESSAGE resources). Zero means no limit.
type Quota struct {
	// StorageKiB bounds the size of the user's data, in units of 1024
	// bytes.
	StorageKiB uint64 `json:"storage_kib,omitempty"`
	// Messages bounds the number of the user's items (for mail: messages).
	Messages uint64 `json:"messages,omitempty"`
}

// MaxQuota bounds each quota limit, so that a limit in KiB times 1024
// never overflows an int64 of bytes (2^53 bytes is 8 PiB).
const MaxQuota = 1 << 43

// Validate refuses limits above MaxQuota.
func (q Quota) Validate() error {
	if q.StorageKiB > MaxQuota {
		return fmt.Errorf("store: quota: storage %d KiB: at most %d", q.StorageKiB, uint64(MaxQuota))
	}
	if q.Messages > MaxQuota {
		return fmt.Errorf("store: quota: %d messages: at most %d", q.Messages, uint64(MaxQuota))
	}
	return nil
}

// userRecord is a user's item on the branches (users/NAME). It holds no
// secret: the password hash is in CredentialsRef, and Password only names
// which hash is current (passwordID), so that the record, and the history,
// change when the password does.
type userRecord struct {
	User
	Password string `json:"password,omitempty"`
	// PasswordSet is when Password was set: replicas keep the password
	// set last (MergeUserRecords).
	PasswordSet time.Time `json:"password_set,omitzero"`
	// AppPasswords are the user's app passwords (their hashes are in
	// CredentialsRef, under appKey).
	AppPasswords []AppPassword `json:"app_passwords,omitempty"`
	// Hash is read from records written before the hashes left the
	// branches (see upgrade.go), and never written.
	Hash string `json:"hash,omitempty"`
}

// passwordID names a password hash without revealing anything about the
// password: a digest of the whole encoded hash, whose random salt an
// attacker would need to test a guess.
func passwordID(hash string) string {
	if hash == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("nymote password id\x00" + hash))
	return hex.EncodeToString(sum[:8])
}

// ErrAuthFailed: wrong user name or password. It does not say which.
var ErrAuthFailed = errors.New("store: authentication failed")

// Password hashing with argon2id, at the parameters OWASP recommends as a
// minimum (19 MiB, 2 passes, 1 thread): small enough for a 512 MiB board.
// Where the Go memory limit is under four such hashes (a VM under about
// 110 MiB: the appliance sets the limit from the machine's memory), new
// hashes take OWASP's equivalent of less memory and more passes (7 MiB, 5
// passes): a 64 MiB VM has a 28 MiB limit, and a 19 MiB check beside a
// loaded mailbox index went past it. A hash keeps its parameters (they
// are in it): one made elsewhere is checked at its own cost. Checks are
// few besides: one at a time in a small VM (hashing), one for the logins
// of a user with one password at once, and a success is remembered for a
// while (Store.checkCached).
const (
	argonTime        = 2
	argonMemory      = 19 * 1024
	argonTimeSmall   = 5
	argonMemorySmall = 7 * 1024
	argonThreads     = 1
	argonKeyLen      = 32
	minPassword      = 8
	maxPassword      = 1024
)

var userNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidateUserName accepts 1 to 64 characters of lower-case letters, digits,
// '.', '_' and '-', starting with a letter or digit.
func ValidateUserName(name string) error {
	if !userNameRE.MatchString(name) {
		return fmt.Errorf("store: user name %q: use 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

func validatePassword(pw string) error {
	switch {
	case len(pw) < minPassword:
		return fmt.Errorf("store: password: at least %d characters, please", minPassword)
	case len(pw) > maxPassword:
		return fmt.Errorf("store: password: at most %d bytes", maxPassword)
	case strings.ContainsAny(pw, "\x00\n\r"):
		return errors.New("store: password: must not contain NUL or line breaks")
	}
	return nil
}

func userPath(name string) string { return UsersPrefix + "/" + name }

func hashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	t, m := argonParams(debug.SetMemoryLimit(-1))
	h := hashing()
	h <- struct{}{}
	key := argon2.IDKey([]byte(pw), salt, t, m, argonThreads, argonKeyLen)
	<-h
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, m, t, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// argonParams returns the passes and the memory (KiB) of a new hash under
// a Go memory limit of limit bytes.
func argonParams(limit int64) (t, m uint32) {
	if limit < 4*argonMemory*1024 {
		return argonTimeSmall, argonMemorySmall
	}
	return argonTime, argonMemory
}

// hashing bounds the password checks that run at once in the process: each
// holds argon2's 19 MiB, so parallel logins would otherwise grow the
// process by 19 MiB each (H2 of issue 21: 50 wrong logins at once, 1 GB).
// Callers queue for a place; the services bound how many may queue (see
// apps/internal/guard). Two run at once, or one where the Go memory limit
// (the appliance sets it from the machine's memory) is under four hashes:
// in a 64 MiB VM (a 37 MiB limit) two at once took the kernel down ("System
// is deadlocked on memory", TestBootMail64MiB with 8 clients logging in).
var hashing = sync.OnceValue(func() chan struct{} {
	return make(chan struct{}, hashSlots(debug.SetMemoryLimit(-1)))
})

// hashSlots is how many password hashes may run at once under a Go memory
// limit of limit bytes.
func hashSlots(limit int64) int {
	if limit < 4*argonMemory*1024 {
		return 1
	}
	return 2
}

// passwordChecks counts the argon2 computations of checkPassword.
var passwordChecks atomic.Int64

func checkPassword(encoded, pw string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	if m > 4*argonMemory || t > 4*argonTime || p > 4 {
		return false // a record not written by hashPassword (a push) may not cost more
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	passwordChecks.Add(1)
	h := hashing()
	h <- struct{}{}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	<-h
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when the user does not exist, so that a
// wrong name takes as long as a wrong password.
var dummyHash = sync.OnceValue(func() string {
	h, _ := hashPassword("not a password of anyone")
	return h
})

// AddUser adds a user with a password and git access (zero means GitNone).
func (s *Store) AddUser(ctx context.Context, name, password string, access GitAccess) error {
	if err := ValidateUserName(name); err != nil {
		return err
	}
	if err := validatePassword(password); err != nil {
		return err
	}
	if access == "" {
		access = GitNone
	}
	if _, err := ParseGitAccess(string(access)); err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	_, err = s.Update(ctx, CommitOptions{Message: "user add " + name}, func(tx *Tx) error {
		if ok, err := tx.Exists(userPath(name)); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("store: user %s: %w", name, ErrExists)
		}
		rec := userRecord{User: User{Name: name, Git: access, Created: time.Now().UTC().Truncate(time.Second)}, Password: passwordID(hash), PasswordSet: passwordClock()}
		if err := putUser(tx, rec); err != nil {
			return err
		}
		// The writer lock is held: the hash and the record change
		// together for every other writer.
		return s.setPasswordHashesLocked("credentials: user add "+name, func(m map[string]string) { m[name] = hash })
	})
	if err == nil {
		s.authc.forget(name)
	}
	return err
}

func putUser(tx *Tx, u userRecord) error {
	u.Hash = ""
	b, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return err
	}
	return tx.Put(userPath(u.Name), append(b, '\n'))
}

func getUser(get func(string) ([]byte, error), name string) (userRecord, error) {
	if err := ValidateUserName(name); err != nil {
		return userRecord{}, err
	}
	b, err := get(userPath(name))
	if errors.Is(err, ErrNotExist) {
		return userRecord{}, fmt.Errorf("store: user %s: %w", name, ErrNotExist)
	}
	if err != nil {
		return userRecord{}, err
	}
	var u userRecord
	if err := json.Unmarshal(b, &u); err != nil {
		return userRecord{}, fmt.Errorf("store: user %s: %s: %v: %w", name, userPath(name), err, ErrCorrupt)
	}
	return u, nil
}

// modifyUser changes a user's record in one commit.
// A new hash (not "") replaces the user's password hash in
// CredentialsRef, in the same writer lock.
//
// The previous hash, if the record named it, stays as NAME+prev until the
// record is committed (see credsync.go): a login checks the hash that the
// record names, so a crash between the two leaves the old password in force.
func (s *Store) modifyUser(ctx context.Context, name, msg, hash string, fn func(*userRecord) error) error {
	_, err := s.Update(ctx, CommitOptions{Message: msg}, func(tx *Tx) error {
		u, err := getUser(tx.Get, name)
		if err != nil {
			return err
		}
		was := u.Password
		if err := fn(&u); err != nil {
			return err
		}
		if err := putUser(tx, u); err != nil {
			return err
		}
		if hash == "" {
			return nil
		}
		return s.setPasswordHashesLocked("credentials: "+msg, func(m map[string]string) {
			delete(m, name+prevSuffix)
			if old := m[name]; old != "" && passwordID(old) == was {
				m[name+prevSuffix] = old
			}
			m[name] = hash
		})
	})
	if err == nil {
		s.authc.forget(name)
	}
	if err == nil && hash != "" {
		// The record is committed: the previous hash goes.
		err = s.setPasswordHashes(ctx, "credentials: "+msg+" (committed)", func(m map[string]string) { delete(m, name+prevSuffix) })
	}
	return err
}

// SetPassword replaces a user's password.
func (s *Store) SetPassword(ctx context.Context, name, password string) error {
	if err := validatePassword(password); err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	return s.modifyUser(ctx, name, "user passwd "+name, hash, func(u *userRecord) error {
		u.Password = passwordID(hash)
		u.PasswordSet = passwordClock()
		return nil
	})
}

// SetGitAccess changes what a user may do over git smart HTTP.
func (s *Store) SetGitAccess(ctx context.Context, name string, access GitAccess) error {
	if _, err := ParseGitAccess(string(access)); err != nil {
		return err
	}
	return s.modifyUser(ctx, name, "user git "+name+" "+string(access), "", func(u *userRecord) error {
		u.Git = access
		return nil
	})
}

// SetQuota replaces a user's quota (zero fields: no limit).
func (s *Store) SetQuota(ctx context.Context, name string, q Quota) error {
	if err := q.Validate(); err != nil {
		return err
	}
	msg := fmt.Sprintf("user quota %s storage=%dKiB messages=%d", name, q.StorageKiB, q.Messages)
	return s.modifyUser(ctx, name, msg, "", func(u *userRecord) error {
		u.Quota = q
		return nil
	})
}

// DeleteUser removes a user (not the user's data, which apps own).
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	_, err := s.Update(ctx, CommitOptions{Message: "user del " + name}, func(tx *Tx) error {
		if _, err := getUser(tx.Get, name); err != nil {
			return err
		}
		if err := tx.Delete(userPath(name)); err != nil {
			return err
		}
		return s.setPasswordHashesLocked("credentials: user del "+name, func(m map[string]string) {
			delete(m, name)
			delete(m, name+prevSuffix)
			for k := range m {
				if strings.HasPrefix(k, name+appKeySep) {
					delete(m, k)
				}
			}
		})
	})
	if err == nil {
		s.authc.forget(name)
	}
	return err
}

// Users lists the users, sorted by name.
func (s *Store) Users() ([]User, error) {
	sn, err := s.Snapshot("")
	if err != nil {
		return nil, err
	}
	ents, err := sn.ReadDir(UsersPrefix)
	if err != nil {
		return nil, err
	}
	var out []User
	for _, e := range ents {
		if e.Dir {
			continue
		}
		u, err := getUser(sn.Read, Unshard(e.Path))
		if err != nil {
			return nil, err
		}
		out = append(out, u.User)
	}
	return out, nil
}

// LookupUser returns one user.
func (s *Store) LookupUser(name string) (User, error) {
	sn, err := s.Snapshot("")
	if err != nil {
		return User{}, err
	}
	u, err := getUser(sn.Read, name)
	return u.User, err
}

// Authenticate checks a user's password. It fails with ErrAuthFailed for a
// wrong name or password alike, in the same time. Successful checks are
// remembered for a few minutes (by a hash of name, password and stored hash)
// so that clients that authenticate every request stay fast.
func (s *Store) Authenticate(name, password string) (User, error) {
	sn, err := s.Snapshot("")
	if err != nil {
		return User{}, err
	}
	return sn.Authenticate(name, password)
}

const authCacheTTL = 5 * time.Minute

type authCache struct {
	mu sync.Mutex
	m  map[[32]byte]authEntry
}

type authEntry struct {
	user    string
	expires time.Time
}

func (c *authCache) ok(user string, key [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	return ok && e.user == user && time.Now().Before(e.expires)
}

func (c *authCache) remember(user string, key [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 1000 {
		c.m = map[[32]byte]authEntry{}
	}
	c.m[key] = authEntry{user: user, expires: time.Now().Add(authCacheTTL)}
}

func (c *authCache) forget(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if e.user == user {
			delete(c.m, k)
		}
	}
}
