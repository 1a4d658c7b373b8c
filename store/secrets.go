package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Secrets that must not replicate are kept out of the store's branches (see
// the package documentation, "Secrets"):
//
//   - node secrets (the TLS key and certificate, later node keys) are files
//     in the data directory beside the repository (NodeDir), never committed;
//   - password hashes are the tree of CredentialsRef, a reference outside
//     refs/heads whose commit has no parent and is replaced on each change.

// CredentialsRef is the reference that holds the users' password hashes:
// a commit without parents whose tree has one item users/NAME per user,
// holding the user's argon2id hash. Each change replaces the commit, so an
// old hash is unreachable at once and GC prunes it. The git endpoint never
// advertises, serves or accepts it, and Pull, Push and Clone do not carry
// it.
const CredentialsRef = "refs/nymote/credentials"

// nodeDirName is the folder of node secrets in a data directory, beside
// RepoDir.
const nodeDirName = "node"

// NodeDir is the folder that holds this node's secrets: "node" in the folder
// that holds the repository (the data directory, for a store opened with
// OpenData). It is outside the repository, so nothing in it is ever
// committed, cloned or pushed.
func (s *Store) NodeDir() string { return filepath.Join(filepath.Dir(s.path), nodeDirName) }

// ReadNodeFile reads the node secret name (a relative path such as
// "tls/key.pem"). A file that does not exist gives ErrNotExist.
func (s *Store) ReadNodeFile(name string) ([]byte, error) {
	if err := ValidatePath(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(s.NodeDir(), filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: node file %s: %w", name, ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("store: node file %s: %w", name, err)
	}
	return b, nil
}

// WriteNodeFile replaces the node secret name with data, readable by its
// owner only (mode 0600, folders 0700): a temporary file is written and
// synced, renamed into place, and its folder synced, so that after a crash
// the file holds either the old or the new content.
func (s *Store) WriteNodeFile(name string, data []byte) error {
	if err := ValidatePath(name); err != nil {
		return err
	}
	if err := writeSecretFile(filepath.Join(s.NodeDir(), filepath.FromSlash(name)), data, !s.opts.noSync); err != nil {
		return fmt.Errorf("store: node file %s: %w", name, err)
	}
	return nil
}

// writeSecretFile writes path atomically with mode 0600, durably if sync is
// set (the file, then its folder and the folders it created).
func writeSecretFile(path string, data []byte, sync bool) (err error) {
	dir := filepath.Dir(path)
	created, err := mkdirAllSecret(dir)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if !sync {
		return nil
	}
	// The file's folder, and the parent of each folder made here.
	dirs := []string{dir}
	for _, c := range created {
		if p := filepath.Dir(c); p != dir {
			dirs = append(dirs, p)
		}
	}
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// mkdirAllSecret creates dir and its missing parents with mode 0700 and
// returns those it created.
func mkdirAllSecret(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return missing, nil
}

// credentials caches the tree of CredentialsRef: name → password hash, for
// the commit it was read from. It is read again when the reference moves
// (another process may have changed a password).
type credentials struct {
	mu     sync.Mutex
	commit Hash
	hashes map[string]string
}

// credentialsHead reads CredentialsRef, zero when it does not exist.
func (s *Store) credentialsHead() (Hash, error) {
	b, err := os.ReadFile(filepath.Join(s.path, filepath.FromSlash(CredentialsRef)))
	if err == nil {
		h := strings.TrimSpace(string(b))
		if !plumbing.IsHash(h) {
			return Hash{}, fmt.Errorf("store: %s: %q is not a hash: %w", CredentialsRef, h, ErrCorrupt)
		}
		return plumbing.NewHash(h), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Hash{}, fmt.Errorf("store: %s: %w", CredentialsRef, err)
	}
	// Not a loose file: packed (git pack-refs), or none.
	var h Hash
	err = s.readRefs(func(r *git.Repository) error {
		ref, err := r.Storer.Reference(plumbing.ReferenceName(CredentialsRef))
		if err == nil {
			h = ref.Hash()
		}
		return nil
	})
	return h, err
}

// passwordHashes returns the current password hashes (not to be changed by
// the caller).
func (s *Store) passwordHashes() (map[string]string, error) {
	head, err := s.credentialsHead()
	if err != nil {
		return nil, err
	}
	c := &s.creds
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hashes != nil && c.commit == head {
		return c.hashes, nil
	}
	m := map[string]string{}
	if !head.IsZero() {
		sn, err := s.snapshotAt(head)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", CredentialsRef, err)
		}
		ents, err := sn.List(UsersPrefix)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", CredentialsRef, err)
		}
		for _, e := range ents {
			b, err := sn.Read(e.Path)
			if err != nil {
				return nil, fmt.Errorf("store: %s: %w", CredentialsRef, err)
			}
			m[strings.TrimPrefix(e.Path, UsersPrefix+"/")] = strings.TrimSpace(string(b))
		}
	}
	c.commit, c.hashes = head, m
	return m, nil
}

