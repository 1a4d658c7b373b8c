package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage"
)

// Remote is another replica of a store: the path of its repository, or the
// http(s) URL of its git smart HTTP endpoint (see GitHandler).
type Remote struct {
	// URL is a path, a file:// URL or an http(s):// URL.
	URL string
	// Username and Password authenticate to an HTTP remote (basic auth).
	Username, Password string
	// Name names the remote-tracking branches, refs/remotes/NAME/BRANCH;
	// "" means "origin".
	Name string
	// CABundle, PEM certificates, is trusted for an https remote besides
	// the system's roots: the certificate of a store served with a
	// self-signed one (nymote store serve prints its file).
	CABundle []byte
	// Dial, if set, opens the connections to an http(s) remote instead
	// of the host's sockets: through an appliance's own network stack, or
	// a tunnel. Nil dials with net.Dialer. Idle connections are kept per
	// host and port for the process, whatever dialed them: remotes that
	// dial differently must name different hosts.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// dialKey is the context key of a Remote's Dial.
type dialKey struct{}

// installDialer makes go-git's http and https transports dial with the
// Remote.Dial carried in each request's context (their transport is one
// per process), and with net.Dialer when there is none. Idle connections
// are kept per URL host and port whatever dialed them: remotes that dial
// differently (two network stacks in one process) must be different hosts,
// as the tunnel addresses of a person's nodes are.
var installDialer = sync.OnceFunc(func() {
	c := githttp.NewClient(&http.Client{Transport: dialTransport()})
	client.InstallProtocol("http", c)
	client.InstallProtocol("https", c)
})

// context returns ctx carrying r's Dial for go-git's transport.
func (r Remote) context(ctx context.Context) context.Context {
	if r.Dial == nil || !r.isHTTP() {
		return ctx
	}
	installDialer()
	return context.WithValue(ctx, dialKey{}, r.Dial)
}

func (r Remote) name() string {
	if r.Name == "" {
		return "origin"
	}
	return r.Name
}

func (r Remote) isHTTP() bool {
	return strings.HasPrefix(r.URL, "http://") || strings.HasPrefix(r.URL, "https://")
}

func (r Remote) path() string { return strings.TrimPrefix(r.URL, "file://") }

func (r Remote) auth() transport.AuthMethod {
	if r.Username == "" && r.Password == "" {
		return nil
	}
	return &githttp.BasicAuth{Username: r.Username, Password: r.Password}
}

// String is the remote's URL, never its password.
func (r Remote) String() string { return r.redacted() }

// SyncOptions configure Pull and Push.
type SyncOptions struct {
	// Commit names the local branch (Commit.Branch, "" for DefaultBranch)
	// and describes the merge commit that Pull may make.
	Commit CommitOptions
	// RemoteBranch is the remote's branch; "" means the same name as the
	// local one.
	RemoteBranch string
	// Validate checks the fetched commits as a git push to this store is
	// checked (paths, sizes, the apps' validators) before Pull merges
	// them: a replica pulling from a peer. A refused history leaves the
	// branch unchanged.
	Validate bool
	// SkipIfAt, for Push: when the remote's branch of this name already
	// points at the head, nothing is pushed, not even the ref update (a
	// replica's peer whose main is this node's head lacks nothing: a
	// head that reached every node from the one that made it is not
	// passed around again).
	SkipIfAt string
	// SkipIfHeld, for Push: when one of the remote's branches (that this
	// store has) already reaches the head, nothing is pushed, not even
	// the ref update: the remote holds every object of it. A replica's
	// peer that took this node's head from a third node (or that pushed
	// a later one here) needs none of it; the push carried its own
	// commits back to it, to be received and indexed again, after every
	// batch of a client's writes.
	SkipIfHeld bool
	// SkipIfNewer, for Push: when the remote's branch of this name points
	// at a commit that this store lacks, nothing is pushed: the branch's
	// writer reached the remote after it last pushed here. A replica that
	// relays a head a peer pushed to it (replica.Options.Relay) names the
	// branch that peer pushes to: the peer, which reaches the remote
	// itself, brings the head there with its next push (its main only
	// moves forward), and a relay raced it to the remote (half a block
	// of a client's writes, received and indexed twice).
	SkipIfNewer string
	// SkipIfHas, for Push: when one of the remote's branches (that this
	// store has) reaches one of these commits, nothing is pushed. A
	// replica that relays a peer's head names the head it held back a
	// Relay ago: a remote that got it meanwhile got it from elsewhere
	// (its maker reaches it), and the head now, newer, is on its way
	// there too.
	SkipIfHas []Hash
	// Haves, for Push over HTTP: commits the remote is known to hold
	// besides those its branches point at (a replica's branch of what the
	// peer pushed here: a peer whose own branch here went stale, its main
	// far ahead, was sent again every commit it had pushed itself since).
	// A remote that lost them refuses the push (objects missing); push
	// again without.
	Haves []Hash
	// SharedHistory refuses (ErrUnrelatedHistory, nothing changed) a
	// fetched head whose history shares no commit with DefaultBranch's,
	// unless that has no commit yet: a replica pulling from a peer whose
	// store was not begun as a clone of this one (or this one of it).
	SharedHistory bool
}

func (o SyncOptions) branches() (local, remote string) {
	local = o.Commit.branch()
	remote = o.RemoteBranch
	if remote == "" {
		remote = local
	}
	return local, remote
}

// Pull fetches the remote's branch and merges it into the local branch
// (see Merge: fast-forward when possible, a 3-way merge with the merge
// functions otherwise, a *ConflictError and no change on conflict). The
// fetched head is kept as refs/remotes/NAME/BRANCH either way.
func (s *Store) Pull(ctx context.Context, remote Remote, opts SyncOptions) (MergeResult, error) {
	local, rbranch := opts.branches()
	if err := validateBranch(local); err != nil {
		return MergeResult{}, err
	}
	if err := validateBranch(rbranch); err != nil {
		return MergeResult{}, err
	}
	// The fetch (the network) is done without the writer lock, so that a
	// slow or unreachable remote never holds up local writes; only the
	// merge takes it.
	theirs, err := s.Fetch(ctx, remote, rbranch)
	if err != nil {
		return MergeResult{}, err
	}
	if theirs.IsZero() {
		h, err := s.head(local)
		return MergeResult{Head: h, UpToDate: true}, err
	}
	if opts.SharedHistory {
		if err := s.checkSharedHistory(theirs); err != nil {
			return MergeResult{}, fmt.Errorf("store: pull %s from %s: %w", rbranch, remote, err)
		}
	}
	if opts.Validate {
		if err := s.validateNew(theirs); err != nil {
			return MergeResult{}, fmt.Errorf("store: pull %s from %s: refused: %w", rbranch, remote, err)
		}
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return MergeResult{}, err
	}
	defer unlock()
	return s.mergeLocked(remote.name()+"/"+rbranch, theirs, opts.Commit)
}

// Fetch copies the remote's branch history into the store without merging
// it, records it as refs/remotes/NAME/BRANCH and returns its head (zero if
// the remote has no such branch). It does not take the writer lock: local
// writes go on while it waits for the network. Fetches are serialized
// among themselves.
func (s *Store) Fetch(ctx context.Context, remote Remote, branch string) (Hash, error) {
	if err := validateBranch(branch); err != nil {
		return Hash{}, err
	}
	if s.isClosed() {
		return Hash{}, ErrClosed
	}
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	return s.fetchLocked(ctx, remote, branch)
}

// fetchLocked copies the remote branch's history into the store and records
// it as refs/remotes/NAME/BRANCH. It returns the remote's head (zero if the
// remote has no such branch yet).
func (s *Store) fetchLocked(ctx context.Context, remote Remote, branch string) (Hash, error) {
	tracking := plumbing.NewRemoteReferenceName(remote.name(), branch)
	if remote.isHTTP() {
		d := s.newDurableStorer()
		rem := git.NewRemote(d, &config.RemoteConfig{Name: remote.name(), URLs: []string{remote.URL}})
		spec := config.RefSpec(fmt.Sprintf("+refs/heads/%s:%s", branch, tracking))
		err := rem.FetchContext(remote.context(ctx), &git.FetchOptions{RefSpecs: []config.RefSpec{spec}, Auth: remote.auth(), Tags: git.NoTags, CABundle: remote.CABundle})
		switch {
		case errors.Is(err, git.NoErrAlreadyUpToDate):
		case errors.Is(err, transport.ErrEmptyRemoteRepository), err != nil && strings.Contains(err.Error(), "couldn't find remote ref"):
			return Hash{}, nil
		case err != nil:
			return Hash{}, fmt.Errorf("store: fetch %s from %s: %w", branch, remote, err)
		}
		if err := d.flush(); err != nil {
			return Hash{}, err
		}
		var h Hash
		err = s.read(func(r *git.Repository) error {
			ref, err := r.Storer.Reference(tracking)
			if err != nil {
				return fmt.Errorf("store: fetch %s from %s: %w", branch, remote, err)
			}
			h = ref.Hash()
			return nil
		})
		return h, err
	}
	src, err := Open(remote.path(), Options{Logger: s.log})
	if err != nil {
		return Hash{}, fmt.Errorf("store: fetch from %s: %w", remote, err)
	}
	defer src.Close()
	h, err := src.head(branch)
	if err != nil || h.IsZero() {
		return Hash{}, err
	}
	if err := s.copyFrom(ctx, src, h); err != nil {
		return Hash{}, fmt.Errorf("store: fetch %s from %s: %w", branch, remote, err)
	}
	return h, s.writeRef(tracking, h)
}

// Push sends the local branch to the remote's branch. Only a fast-forward
// is accepted: if the remote has commits that the local branch lacks, Push
// fails with ErrNotFastForward (pull first).
func (s *Store) Push(ctx context.Context, remote Remote, opts SyncOptions) error {
	local, rbranch := opts.branches()
	if err := validateBranch(rbranch); err != nil {
		return err
	}
	h, err := s.head(local)
	if err != nil {
		return err
	}
	if h.IsZero() {
		return fmt.Errorf("store: push %s: no commits: %w", local, ErrNotExist)
	}
	if remote.isHTTP() {
		return s.pushHTTP(remote.context(ctx), remote, local, rbranch, opts, h)
	}
	dst, err := Open(remote.path(), Options{Logger: s.log})
	if err != nil {
		return fmt.Errorf("store: push to %s: %w", remote, err)
	}
	defer dst.Close()
	unlock, err := dst.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if opts.SkipIfAt != "" {
		if at, err := dst.head(opts.SkipIfAt); err == nil && at == h {
			return nil
		}
	}
	if opts.SkipIfNewer != "" {
		if at, err := dst.head(opts.SkipIfNewer); err == nil && !at.IsZero() && !s.has(at) {
			return nil
		}
	}
	if targets := opts.held(h); len(targets) > 0 {
		bs, err := dst.Branches()
		if err != nil {
			return err
		}
		var heads []Hash
		for _, b := range bs {
			if s.has(b.Head) {
				heads = append(heads, b.Head)
			}
		}
		if held, err := s.holdsAny(heads, targets); err != nil || held {
			return err
		}
	}
	if err := dst.copyFrom(ctx, s, h); err != nil {
		return fmt.Errorf("store: push %s to %s: %w", local, remote, err)
	}
	if err := dst.fastForwardLocked(rbranch, h); err != nil {
		if errors.Is(err, ErrNotFastForward) {
			return fmt.Errorf("store: push %s to %s: the remote has commits that %s lacks; pull first: %w", local, remote, local, ErrNotFastForward)
		}
		return err
	}
	return nil
}

// pushHTTP sends head to the remote's branch rbranch over git smart HTTP,
// a fast-forward only, with a pack of what the remote lacks: listed by
// packObjects from the heads the remote advertises that this store holds
// (go-git's push walked every tree of the history those heads reach, and
// searched for deltas, per push: most of a replica's CPU after a
// partition), without deltas, whole objects' pack entries copied as they
// are (encodePack). The pack is built before the network is used, so that
// no lock is held while it waits, and shared with the next push of the
// same objects (pushPack: the same head to another peer), and streamed
// from there to the connection by our own client (pushConn), not copied
// into memory whole as go-git's does.
func (s *Store) pushHTTP(ctx context.Context, remote Remote, local, rbranch string, opts SyncOptions, head Hash) error {
	fail := func(err error) error { return fmt.Errorf("store: push %s to %s: %w", local, remote, err) }
	pc, err := newPushConn(remote)
	if err != nil {
		return fail(err)
	}
	ar, err := pc.advertised(ctx)
	if err != nil {
		return fail(err)
	}
	refs, err := ar.AllReferences()
	if err != nil {
		return fail(err)
	}
	name := plumbing.NewBranchReferenceName(rbranch)
	var old Hash
	var haves []Hash
	for n, r := range refs {
		if r.Type() != plumbing.HashReference {
			continue
		}
		if n == name {
			old = r.Hash()
		}
		if opts.SkipIfAt != "" && n == plumbing.NewBranchReferenceName(opts.SkipIfAt) && r.Hash() == head {
			return nil
		}
		if opts.SkipIfNewer != "" && n == plumbing.NewBranchReferenceName(opts.SkipIfNewer) && !s.has(r.Hash()) {
			return nil
		}
		if s.has(r.Hash()) {
			haves = append(haves, r.Hash())
		}
	}
	if old == head {
		return nil
	}
	for _, h := range opts.Haves {
		if !h.IsZero() && s.has(h) {
			haves = append(haves, h)
		}
	}
	if held, err := s.holdsAny(haves, opts.held(head)); err != nil {
		return fail(err)
	} else if held {
		return nil
	}
	if !old.IsZero() {
		ok := false
		if s.has(old) {
			if ok, err = s.isAncestor(old, head); err != nil {
				return fail(err)
			}
		}
		if !ok {
			return fmt.Errorf("store: push %s to %s: the remote has commits that %s lacks; pull first: %w", local, remote, local, ErrNotFastForward)
		}
	}
	objs, err := s.packObjects([]Hash{head}, haves)
	if err != nil {
		return fail(err)
	}
	body, err := s.pushPack(objs)
	if err != nil {
		return fail(err)
	}
	defer body.Close()
	err = pc.receivePack(ctx, ar.Capabilities, name, old, head, body)
	if err != nil {
		if strings.Contains(err.Error(), "fast-forward") || strings.Contains(err.Error(), "the branch moved") {
			return fmt.Errorf("store: push %s to %s: the remote has commits that %s lacks; pull first: %w", local, remote, local, ErrNotFastForward)
		}
		return fail(err)
	}
	return nil
}

// held lists the commits that a push of head skips when one of the
// remote's branches reaches one of them: SkipIfHas, and head itself with
// SkipIfHeld.
func (o SyncOptions) held(head Hash) []Hash {
	if o.SkipIfHeld {
		return append(slices.Clip(o.SkipIfHas), head)
	}
	return o.SkipIfHas
}

// holdsAny reports whether one of heads reaches one of targets (reachedBy).
func (s *Store) holdsAny(heads, targets []Hash) (bool, error) {
	for _, t := range targets {
		if held, err := s.reachedBy(t, heads); err != nil || held {
			return held, err
		}
	}
	return false, nil
}

// Clone creates a new store at path holding the remote's default branch.
func Clone(ctx context.Context, remote Remote, path string, opts Options) (*Store, error) {
	s, err := Init(path, opts)
	if err != nil {
		return nil, err
	}
	if _, err := s.Pull(ctx, remote, SyncOptions{}); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: clone %s: %w", remote, err)
	}
	return s, nil
}

