package store

import (
	"bufio"
	"compress/zlib"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ValidateFunc checks one item that a commit from outside (a git push)
// writes: its path and its whole content. read reads another item of the
// same commit (ErrNotExist if there is none), for what an item's meaning
// depends on, such as the collection it is in. An error refuses the
// commit; its text is shown to the person pushing, so it should say what
// is wrong ("the vCard has no FN").
type ValidateFunc func(path string, data []byte, read func(path string) ([]byte, error)) error

// MaxPushItemBytes is the largest item a push may write.
const MaxPushItemBytes = 64 << 20

// maxPushItem is MaxPushItemBytes, lowered by tests.
var maxPushItem int64 = MaxPushItemBytes

type validatorRegistry struct {
	mu  sync.RWMutex
	fns map[string]ValidateFunc
}

// SetValidateFunc makes fn check the items under prefix (the longest
// registered prefix wins) that a git push writes, as the app's own
// protocol checks what its clients write: apps register one beside their
// merge function (SetMergeFunc). A nil fn removes the prefix's function.
// Items under no prefix are checked only for their path and size. The
// store checks its own users/ records itself.
func (s *Store) SetValidateFunc(prefix string, fn ValidateFunc) {
	prefix = trimSlash(prefix)
	s.validators.mu.Lock()
	defer s.validators.mu.Unlock()
	if s.validators.fns == nil {
		s.validators.fns = map[string]ValidateFunc{}
	}
	if fn == nil {
		delete(s.validators.fns, prefix)
		return
	}
	s.validators.fns[prefix] = fn
}

func (s *Store) validateFunc(path string) ValidateFunc {
	if path == UsersPrefix || strings.HasPrefix(path, UsersPrefix+"/") {
		return validateUserRecord
	}
	s.validators.mu.RLock()
	defer s.validators.mu.RUnlock()
	best, bestLen := ValidateFunc(nil), -1
	for p, fn := range s.validators.fns {
		if (p == "" || path == p || strings.HasPrefix(path, p+"/")) && len(p) > bestLen {
			best, bestLen = fn, len(p)
		}
	}
	return best
}

// validateUserRecord accepts a user record (users/NAME) without a
// password hash: hashes live in CredentialsRef only.
func validateUserRecord(p string, data []byte, _ func(string) ([]byte, error)) error {
	name := strings.TrimPrefix(p, UsersPrefix+"/")
	if err := ValidateUserName(name); err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("not a user record: %v", err)
	}
	if _, ok := raw["hash"]; ok {
		return errors.New("user records hold no password hash (set passwords with nymote user passwd)")
	}
	var u userRecord
	if err := json.Unmarshal(data, &u); err != nil {
		return fmt.Errorf("not a user record: %v", err)
	}
	if u.Name != name {
		return fmt.Errorf("the record names user %q", u.Name)
	}
	if _, err := ParseGitAccess(string(u.Git)); err != nil {
		return err
	}
	for _, a := range u.AppPasswords {
		if err := ValidateAppPasswordName(a.Name); err != nil {
			return err
		}
		if len(a.ID) != appIDLen || strings.Trim(a.ID, appAlphabet) != "" {
			return fmt.Errorf("app password %q: ID %q is not one the store makes", a.Name, a.ID)
		}
	}
	return u.Quota.Validate()
}

// ValidationError says which item of which commit a validation refused.
type ValidationError struct {
	Commit Hash
	Path   string
	Err    error
}

func (e *ValidationError) Error() string {
	p := e.Path
	if len(p) > 120 {
		p = p[:100] + "..."
	}
	return fmt.Sprintf("%s (commit %s): %v", p, short(e.Commit), e.Err)
}

func (e *ValidationError) Unwrap() error { return e.Err }

// validateNew checks every commit that head reaches and that no branch
// reaches yet (the commits a push brings): every item each one changes
// against its first parent (or adds, for a commit without parents) must
// have a valid path (ValidatePath), be a plain file or folder, be at most
// MaxPushItemBytes, and pass the validator of its prefix. The work is
// proportional to what the push changes.
func (s *Store) validateNew(head Hash) error {
	branches, err := s.Branches()
	if err != nil {
		return err
	}
	var old []Hash
	for _, b := range branches {
		old = append(old, b.Head)
	}
	return s.readObjs(func(o *objReader) error {
		commits, _, err := newCommitsSince(o, []Hash{head}, old, 0)
		if err != nil {
			return err
		}
		checked := map[string]bool{}
		for _, c := range commits {
			parent := Hash{}
			if len(c.parents) > 0 {
				if parent, err = o.commitTree(c.parents[0]); err != nil {
					return fmt.Errorf("commit %s: parent %s: %w", short(c.hash), short(c.parents[0]), err)
				}
			}
			if err := s.validateTree(o, c, parent, c.tree, "", checked); err != nil {
				return err
			}
		}
		return nil
	})
}