// passwordHash returns name's password hash, "" if it has none.
func (s *Store) passwordHash(name string) (string, error) {
	m, err := s.passwordHashes()
	if err != nil {
		return "", err
	}
	return m[name], nil
}

// setPasswordHashes changes the password hashes (fn edits a copy of them;
// an empty hash removes the user's) and replaces CredentialsRef with a new
// commit without parents, written durably.
func (s *Store) setPasswordHashes(ctx context.Context, msg string, fn func(map[string]string)) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return s.setPasswordHashesLocked(msg, fn)
}

// setPasswordHashesLocked is setPasswordHashes with the writer lock held.
func (s *Store) setPasswordHashesLocked(msg string, fn func(map[string]string)) error {
	cur, err := s.passwordHashes()
	if err != nil {
		return err
	}
	m := make(map[string]string, len(cur)+1)
	for k, v := range cur {
		m[k] = v
	}
	fn(m)
	for k, v := range m {
		if v == "" {
			delete(m, k)
		}
	}
	commit, objs, err := s.encodeCredentials(m, msg)
	if err != nil {
		return err
	}
	if _, err := s.writeObjects(commit, objs); err != nil {
		return fmt.Errorf("store: %s: %w", CredentialsRef, err)
	}
	if err := s.writeRef(plumbing.ReferenceName(CredentialsRef), commit.Hash()); err != nil {
		return err
	}
	s.creds.mu.Lock()
	s.creds.commit, s.creds.hashes = commit.Hash(), m
	s.creds.mu.Unlock()
	return nil
}

// encodeCredentials encodes the credentials commit of hashes (and its
// tree and blobs, in the order to write them).
func (s *Store) encodeCredentials(hashes map[string]string, msg string) (plumbing.EncodedObject, [][]plumbing.EncodedObject, error) {
	names := make([]string, 0, len(hashes))
	for n := range hashes {
		names = append(names, n)
	}
	sort.Strings(names)
	var blobs []plumbing.EncodedObject
	users := &object.Tree{}
	for _, n := range names {
		b := memObject(plumbing.BlobObject, []byte(hashes[n]+"\n"))
		blobs = append(blobs, b)
		users.Entries = append(users.Entries, object.TreeEntry{Name: n, Mode: filemode.Regular, Hash: b.Hash()})
	}
	var levels [][]plumbing.EncodedObject
	var root Hash
	if len(names) > 0 {
		ut := &plumbing.MemoryObject{}
		if err := users.Encode(ut); err != nil {
			return nil, nil, err
		}
		rt := &plumbing.MemoryObject{}
		if err := (&object.Tree{Entries: []object.TreeEntry{{Name: UsersPrefix, Mode: filemode.Dir, Hash: ut.Hash()}}}).Encode(rt); err != nil {
			return nil, nil, err
		}
		levels = [][]plumbing.EncodedObject{blobs, {ut}, {rt}}
		root = rt.Hash()
	}
	return s.encodeCommit(root, levels, nil, CommitOptions{Message: msg})
}

// isSecretRef reports whether a reference holds secrets that the git
// endpoint must neither advertise nor serve.
func isSecretRef(name string) bool { return strings.HasPrefix(name, "refs/nymote/") }
