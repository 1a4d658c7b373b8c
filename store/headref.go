package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing"
)

// BranchHead returns the commit that branch ("" means DefaultBranch) points
// at, zero when the branch does not exist. It is Resolve for a branch name
// without going through go-git's reference storage: the branch file is
// read directly (one open and read), which servers that look up the head
// on every request need. A branch that is not a loose file (packed
// references) is read the ordinary way.
//
// Branch files are replaced by renaming, and only after the commit they
// name is durable (wal.go) and its objects are written (pending.go), so
// what this reads is always a whole, durable commit; a commit whose files
// are still being written is answered from memory.
func (s *Store) BranchHead(branch string) (Hash, error) {
	if branch == "" {
		branch = DefaultBranch
	}
	if err := validateBranch(branch); err != nil {
		return Hash{}, err
	}
	if s.isClosed() {
		return Hash{}, ErrClosed
	}
	if s.pend != nil {
		if h, ok := s.pend.head(branch); ok {
			return h, nil // logged, its branch file not written yet
		}
	}
	ref := plumbing.NewBranchReferenceName(branch)
	if f, err := os.Open(filepath.Join(s.path, filepath.FromSlash(ref.String()))); err == nil {
		// A branch file is 41 bytes: one read (os.ReadFile would also
		// stat the file and read again to see its end). Anything else
		// is left to go-git.
		var buf [64]byte
		n, err := f.Read(buf[:])
		f.Close()
		if hex := string(bytes.TrimSpace(buf[:n])); err == nil && plumbing.IsHash(hex) {
			return plumbing.NewHash(hex), nil
		}
	}
	return s.head(branch)
}

// UserRecordPath is the path of the item that holds a user's record (name,
// git access and password hash). Its blob hash changes whenever the user's
// password or access changes, so a server may keep a successful
// Authenticate for as long as that hash stays the same.
func UserRecordPath(name string) string { return userPath(name) }

// SnapshotOf returns a view of commit h (zero: the empty store), without
// resolving a revision: for callers that hold a commit hash from
// BranchHead, Update or a Snapshot.
func (s *Store) SnapshotOf(h Hash) (*Snapshot, error) { return s.snapshotAt(h) }

// Authenticate is Store.Authenticate against the users of this snapshot:
// a server that already holds a snapshot of the head checks a password
// without resolving the head again. It shares the store's cache of
// recent successes.
func (sn *Snapshot) Authenticate(name, password string) (User, error) {
	s := sn.s
	rec, err := getUser(sn.Read, name)
	if errors.Is(err, ErrCorrupt) || (err != nil && !errors.Is(err, ErrNotExist) && ValidateUserName(name) == nil) {
		return User{}, err
	}
	if err != nil {
		checkPassword(dummyHash(), password)
		return User{}, ErrAuthFailed
	}
	key := sha256.Sum256([]byte(name + "\x00" + password + "\x00" + rec.Hash))
	if s.authc.ok(name, key) {
		return rec.User, nil
	}
	if !checkPassword(rec.Hash, password) {
		return User{}, ErrAuthFailed
	}
	s.authc.remember(name, key)
	return rec.User, nil
}