type commitNode struct {
	hash, tree Hash
	parents    []Hash
	when       int64
}

func readCommit(o *objReader, h Hash) (commitNode, error) {
	if o.trees != nil {
		if n, ok := o.trees.commits.get(h); ok {
			return n, nil
		}
	}
	n, err := decodeCommit(o, h)
	if err == nil && o.trees != nil {
		o.trees.commits.put(h, n)
	}
	return n, err
}

// decodeCommit reads and decodes commit h.
func decodeCommit(o *objReader, h Hash) (commitNode, error) {
	data, err := o.readAs(h, plumbing.CommitObject)
	if err != nil {
		return commitNode{}, fmt.Errorf("commit %s: %w", h, err)
	}
	return parseCommit(h, data)
}

// parseCommit decodes the content of commit h.
func parseCommit(h Hash, data []byte) (commitNode, error) {
	c := &object.Commit{}
	if err := c.Decode(memObject(plumbing.CommitObject, data)); err != nil {
		return commitNode{}, fmt.Errorf("commit %s: %w", h, err)
	}
	return commitNode{hash: h, tree: c.TreeHash, parents: c.ParentHashes, when: c.Committer.When.Unix()}, nil
}

// pqueue is a priority queue for container/heap: the least by less first.
type pqueue[T any] struct {
	items []T
	less  func(a, b T) bool
}

func (q *pqueue[T]) Len() int           { return len(q.items) }
func (q *pqueue[T]) Less(i, j int) bool { return q.less(q.items[i], q.items[j]) }
func (q *pqueue[T]) Swap(i, j int)      { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *pqueue[T]) Push(x any)         { q.items = append(q.items, x.(T)) }
func (q *pqueue[T]) Pop() any {
	x := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	return x
}

// validateTree checks what tree b changes against tree a (zero: empty)
// under dir. checked holds the trees already found valid as a whole at a
// path (the same tree elsewhere means other things).
func (s *Store) validateTree(o *objReader, c commitNode, a, b Hash, dir string, checked map[string]bool) error {
	key := dir + "\x00" + b.String()
	if a == b || b.IsZero() || checked[key] {
		return nil
	}
	bad := func(p string, err error) error { return &ValidationError{Commit: c.hash, Path: p, Err: err} }
	tb, err := o.tree(b)
	if err != nil {
		return bad(dir, err)
	}
	var ta *tree
	if !a.IsZero() {
		if ta, err = o.tree(a); err != nil {
			return bad(dir, err)
		}
	}
	// Trees with their names in order (as the store's are) are walked
	// side by side; others are looked up by name.
	walk := ta != nil && ta.namesSorted() && tb.namesSorted()
	j := 0
	for _, e := range tb.entries {
		var was object.TreeEntry
		switch {
		case walk:
			for j < len(ta.entries) && ta.entries[j].Name < e.Name {
				j++
			}
			if j < len(ta.entries) && ta.entries[j].Name == e.Name {
				was = ta.entries[j]
			}
		case ta != nil:
			was, _ = ta.find(e.Name)
		}
		if was.Hash == e.Hash && was.Mode == e.Mode {
			continue
		}
		p := joinPath(dir, e.Name)
		if strings.Contains(e.Name, "/") || e.Name == "" {
			return bad(p, fmt.Errorf("%w: tree entry name %q", ErrInvalidPath, e.Name))
		}
		if why := pathProblem(p); why != "" {
			return bad(p, fmt.Errorf("%w: %s", ErrInvalidPath, why))
		}
		switch e.Mode {
		case filemode.Dir:
			var from Hash
			if was.Mode == filemode.Dir {
				from = was.Hash
			}
			if err := s.validateTree(o, c, from, e.Hash, p, checked); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			if err := s.validateItem(o, c.tree, p, e.Hash); err != nil {
				return bad(p, err)
			}
		default:
			return bad(p, fmt.Errorf("a %s; the store holds only files and folders", modeName(e.Mode)))
		}
	}
	checked[key] = true
	return nil
}