// has reports whether the store holds object h (loose, packed or in the
// commit log), through the object reader: by the packs' indexes, without
// reading the object (go-git's storage, which the store reopens after every
// new pack, loaded every pack index at its first lookup).
func (s *Store) has(h Hash) bool {
	ok := false
	s.readObjsOnce(func(o *objReader) error {
		if o.pend != nil && o.pend.object(h) != nil {
			ok = true
			return nil
		}
		if _, _, ok = o.locate(h); ok {
			return nil
		}
		x := h.String()
		_, err := os.Stat(filepath.Join(o.dir, x[:2], x[2:]))
		ok = err == nil
		return nil
	})
	return ok
}

// copyFrom copies the history of commit head from src, writing parents
// before children and a tree's contents before the tree, so that an object
// present here always has everything it refers to, and the copy can stop at
// the first commit or tree it already has.
func (s *Store) copyFrom(ctx context.Context, src *Store, head Hash) error {
	// Collect the missing commits, parents first.
	var order []*object.Commit
	seen := map[Hash]bool{}
	type frame struct {
		c    *object.Commit
		next int
	}
	var stack []frame
	load := func(h Hash) (*object.Commit, error) {
		var c *object.Commit
		err := src.read(func(r *git.Repository) error {
			var err error
			c, err = r.CommitObject(h)
			return err
		})
		return c, err
	}
	if s.has(head) {
		return nil
	}
	c, err := load(head)
	if err != nil {
		return err
	}
	seen[head] = true
	stack = append(stack, frame{c: c})
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.next < len(top.c.ParentHashes) {
			p := top.c.ParentHashes[top.next]
			top.next++
			if seen[p] || s.has(p) {
				continue
			}
			seen[p] = true
			pc, err := load(p)
			if err != nil {
				return err
			}
			stack = append(stack, frame{c: pc})
			continue
		}
		order = append(order, top.c)
		stack = stack[:len(stack)-1]
	}
	for _, c := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.copyTree(src, c.TreeHash); err != nil {
			return err
		}
		if err := s.copyObject(src, c.Hash, plumbing.CommitObject); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) copyTree(src *Store, h Hash) error {
	if s.has(h) {
		return nil
	}
	var t *object.Tree
	if err := src.read(func(r *git.Repository) error {
		var err error
		t, err = r.TreeObject(h)
		return err
	}); err != nil {
		return err
	}
	w := s.newObjWriter()
	for _, e := range t.Entries {
		if e.Mode == filemode.Dir {
			if err := s.copyTree(src, e.Hash); err != nil {
				return err
			}
			continue
		}
		if s.has(e.Hash) {
			continue
		}
		o, err := src.rawObject(e.Hash, plumbing.BlobObject)
		if err != nil {
			return err
		}
		w.write(o)
	}
	if err := w.wait(); err != nil {
		return err
	}
	return s.copyObject(src, h, plumbing.TreeObject)
}

