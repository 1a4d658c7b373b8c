package store

import (
	"crypto/sha256"
	"errors"
)

// BranchHead returns the commit that branch ("" means DefaultBranch) points
// at, zero when the branch does not exist: Resolve for a branch name
// without going through go-git's reference storage, which servers that
// look up the head on every request need (see head).
func (s *Store) BranchHead(branch string) (Hash, error) {
	if branch == "" {
		branch = DefaultBranch
	}
	return s.head(branch)
}

// UserRecordPath is the path of the item that holds a user's record (name,
// git access and which password is current; the hash itself is in
// CredentialsRef). Its blob hash changes whenever the user's password or
// access changes, so a server may keep a successful
// Authenticate for as long as that hash stays the same.
func UserRecordPath(name string) string { return userPath(name) }

// SnapshotOf returns a view of commit h (zero: the empty store), without
// resolving a revision: for callers that hold a commit hash from
// BranchHead, Update or a Snapshot.
func (s *Store) SnapshotOf(h Hash) (*Snapshot, error) { return s.snapshotAt(h) }

// Authenticate is Store.Authenticate against the users of this snapshot:
// a server that already holds a snapshot of the head checks a password
// without resolving the head again. The user must exist in the snapshot;
// the password is checked against the current hash (CredentialsRef), since
// the history holds none. It shares the store's cache of recent successes.
func (sn *Snapshot) Authenticate(name, password string) (User, error) {
	return sn.authenticate(name, password, false)
}

// AuthenticateClient is Store.AuthenticateClient against the users of this
// snapshot (see Snapshot.Authenticate).
func (sn *Snapshot) AuthenticateClient(name, password string) (User, error) {
	return sn.authenticate(name, password, true)
}

func (sn *Snapshot) authenticate(name, password string, apps bool) (User, error) {
	s := sn.s
	rec, err := getUser(sn.Read, name)
	if errors.Is(err, ErrCorrupt) || (err != nil && !errors.Is(err, ErrNotExist) && ValidateUserName(name) == nil) {
		return User{}, err
	}
	if err != nil {
		checkPassword(dummyHash(), password)
		return User{}, ErrAuthFailed
	}
	key, app := name, ""
	if apps {
		// An app password names itself (its first group is its ID), so
		// that a login costs one hash check however many app passwords
		// the user has.
		if id, ok := appPasswordID(password); ok {
			for _, a := range rec.AppPasswords {
				if a.ID == id {
					key, app = appKey(name, id), a.Name
				}
			}
		}
	}
	var hash string
	hashes, err := s.passwordHashes()
	if err != nil {
		return User{}, err
	}
	if key == name {
		// Only the hash the record names (see credsync.go): a password
		// changed on another node stops working here when its record
		// arrives.
		hash = userHash(hashes, rec)
		if hash == "" && rec.Password != "" {
			// The snapshot may be older than the password (changed
			// here since): the head's record decides.
			if hsn, err := s.Snapshot(""); err == nil && hsn.Commit() != sn.Commit() {
				if hrec, err := getUser(hsn.Read, name); err == nil {
					hash = userHash(hashes, hrec)
				}
			}
		}
	} else {
		hash = hashes[key]
	}
	if hash == "" {
		// A user without a password here (a clone or a replica that has
		// not got the credentials): nobody logs in as them. A hash in
		// the record itself (from a store of an earlier version) is
		// not used: Open moves those out (upgrade.go).
		checkPassword(dummyHash(), password)
		return User{}, ErrAuthFailed
	}
	if !s.checkCached(name, password, hash) {
		return User{}, ErrAuthFailed
	}
	u := rec.User
	u.AppPassword = app
	return u, nil
}

// checkCached checks password against hash, remembering a success for
// name in the store's cache (keyed by name, password and hash).
func (s *Store) checkCached(name, password, hash string) bool {
	key := sha256.Sum256([]byte(name + "\x00" + password + "\x00" + hash))
	if s.authc.ok(name, key) {
		return true
	}
	// Logins of the same user with the same password at once (a mail
	// client opening its connections, eight DAV requests) share one
	// check: each would hold argon2's 19 MiB.
	ok, _, _ := s.authFlight.Do(string(key[:]), func() (any, error) {
		if s.authc.ok(name, key) { // a flight that ended since
			return true, nil
		}
		if !checkPassword(hash, password) {
			return false, nil
		}
		s.authc.remember(name, key)
		return true, nil
	})
	return ok.(bool)
}
