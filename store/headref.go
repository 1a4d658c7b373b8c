package store

import (
	"bytes"
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
// name is durable (wal.go), so what this reads is always a whole, durable
// commit.
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
	ref := plumbing.NewBranchReferenceName(branch)
	b, err := os.ReadFile(filepath.Join(s.path, filepath.FromSlash(ref.String())))
	if err == nil {
		b = bytes.TrimSpace(b)
		if hex := string(b); plumbing.IsHash(hex) {
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