func (s *Store) copyObject(src *Store, h Hash, t plumbing.ObjectType) error {
	o, err := src.rawObject(h, t)
	if err != nil {
		return err
	}
	_, err = s.writeObjects(o, nil)
	return err
}

// rawObject reads an object into memory.
func (s *Store) rawObject(h Hash, t plumbing.ObjectType) (plumbing.EncodedObject, error) {
	var out plumbing.EncodedObject
	err := s.read(func(r *git.Repository) error {
		o, err := r.Storer.EncodedObject(t, h)
		if err != nil {
			return fmt.Errorf("store: object %s: %w", h, err)
		}
		data, err := readAll(o)
		if err != nil {
			return err
		}
		out = memObject(o.Type(), data)
		return nil
	})
	return out, err
}

// durableStorer wraps the go-git storage for fetches and pushes received over
// the network: it hides the storage's PackfileWriter, so that go-git hands
// over each object (checked and hashed from its content), which it gathers
// and writes as one pack of ours, synced (a push of a thousand commits was
// four thousand synced loose files); and it writes references atomically
// after the objects are durable. The objects gathered are readable through
// it before they are written (the pack's deltas refer to them).
type durableStorer struct {
	storage.Storer
	s *Store

	mu    sync.Mutex
	objs  []plumbing.EncodedObject
	byH   map[Hash]plumbing.EncodedObject
	bytes int64
	added []string // the packs it added, for discard
}