func modeName(m filemode.FileMode) string {
	switch m {
	case filemode.Symlink:
		return "symbolic link"
	case filemode.Submodule:
		return "submodule"
	}
	return "file of mode " + m.String()
}

// validateItem checks one blob at path p. A pushed object is loose (the
// receiving side unpacks pushes into loose objects), so its size is read
// from its header before its content is; an object that is packed was in
// the store already, within its limits.
func (s *Store) validateItem(o *objReader, root Hash, p string, h Hash) error {
	// Its size, whatever the prefix: as the push brought it, or from
	// the object's header (a pushed pack's entry, or a loose object)
	// without reading the content, which only a validator needs.
	data, fresh := o.trees.fresh.take(h)
	n, ok := int64(len(data)), fresh
	if !fresh {
		var err error
		if n, ok, err = o.size(h); err != nil {
			return err
		}
	}
	if ok && n > maxPushItem {
		return fmt.Errorf("%d bytes; the store takes items of at most %d bytes", n, maxPushItem)
	}
	fn := s.validateFunc(p)
	if fn == nil {
		return nil
	}
	if !fresh {
		var err error
		if data, err = o.readAs(h, plumbing.BlobObject); err != nil {
			return err
		}
	}
	read := func(q string) ([]byte, error) {
		e, ok, err := o.entry(root, q)
		if err != nil {
			return nil, err
		}
		if !ok || e.Mode == filemode.Dir {
			return nil, fmt.Errorf("store: %s: %w", q, ErrNotExist)
		}
		if n, ok, err := o.size(e.Hash); err != nil {
			return nil, err
		} else if ok && n > maxPushItem {
			return nil, fmt.Errorf("store: %s: %d bytes, too large", q, n)
		}
		return o.readAs(e.Hash, plumbing.BlobObject)
	}
	return fn(p, data, read)
}

// looseSize reads the size in the header of loose object h, without
// reading its content; ok is false when the object is not loose.
func looseSize(objDir string, h Hash) (n int64, ok bool, err error) {
	hx := h.String()
	f, err := os.Open(filepath.Join(objDir, hx[:2], hx[2:]))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	zr, err := zlib.NewReader(bufio.NewReaderSize(f, 512))
	if err != nil {
		return 0, false, fmt.Errorf("loose object %s: %w", h, err)
	}
	defer zr.Close()
	hdr, err := bufio.NewReaderSize(io.LimitReader(zr, 64), 64).ReadString(0)
	if err != nil {
		return 0, false, fmt.Errorf("loose object %s: header: %w", h, err)
	}
	_, size, _ := strings.Cut(strings.TrimSuffix(hdr, "\x00"), " ")
	n, err = strconv.ParseInt(size, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("loose object %s: bad header %q", h, hdr)
	}
	return n, true, nil
}

// checkWants accepts the commits a fetch asks for only if a branch reaches
// them: the git endpoint serves the branches and nothing else (not
// CredentialsRef, not history that no branch reaches any more). Wants
// that are not branch heads (a branch moved since the client listed them)
// are looked for in one walk back from the heads, stopping when all are
// found: at most the history's size once per request.
func (s *Store) checkWants(wants []Hash) error {
	branches, err := s.Branches()
	if err != nil {
		return err
	}
	var heads []Hash
	isHead := map[Hash]bool{}
	for _, b := range branches {
		heads = append(heads, b.Head)
		isHead[b.Head] = true
	}
	missing := map[Hash]bool{}
	for _, w := range wants {
		if !isHead[w] {
			missing[w] = true
		}
	}
	if len(missing) == 0 {
		return nil
	}
	err = s.readObjs(func(o *objReader) error {
		seen := map[Hash]bool{}
		queue := heads
		for len(queue) > 0 && len(missing) > 0 {
			h := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			if seen[h] {
				continue
			}
			seen[h] = true
			delete(missing, h)
			c, err := readCommit(o, h)
			if err != nil {
				return err
			}
			queue = append(queue, c.parents...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for w := range missing {
		return fmt.Errorf("want %s: not on any branch", w)
	}
	return nil
}
