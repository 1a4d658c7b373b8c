package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Upgrades: stores written by earlier versions kept secrets in their
// branches: the generated TLS certificate and key under tls/, and each
// user's password hash in users/NAME. Open moves them out once (see
// upgradeSecrets) and records it in the file upgradesName of the
// repository.

const (
	// upgradesName lists, one a line, the upgrades done to a repository.
	upgradesName = "nymote-upgrades"
	// upgradeSecretsDone is the line of the secrets' upgrade.
	upgradeSecretsDone = "secrets-out-of-history"
	// legacyNodePrefix is the folder where earlier versions committed the
	// node's TLS certificate and key; they move to NodeDir.
	legacyNodePrefix = "tls"
	// upgradePackBytes bounds the new objects held in memory before they
	// are written out as a pack.
	upgradePackBytes = 16 << 20
)

// upgradeStep is called after each durable step of the upgrade; tests set
// it to stop there, as a crash would (nil in production).
var upgradeStep = func(step string) error { return nil }

// upgradeStats says what the secrets' upgrade did.
type upgradeStats struct {
	all                []Branch // the references there were (full names)
	commits, rewritten int
	branches           []string
	users, nodeFiles   int
}

// upgradeSecrets moves secrets out of the branches of a store written by an
// earlier version, once:
//
//  1. the items under tls/ of the default branch's head are written to
//     NodeDir (unless there already), and the password hashes of its users
//     to CredentialsRef;
//  2. every commit that any branch reaches is written again, with the same
//     author, committer, dates, message and content except that tls/ is
//     gone and each user record holds the id of its password instead of its
//     hash (passwordID); commits from before any secret keep their hash.
//     The new chain goes into new packs, durably, while the branches still
//     point at the old one;
//  3. each branch is moved to its new head (the commit point; a crash
//     before it leaves the old history, and the next Open starts again);
//  4. GC runs with an immediate prune, so the old commits, trees and blobs
//     leave the disk; then the upgrade is recorded.
//
// A crash anywhere leaves a store that the next Open upgrades again: the
// rewrite of a rewritten commit is the commit itself.
func (s *Store) upgradeSecrets(ctx context.Context) error {
	if b, err := os.ReadFile(filepath.Join(s.path, upgradesName)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(l) == upgradeSecretsDone {
				return nil
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: %s: %w", upgradesName, err)
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	st, err := s.rewriteSecrets()
	unlock()
	if err != nil {
		return fmt.Errorf("store: moving secrets out of the history: %w", err)
	}
	// Pruned whether this Open rewrote or a crashed one did: the old
	// history may still be on disk.
	var gst GCStats
	if len(st.all) > 0 {
		if gst, err = s.gc(ctx, 0); err == nil {
			err = upgradeStep("pruned")
		}
		if err != nil {
			return fmt.Errorf("store: moving secrets out of the history: pruning the old history: %w", err)
		}
	}
	if st.rewritten > 0 || st.users > 0 || st.nodeFiles > 0 || gst.Pruned > 0 {
		s.log.Warn("store: moved secrets out of the history (TLS key to the node folder, password hashes to "+CredentialsRef+")",
			"commits", st.commits, "rewritten", st.rewritten, "branches", strings.Join(st.branches, ","),
			"users", st.users, "node_files", st.nodeFiles, "node_dir", s.NodeDir(), "pruned_objects", gst.Pruned)
	}
	return s.writeFileAtomic(filepath.Join(s.path, upgradesName), []byte(upgradeSecretsDone+"\n"), true)
}

// rewriteSecrets does steps 1 to 3 of upgradeSecrets; the writer lock is
// held.
func (s *Store) rewriteSecrets() (upgradeStats, error) {
	var st upgradeStats
	branches, err := s.historyRefs()
	if err != nil {
		return st, err
	}
	st.all = branches
	rw := &rewriter{s: s, trees: map[Hash]Hash{}, blobs: map[Hash]Hash{}, commits: map[Hash]Hash{}, sink: memory.NewStorage()}
	// Step 1, from the default branch's head: the node files, the hashes.
	mainHead, err := s.head(DefaultBranch)
	if err != nil {
		return st, err
	}
	if !mainHead.IsZero() {
		n, users, err := s.moveOutSecrets(mainHead)
		if err != nil {
			return st, err
		}
		st.nodeFiles, st.users = n, users
	}
	// Step 2: every commit, parents first.
	moves := map[string][2]Hash{}
	err = s.readObjs(func(o *objReader) error {
		rw.o = o
		for _, b := range branches {
			order, err := rw.topo(b.Head)
			if err != nil {
				return err
			}
			for _, c := range order {
				if err := rw.commit(c); err != nil {
					return err
				}
			}
			if nh := rw.commits[b.Head]; nh != b.Head {
				moves[b.Name] = [2]Hash{b.Head, nh}
			}
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	if err := rw.flush(); err != nil {
		return st, err
	}
	st.commits, st.rewritten = len(rw.commits), rw.rewritten
	if len(moves) == 0 {
		return st, nil
	}
	if err := s.reload(); err != nil {
		return st, err
	}
	if err := upgradeStep("rewritten"); err != nil {
		return st, err
	}
	// Step 3: the commit point, branch by branch.
	for _, b := range branches {
		m, ok := moves[b.Name]
		if !ok {
			continue
		}
		if err := s.writeRef(plumbing.ReferenceName(b.Name), m[1]); err != nil {
			return st, err
		}
		s.log.Info("store: reference rewritten without secrets", "ref", b.Name, "old", m[0], "new", m[1])
		st.branches = append(st.branches, b.Name)
		if err := upgradeStep("moved " + b.Name); err != nil {
			return st, err
		}
	}
	return st, nil
}

// historyRefs lists the references whose history the upgrade rewrites,
// sorted by name: branches, remote-tracking branches (left by Pull) and
// tags, all that point at commits; not CredentialsRef. Since the rewrite
// is deterministic, a remote upgraded alike has the same commits.
func (s *Store) historyRefs() ([]Branch, error) {
	var out []Branch
	err := s.read(func(r *git.Repository) error {
		it, err := r.Storer.IterReferences()
		if err != nil {
			return err
		}
		return it.ForEach(func(ref *plumbing.Reference) error {
			n := ref.Name().String()
			if ref.Type() != plumbing.HashReference || isSecretRef(n) {
				return nil
			}
			if !strings.HasPrefix(n, "refs/heads/") && !strings.HasPrefix(n, "refs/remotes/") && !strings.HasPrefix(n, "refs/tags/") {
				return nil
			}
			if t, err := r.Storer.EncodedObject(plumbing.AnyObject, ref.Hash()); err != nil || t.Type() != plumbing.CommitObject {
				s.log.Warn("store: upgrade: leaving a reference that does not name a commit", "ref", n)
				return nil
			}
			out = append(out, Branch{Name: n, Head: ref.Hash()})
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// moveOutSecrets copies the legacy node files of commit head to NodeDir
// (keeping files already there) and the password hashes of its user
// records to CredentialsRef (keeping hashes already there).
func (s *Store) moveOutSecrets(head Hash) (nodeFiles, users int, err error) {
	sn, err := s.snapshotAt(head)
	if err != nil {
		return 0, 0, err
	}
	ents, err := sn.List(legacyNodePrefix)
	if err != nil && !errors.Is(err, ErrNotExist) {
		return 0, 0, err
	}
	for _, e := range ents {
		if _, err := s.ReadNodeFile(e.Path); err == nil {
			continue
		} else if !errors.Is(err, ErrNotExist) {
			return 0, 0, err
		}
		b, err := sn.Read(e.Path)
		if err != nil {
			return 0, 0, err
		}
		if err := s.WriteNodeFile(e.Path, b); err != nil {
			return 0, 0, err
		}
		nodeFiles++
	}
	ents, err = sn.List(UsersPrefix)
	if err != nil && !errors.Is(err, ErrNotExist) {
		return 0, 0, err
	}
	have, err := s.passwordHashes()
	if err != nil {
		return 0, 0, err
	}
	add := map[string]string{}
	for _, e := range ents {
		u, err := getUser(sn.Read, strings.TrimPrefix(e.Path, UsersPrefix+"/"))
		if err != nil {
			continue // not a record; left as it is
		}
		if u.Hash != "" && have[u.Name] == "" {
			add[u.Name] = u.Hash
		}
	}
	if len(add) > 0 {
		err := s.setPasswordHashesLocked("credentials: moved out of the history", func(m map[string]string) {
			for k, v := range add {
				m[k] = v
			}
		})
		if err != nil {
			return 0, 0, err
		}
	}
	return nodeFiles, len(add), nil
}

// rewriter writes commits again without secrets, remembering what it
// rewrote.
type rewriter struct {
	s       *Store
	o       *objReader
	trees   map[Hash]Hash // root or users/ tree → its rewrite
	blobs   map[Hash]Hash // user record → its rewrite
	commits map[Hash]Hash
	// parents of the commits listed by topo and not yet rewritten: the
	// commits themselves are read again when rewritten, so that memory
	// stays at a few dozen bytes per commit of the history.
	parents map[Hash][]Hash

	rewritten int
	sink      *memory.Storage
	sinkBytes int
	sinkObjs  []Hash
}

// topo lists the commits head reaches that are not rewritten yet, each
// after its parents.
func (rw *rewriter) topo(head Hash) ([]Hash, error) {
	if rw.parents == nil {
		rw.parents = map[Hash][]Hash{}
	}
	var out []Hash
	type frame struct {
		h    Hash
		next int
	}
	seen := map[Hash]bool{}
	stack := []frame{{h: head}}
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.next == 0 && seen[f.h] {
			stack = stack[:len(stack)-1]
			continue
		}
		ps, ok := rw.parents[f.h]
		if !ok {
			c, err := rw.parse(f.h)
			if err != nil {
				return nil, err
			}
			ps = c.ParentHashes
			rw.parents[f.h] = ps
		}
		seen[f.h] = true
		if f.next < len(ps) {
			p := ps[f.next]
			f.next++
			if _, done := rw.commits[p]; !done && !seen[p] {
				stack = append(stack, frame{h: p})
			}
			continue
		}
		out = append(out, f.h)
		stack = stack[:len(stack)-1]
	}
	return out, nil
}

func (rw *rewriter) parse(h Hash) (*object.Commit, error) {
	data, err := rw.o.readAs(h, plumbing.CommitObject)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	c := &object.Commit{}
	if err := c.Decode(memObject(plumbing.CommitObject, data)); err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	return c, nil
}

// commit rewrites commit h, whose parents are rewritten.
func (rw *rewriter) commit(h Hash) error {
	if _, done := rw.commits[h]; done {
		return nil
	}
	c, err := rw.parse(h)
	if err != nil {
		return err
	}
	delete(rw.parents, h)
	tree, err := rw.root(c.TreeHash)
	if err != nil {
		return fmt.Errorf("commit %s: %w", h, err)
	}
	changed := tree != c.TreeHash
	parents := make([]Hash, len(c.ParentHashes))
	for i, p := range c.ParentHashes {
		parents[i] = rw.commits[p]
		changed = changed || parents[i] != p
	}
	if !changed {
		rw.commits[h] = h
		return nil
	}
	nc := &object.Commit{Author: c.Author, Committer: c.Committer, MergeTag: c.MergeTag, Message: c.Message,
		TreeHash: tree, ParentHashes: parents, Encoding: c.Encoding, ExtraHeaders: c.ExtraHeaders}
	o := &plumbing.MemoryObject{}
	if err := nc.Encode(o); err != nil {
		return fmt.Errorf("commit %s: %w", h, err)
	}
	if err := rw.add(o); err != nil {
		return err
	}
	rw.commits[h] = o.Hash()
	rw.rewritten++
	return nil
}

// root rewrites a commit's root tree: without tls/, with user records
// without hashes.
func (rw *rewriter) root(h Hash) (Hash, error) {
	return rw.rewriteTree(h, func(e *object.TreeEntry) (bool, error) {
		switch {
		case e.Name == legacyNodePrefix:
			return false, nil
		case e.Name == UsersPrefix && e.Mode == filemode.Dir:
			nh, err := rw.users(e.Hash)
			e.Hash = nh
			return true, err
		}
		return true, nil
	})
}

// users rewrites a users/ tree.
func (rw *rewriter) users(h Hash) (Hash, error) {
	return rw.rewriteTree(h, func(e *object.TreeEntry) (bool, error) {
		if e.Mode.IsFile() {
			nb, err := rw.userRecord(e.Hash)
			e.Hash = nb
			return true, err
		}
		return true, nil
	})
}

// rewriteTree rewrites tree h once (the result is remembered in rw.trees):
// fn may change an entry's hash or drop it (keep false); the tree is
// written again only when something changed.
func (rw *rewriter) rewriteTree(h Hash, fn func(e *object.TreeEntry) (keep bool, err error)) (Hash, error) {
	if nh, ok := rw.trees[h]; ok {
		return nh, nil
	}
	t, err := rw.o.tree(h)
	if err != nil {
		return Hash{}, err
	}
	out := &object.Tree{}
	changed := false
	for _, e := range t.entries {
		old := e.Hash
		keep, err := fn(&e)
		if err != nil {
			return Hash{}, err
		}
		if !keep {
			changed = true
			continue
		}
		changed = changed || e.Hash != old
		out.Entries = append(out.Entries, e)
	}
	nh := h
	if changed {
		if nh, err = rw.encodeTree(out); err != nil {
			return Hash{}, err
		}
	}
	rw.trees[h] = nh
	return nh, nil
}

// userRecord rewrites one user record blob: the hash becomes its id.
// Anything that is not a record with a hash is kept as it is.
func (rw *rewriter) userRecord(h Hash) (Hash, error) {
	if nh, ok := rw.blobs[h]; ok {
		return nh, nil
	}
	data, err := rw.o.readAs(h, plumbing.BlobObject)
	if err != nil {
		return Hash{}, err
	}
	nh := h
	var u userRecord
	if json.Unmarshal(data, &u) == nil && u.Hash != "" {
		if u.Password == "" {
			u.Password = passwordID(u.Hash)
		}
		u.Hash = ""
		b, err := json.MarshalIndent(u, "", "  ")
		if err != nil {
			return Hash{}, err
		}
		o := memObject(plumbing.BlobObject, append(b, '\n'))
		if err := rw.add(o); err != nil {
			return Hash{}, err
		}
		nh = o.Hash()
	}
	rw.blobs[h] = nh
	return nh, nil
}

func (rw *rewriter) encodeTree(t *object.Tree) (Hash, error) {
	sortTreeEntries(t.Entries)
	o := &plumbing.MemoryObject{}
	if err := t.Encode(o); err != nil {
		return Hash{}, err
	}
	return o.Hash(), rw.add(o)
}

// add keeps a new object for the next pack, writing the pack when the
// objects held reach upgradePackBytes.
func (rw *rewriter) add(o plumbing.EncodedObject) error {
	if rw.sink.HasEncodedObject(o.Hash()) == nil {
		return nil
	}
	if _, err := rw.sink.SetEncodedObject(o); err != nil {
		return err
	}
	rw.sinkObjs = append(rw.sinkObjs, o.Hash())
	rw.sinkBytes += int(o.Size())
	if rw.sinkBytes >= upgradePackBytes {
		return rw.flush()
	}
	return nil
}

// flush writes the objects held as one pack, durably.
func (rw *rewriter) flush() error {
	if len(rw.sinkObjs) == 0 {
		return nil
	}
	objs := rw.sinkObjs
	_, _, err := rw.s.writePack(context.Background(), func(f *os.File) (plumbing.Hash, *idxfile.MemoryIndex, error) {
		h, err := packfile.NewEncoder(f, rw.sink, false).Encode(objs, packWindow)
		return h, nil, err
	})
	if err != nil {
		return err
	}
	rw.sink, rw.sinkObjs, rw.sinkBytes = memory.NewStorage(), nil, 0
	return nil
}