// newDurableStorer returns a durableStorer over the store's go-git
// storage, read under s.mu (a reload replaces it).
func (s *Store) newDurableStorer() *durableStorer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &durableStorer{Storer: s.st, s: s}
}

// PackfileWriter takes a fetched or pushed pack whole: it is kept as it
// came and indexed (each object inflated and hashed once, not written
// again), synced and made readable when the writer is closed. A thin pack
// (deltas against objects of the store, as git push sends) cannot be
// indexed alone; its objects are then resolved against the store and
// written as SetEncodedObject does.
func (d *durableStorer) PackfileWriter() (io.WriteCloser, error) {
	f, err := os.CreateTemp(filepath.Join(d.s.path, tmpDir), "recv-")
	if err != nil {
		return nil, fmt.Errorf("store: receive pack: %w", err)
	}
	return &recvPack{d: d, f: f}, nil
}

type recvPack struct {
	d    *durableStorer
	f    *os.File
	kept bool // renamed into objects/pack
}

func (r *recvPack) Write(p []byte) (int, error) { return r.f.Write(p) }

func (r *recvPack) Close() (err error) {
	defer func() {
		r.f.Close()
		if !r.kept {
			os.Remove(r.f.Name())
		}
	}()
	// The pack is indexed and moved into objects/pack where it was
	// received, not copied.
	objects := int64(0)
	dec := newRecvDecoded(r.d.s.trees)
	sum, idx, ok, err := indexWholePack(r.f, dec)
	if err == nil && !ok {
		if _, err = r.f.Seek(0, io.SeekStart); err == nil {
			iw := new(idxfile.Writer)
			var parser *packfile.Parser
			if parser, err = packfile.NewParser(packfile.NewScanner(r.f), iw); err == nil {
				if sum, err = parser.Parse(); err == nil {
					idx, err = iw.Index()
				}
			}
		}
	}
	if err == nil {
		if objects, err = idx.Count(); err == nil && objects == 0 {
			return nil
		}
	}
	if err == nil {
		name, _, err := r.d.s.finishPack(context.Background(), r.f, true, sum, idx)
		if err != nil {
			return err
		}
		r.kept = true
		if err := r.d.addPack(name); err != nil {
			return err
		}
		dec.into(r.d.s.trees) // readable now
		return nil
	}
	if !errors.Is(err, packfile.ErrReferenceDeltaNotFound) {
		return err
	}
	// A thin pack.
	if _, err := r.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	parser, err := packfile.NewParserWithStorage(packfile.NewScanner(r.f), r.d)
	if err != nil {
		return err
	}
	if _, err := parser.Parse(); err != nil {
		return err
	}
	return r.d.flush()
}

// maxGathered is how many bytes of objects a fetch or push gathers before it
// writes them as a pack: a large push becomes several packs.
const maxGathered = 32 << 20

func (d *durableStorer) SetEncodedObject(o plumbing.EncodedObject) (Hash, error) {
	data, err := readAll(o)
	if err != nil {
		return Hash{}, err
	}
	m := memObject(o.Type(), data)
	h := m.Hash()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byH == nil {
		d.byH = map[Hash]plumbing.EncodedObject{}
	}
	if _, ok := d.byH[h]; ok {
		return h, nil
	}
	d.byH[h] = m
	d.objs = append(d.objs, m)
	d.bytes += int64(len(data))
	if d.bytes >= maxGathered {
		if err := d.flushLocked(); err != nil {
			return Hash{}, err
		}
	}
	return h, nil
}

func (d *durableStorer) EncodedObject(t plumbing.ObjectType, h Hash) (plumbing.EncodedObject, error) {
	d.mu.Lock()
	o, ok := d.byH[h]
	d.mu.Unlock()
	if ok {
		if t != plumbing.AnyObject && o.Type() != t {
			return nil, plumbing.ErrObjectNotFound
		}
		return o, nil
	}
	return d.Storer.EncodedObject(t, h)
}

func (d *durableStorer) HasEncodedObject(h Hash) error {
	d.mu.Lock()
	_, ok := d.byH[h]
	d.mu.Unlock()
	if ok {
		return nil
	}
	return d.Storer.HasEncodedObject(h)
}

func (d *durableStorer) EncodedObjectSize(h Hash) (int64, error) {
	d.mu.Lock()
	o, ok := d.byH[h]
	d.mu.Unlock()
	if ok {
		return o.Size(), nil
	}
	return d.Storer.EncodedObjectSize(h)
}

// flush writes the gathered objects as one synced pack and makes it
// readable.
func (d *durableStorer) flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flushLocked()
}

func (d *durableStorer) flushLocked() error {
	if len(d.objs) == 0 {
		return nil
	}
	objs := d.objs
	name, _, err := d.s.writePack(context.Background(), func(f *os.File) (Hash, *idxfile.MemoryIndex, error) {
		return writeObjectsPack(f, objs)
	})
	if err != nil {
		return err
	}
	if err := d.addPackLocked(name); err != nil {
		return err
	}
	d.objs, d.byH, d.bytes = nil, nil, 0
	return nil
}

// addPack makes a pack the storer wrote readable and records it for
// discard.
func (d *durableStorer) addPack(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addPackLocked(name)
}

func (d *durableStorer) addPackLocked(name string) error {
	d.added = append(d.added, name)
	return d.s.addPack(name)
}

// discard removes the packs the storer added when no reference reaches
// into them: what a refused push brought, or the part of a corrupt pack
// read before the fault, so that a refused push leaves the store as it
// was. The caller holds the writer lock (receive-pack), so no branch moves
// meanwhile; fetches, which take no writer lock, are waited for, and a
// pack holding the commit a fetch recorded stays (go-git's fetch does not
// ask for a commit the store already holds, wherever it lies).
func (d *durableStorer) discard() {
	d.mu.Lock()
	added := d.added
	d.added = nil
	d.mu.Unlock()
	if len(added) == 0 {
		return
	}
	s := d.s
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	heads, err := s.refHashes()
	if err != nil {
		s.log.Warn("store: discard a refused push's objects", "err", err)
		return
	}
	var remove []string
	s.readObjsOnce(func(o *objReader) error {
		for _, p := range o.packList() {
			if !slices.Contains(added, p.name) {
				continue
			}
			if slices.ContainsFunc(heads, p.idx.contains) {
				continue
			}
			remove = append(remove, packFiles(filepath.Join(s.path, "objects", "pack", p.name))...)
			if o.trees != nil {
				o.trees.forget(p.idx)
			}
		}
		return nil
	})
	if len(remove) == 0 {
		return
	}
	if err := s.removeAndReload(remove); err != nil {
		s.log.Warn("store: discard a refused push's objects", "err", err)
	}
}

func (d *durableStorer) SetReference(ref *plumbing.Reference) error {
	if ref.Type() != plumbing.HashReference {
		return d.Storer.SetReference(ref)
	}
	if err := d.flush(); err != nil {
		return err
	}
	return d.s.writeRef(ref.Name(), ref.Hash())
}

func (d *durableStorer) CheckAndSetReference(ref, old *plumbing.Reference) error {
	if old != nil {
		cur, err := d.Storer.Reference(old.Name())
		if err == nil && cur.Hash() != old.Hash() {
			return fmt.Errorf("store: reference %s changed", ref.Name())
		}
	}
	return d.SetReference(ref)
}
