package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"golang.org/x/sync/singleflight"
)

// Hash names a git object (a commit, a tree or a blob).
type Hash = plumbing.Hash

// BlobHash returns the git object id that data has as a blob: the hash a
// file of that content has in the store's trees (Entry.Hash). The DAV apps
// use it as an object's ETag, computed from bytes they hold without a read.
func BlobHash(data []byte) Hash { return plumbing.ComputeHash(plumbing.BlobObject, data) }

// DefaultBranch is the branch that Init creates and that an empty revision
// or branch name means.
const DefaultBranch = "main"

// Errors that callers branch on. They are wrapped with context; test them
// with errors.Is.
var (
	// ErrNotExist: the path, revision or branch does not exist. It matches
	// fs.ErrNotExist too.
	ErrNotExist error = kindError{"does not exist", fs.ErrNotExist}
	// ErrExists: the thing to create exists already. It matches fs.ErrExist
	// too.
	ErrExists error = kindError{"already exists", fs.ErrExist}
	// ErrCorrupt: the repository is damaged. The store never repairs or
	// reinitialises it by itself.
	ErrCorrupt = errors.New("store: repository is corrupt")
	// ErrInvalidPath: a path that the store refuses (see ValidatePath).
	ErrInvalidPath = errors.New("store: invalid path")
	// ErrNotFastForward: a branch update would drop commits.
	ErrNotFastForward = errors.New("store: not a fast-forward")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// kindError is a sentinel error that also matches an fs error.
type kindError struct {
	msg  string
	kind error
}

func (e kindError) Error() string        { return e.msg }
func (e kindError) Is(target error) bool { return target == e.kind }

// Options configure Open and Init. The zero value is ready to use.
type Options struct {
	// Logger receives the store's structured logs. Nil discards them.
	Logger *slog.Logger
	// Author is the default author of commits whose CommitOptions name
	// none. Zero means "nymote <nymote@localhost>".
	Author Signature
	// GCLooseObjects is the number of loose objects above which a commit
	// triggers a background repack (as git's gc.auto). Zero means 6700,
	// git's default; a negative value turns automatic repacking (and the
	// merging of small packs) off.
	GCLooseObjects int

	// PruneAfter is how old an unreachable object must be before GC
	// removes it; younger ones may still be read through a Snapshot of a
	// branch that was deleted or moved meanwhile. Zero means one hour.
	PruneAfter time.Duration

	// Reserve is the free space on the store's file system below which
	// data writes are refused with ErrNoSpace (CheckSpace, Spool,
	// Tx.PutBlobSpool), so that the store can always commit its own
	// records. Zero means 5% of the file system, at least 64 MiB but at
	// most a quarter of it; a negative value turns the reserve off.
	Reserve int64

	// statFS replaces statFS (tests of a full disk).
	statFS func(path string) (avail, total uint64, err error)

	// noSync skips fsync; only tests and benchmarks that fill a store set it.
	noSync bool
}

// Store is a versioned store over one bare git repository. Its methods are
// safe for concurrent use.
type Store struct {
	path string
	log  *slog.Logger
	opts Options

	// wmu serialises writers within the process; lockFile (flock) across
	// processes.
	wmu      sync.Mutex
	lockFile *os.File
	// fetchMu serialises Fetch (which takes no writer lock).
	fetchMu sync.Mutex
	// flockMu guards flockHeld (this process holds the flock) and
	// flockUsers (writers inside the lock); see holdFlock.
	flockMu    sync.Mutex
	flockHeld  bool
	flockUsers int
	// wal is the commit log (wal.go); nil when syncing is off. Guarded by
	// the writer lock.
	wal *wal
	// pend holds logged commits being written into the repository in
	// the background (pending.go); nil without a commit log.
	pend     *pending
	pendStop chan struct{}
	pendDone chan struct{}
	// pushPacks keeps the last pack pushed, for the next peer (pushpack.go).
	pushPacks pushPacks

	// mu guards st and repo: readers hold it shared, GC holds it exclusively
	// while it deletes objects that are now in a pack.
	mu   sync.RWMutex
	st   *gitStorage
	repo *git.Repository
	objs *objReader // the read paths' own object reader (objread.go)
	// objsNow is objs, for go-git's reads through gitStorage, which may
	// run without s.mu.
	objsNow atomic.Pointer[objReader]
	// packsMu orders changes to the set of packs (a batch's new pack,
	// deletions after a repack) against reloads that list them.
	packsMu sync.Mutex
	// gitStale is set when a pack was added without reopening go-git's
	// storage, which then does not know it; read reopens it first.
	gitStale atomic.Bool

	trees *treeCache

	merges     mergeRegistry
	validators validatorRegistry
	watch      watchHub
	authc      authCache
	authFlight singleflight.Group // concurrent checks of one name and password
	creds      credentials
	gcState    gcState
	// commitObs, if set, is told how long each Update's commit took
	// (SetCommitObserver).
	commitObs atomic.Pointer[func(time.Duration)]

	closeOnce sync.Once
	closed    chan struct{}
	bg        sync.WaitGroup
	// ckptRunning is set while an early checkpoint runs (maybeCheckpoint).
	ckptRunning atomic.Bool
}

// Init creates a new bare repository at path (creating the directory) with
// DefaultBranch as HEAD and no commits, and opens it. It refuses a path that
// already holds a repository or any other files (ErrExists).
func Init(path string, opts Options) (*Store, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("store: init %s: directory is not empty: %w", path, ErrExists)
	}
	_, err = git.PlainInitWithOptions(path, &git.PlainInitOptions{
		Bare: true,
		InitOptions: git.InitOptions{
			DefaultBranch: plumbing.NewBranchReferenceName(DefaultBranch),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	for _, d := range []string{tmpDir, "objects/pack", "objects/info", "refs/heads", "refs/tags"} {
		if err := os.MkdirAll(filepath.Join(path, d), 0o700); err != nil {
			return nil, fmt.Errorf("store: init %s: %w", path, err)
		}
	}
	if !opts.noSync {
		if err := syncTree(path); err != nil {
			return nil, fmt.Errorf("store: init %s: %w", path, err)
		}
	}
	return Open(path, opts)
}

// Open opens the repository at path. A path without a repository gives
// ErrNotExist; a damaged repository gives ErrCorrupt with what is wrong.
func Open(path string, opts Options) (_ *Store, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Author.Name == "" {
		opts.Author = Signature{Name: "nymote", Email: "nymote@localhost"}
	}
	if opts.PruneAfter == 0 {
		opts.PruneAfter = time.Hour
	}
	if opts.GCLooseObjects == 0 {
		opts.GCLooseObjects = 6700
	}
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: open %s: no repository: %w", path, ErrNotExist)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("store: open %s: not a directory: %w", path, ErrNotExist)
	}
	if _, err := os.Stat(filepath.Join(path, "HEAD")); err != nil {
		ents, _ := os.ReadDir(path)
		if len(ents) == 0 {
			return nil, fmt.Errorf("store: open %s: no repository (run init first): %w", path, ErrNotExist)
		}
		return nil, fmt.Errorf("store: open %s: HEAD is missing: %w", path, ErrCorrupt)
	}
	for _, d := range []string{"objects", "refs"} {
		if fi, err := os.Stat(filepath.Join(path, d)); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("store: open %s: %s/ is missing: %w", path, d, ErrCorrupt)
		}
	}
	s := &Store{
		path:   path,
		log:    opts.Logger,
		opts:   opts,
		closed: make(chan struct{}),
		// 64k tree entries a generation: up to about 10 MiB, the trees
		// of a few thousand recent lookups; less under a small memory
		// limit (see underMemoryLimit).
		trees: newTreeCache(int(underMemoryLimit(1<<16, 4096, 2048))),
	}
	// A commit log left by a crash or power cut is replayed first: the
	// repository may be missing what it holds.
	if fi, err := os.Stat(filepath.Join(path, walName)); err == nil && fi.Size() > 0 {
		if err := s.openLockFile(); err != nil {
			return nil, err
		}
		unlock, err := s.lockFor(context.Background(), false)
		if err != nil {
			s.lockFile.Close()
			return nil, err
		}
		err = s.replayWAL()
		unlock()
		if err != nil {
			s.lockFile.Close()
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
	}
	s.removeOrphanPacks()
	// Check before creating anything, so a damaged repository is left as
	// it was found.
	if err := s.reload(); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if s.lockFile == nil {
		if err := s.openLockFile(); err != nil {
			return nil, err
		}
	}
	if !opts.noSync {
		if s.wal, err = openWAL(path); err != nil {
			s.lockFile.Close()
			return nil, err
		}
		s.pend = newPending()
		s.mu.Lock()
		s.objs.pend = s.pend
		s.mu.Unlock()
		s.pendStop, s.pendDone = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(s.pendDone)
			s.runPending(s.pendStop)
		}()
	}
	s.cleanTmp()
	// Stores of earlier versions kept secrets in their history.
	if err := s.upgradeSecrets(context.Background()); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// openLockFile opens the file that writers flock (and the folder of
// temporary files).
func (s *Store) openLockFile() error {
	if err := os.MkdirAll(filepath.Join(s.path, tmpDir), 0o700); err != nil {
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	lf, err := os.OpenFile(filepath.Join(s.path, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: open %s: lock file: %w", s.path, err)
	}
	s.lockFile = lf
	return nil
}

// Path is the repository's directory.
func (s *Store) Path() string { return s.path }

// Close stops background work (repacking, watchers) and releases the
// repository. Calls after Close fail with ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.watch.closeAll()
	})
	// The background writer first (it starts merges of packs), with
	// writers held off so that nothing is queued after it stops.
	var cerr error
	s.wmu.Lock()
	if s.pend != nil && s.pendStop != nil {
		cerr = s.pend.drain()
		close(s.pendStop)
		<-s.pendDone
		s.pendStop = nil
	}
	s.wmu.Unlock()
	s.bg.Wait()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.wal != nil && s.lockFile != nil && cerr == nil {
		if cerr = flock(s.lockFile); cerr == nil {
			cerr = s.checkpoint()
			s.flockMu.Lock()
			syscall.Flock(int(s.lockFile.Fd()), syscall.LOCK_UN)
			s.flockHeld = false
			s.flockMu.Unlock()
		}
		s.wal.f.Close()
		s.wal = nil
	}
	s.mu.Lock()
	if s.objs != nil {
		s.objs.close()
	}
	s.mu.Unlock()
	if s.lockFile != nil {
		err := s.lockFile.Close()
		s.lockFile = nil
		return errors.Join(cerr, err)
	}
	return cerr
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// reload (re)creates the go-git storage and the object reader, so that
// packs written by GC or by another process are seen. Callers must not hold
// s.mu.
func (s *Store) reload() error {
	s.packsMu.Lock()
	defer s.packsMu.Unlock()
	s.gitStale.Store(false)
	st, repo, err := s.newStorage()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.st, s.repo = st, repo
	s.mu.Unlock()
	return s.reopenObjs()
}

// reopenObjs replaces the object reader with one over the packs there are
// now, closing the old one's files (which keep deleted packs on disk while
// open). The caller holds packsMu, not s.mu.
func (s *Store) reopenObjs() error {
	objs, err := openObjReader(s.path, s.trees)
	if err != nil {
		return fmt.Errorf("store: open %s: %v: %w", s.path, err, ErrCorrupt)
	}
	objs.pend = s.pend
	s.mu.Lock()
	old := s.objs
	s.objs = objs
	s.objsNow.Store(objs)
	s.mu.Unlock()
	if old != nil {
		old.close() // no reader holds it: they hold s.mu shared while reading
	}
	return nil
}

// reloadGit reopens go-git's storage only, after packs were added.
func (s *Store) reloadGit() error {
	s.packsMu.Lock()
	defer s.packsMu.Unlock()
	if !s.gitStale.Swap(false) {
		return nil
	}
	st, repo, err := s.newStorage()
	if err != nil {
		s.gitStale.Store(true)
		return err
	}
	s.mu.Lock()
	s.st, s.repo = st, repo
	s.mu.Unlock()
	return nil
}

// underMemoryLimit sizes a cache: full when the Go runtime has no memory
// limit (a host process), else the limit divided by div, at least least.
// The appliance sets the limit from the VM's memory before the store
// opens, so that in a 64 MiB VM (a limit of about 25 MiB) the tree cache
// holds 12k entries rather than 64k and go-git's object cache 1.5 MiB
// rather than 32.
func underMemoryLimit(full, least, div int64) int64 {
	lim := debug.SetMemoryLimit(-1)
	if lim == math.MaxInt64 {
		return full
	}
	return max(least, min(full, lim/div))
}

// newStorage opens the repository with go-git.
// Its pack indexes load at the first use that needs them (gitStorage).
func (s *Store) newStorage() (*gitStorage, *git.Repository, error) {
	lru := underMemoryLimit(32<<20, 1<<20, 16)
	st := &gitStorage{Storage: filesystem.NewStorageWithOptions(osfs.New(s.path), cache.NewObjectLRU(cache.FileSize(lru)), filesystem.Options{}), s: s}
	repo, err := git.Open(st, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("store: open %s: %v: %w", s.path, err, ErrCorrupt)
	}
	return st, repo, nil
}

// check makes sure that every branch points at a readable commit and tree.
func (s *Store) check() error {
	branches, err := s.Branches()
	if err != nil {
		return fmt.Errorf("%v: %w", err, ErrCorrupt)
	}
	for _, b := range branches {
		snap, err := s.Snapshot(b.Name)
		if err != nil {
			return fmt.Errorf("branch %s: %v: %w", b.Name, err, ErrCorrupt)
		}
		if _, err := snap.ReadDir(""); err != nil {
			return fmt.Errorf("branch %s at %s: %v: %w", b.Name, b.Head, err, ErrCorrupt)
		}
	}
	return nil
}

// lock takes the writer lock: the process-wide mutex, then the repository's
// flock. The returned function releases both. Writers other than Update's
// commits write durably themselves, so lock first empties the commit log
// (checkpoint): whatever they write then comes after everything it held.
func (s *Store) lock(ctx context.Context) (func(), error) {
	return s.lockFor(ctx, true)
}

// lockFor is lock, with the checkpoint only if checkpoint is set.
func (s *Store) lockFor(ctx context.Context, checkpoint bool) (func(), error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	s.wmu.Lock()
	if s.lockFile == nil {
		s.wmu.Unlock()
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		s.wmu.Unlock()
		return nil, err
	}
	if err := s.holdFlock(); err != nil {
		s.wmu.Unlock()
		return nil, fmt.Errorf("store: lock %s: %w", s.path, err)
	}
	unlock := func() {
		s.releaseFlock(true)
		s.wmu.Unlock()
	}
	if checkpoint {
		if err := s.checkpoint(); err != nil {
			unlock()
			return nil, err
		}
	}
	return unlock, nil
}

// lockBranches is lock for a writer that moves only branches (a push's
// commands): the commit log is emptied first only if it may hold a
// record that moves one of them. A replica's push to its branch here
// (replica/PEER), which no local commit moves, then costs no checkpoint
// (draining the pending commits and syncing the whole file system) under
// the writer lock, where local commits wait.
func (s *Store) lockBranches(ctx context.Context, branches []string) (func(), error) {
	unlock, err := s.lockFor(ctx, false)
	if err != nil {
		return nil, err
	}
	if s.wal != nil && slices.ContainsFunc(branches, s.wal.holds) {
		if err := s.checkpoint(); err != nil {
			unlock()
			return nil, err
		}
	}
	return unlock, nil
}

// holdFlock takes the repository's flock for a writer, unless the store
// holds it already: it keeps it while commits are pending (pending.go), so
// that no other process writes, or replays the commit log, while this one
// has commits that are durable in the log but not yet in the repository's
// files. The lock is given back after a batch leaves the queue empty (at
// most batchDelay after the last commit), so under a steady stream of
// commits faster than the batches another process may wait until the
// stream pauses. The caller holds wmu.
func (s *Store) holdFlock() error {
	s.flockMu.Lock()
	defer s.flockMu.Unlock()
	if !s.flockHeld {
		if err := flock(s.lockFile); err != nil {
			return err
		}
		if s.wal != nil {
			// Another Store on this repository may have written
			// while this one did not hold the lock.
			if err := s.wal.follow(); err != nil {
				syscall.Flock(int(s.lockFile.Fd()), syscall.LOCK_UN)
				return err
			}
		}
		s.flockHeld = true
	}
	s.flockUsers++
	return nil
}

// releaseFlock gives the flock back once no writer holds it and no commit
// is pending. A writer's unlock calls it with done set; the pending writer
// calls it after each batch.
func (s *Store) releaseFlock(done bool) {
	s.flockMu.Lock()
	defer s.flockMu.Unlock()
	if done {
		s.flockUsers--
	}
	if !s.flockHeld || s.flockUsers > 0 || s.lockFile == nil {
		return
	}
	if s.pend != nil && s.pend.busy() {
		return
	}
	syscall.Flock(int(s.lockFile.Fd()), syscall.LOCK_UN)
	s.flockHeld = false
}

// flock takes f's exclusive flock, retrying when interrupted.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// read runs fn with the storage held shared. If an object is missing, which
// happens when another process repacked the repository, it reloads the
// storage and tries once more.
func (s *Store) read(fn func(r *git.Repository) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	// go-git reads the repository's files: logged commits must be there.
	if s.pend != nil {
		if err := s.pend.drain(); err != nil {
			return err
		}
	}
	if s.gitStale.Load() {
		if err := s.reloadGit(); err != nil {
			return err
		}
	}
	return s.retryMissing(func() error { return fn(s.repo) })
}

// readRefs runs fn with the go-git repository to read references only,
// without waiting for pending commits (whose heads the caller has looked up
// in s.pend first).
func (s *Store) readRefs(fn func(r *git.Repository) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return fn(s.repo)
}

// readObjsOnce runs fn with the store's object reader, without reloading
// when an object is missing.
func (s *Store) readObjsOnce(fn func(o *objReader) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return fn(s.objs)
}

// readObjs runs fn with the store's object reader, as read does with the
// go-git repository (reloading once if an object is missing).
func (s *Store) readObjs(fn func(o *objReader) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	return s.retryMissing(func() error { return fn(s.objs) })
}

// retryMissing runs fn with s.mu held shared; if fn finds an object
// missing, it reloads the storage and the object reader and runs fn once
// more.
func (s *Store) retryMissing(fn func() error) error {
	s.mu.RLock()
	err := fn()
	s.mu.RUnlock()
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		if rerr := s.reload(); rerr != nil {
			return rerr
		}
		s.mu.RLock()
		err = fn()
		s.mu.RUnlock()
	}
	return err
}

// RepoDir is the folder of a data directory (a data disk's root, or the
// --data folder of a service on a host) that holds the store's repository.
const RepoDir = "store.git"

// OpenData opens the store of a data directory.
func OpenData(dataDir string, opts Options) (*Store, error) {
	return Open(filepath.Join(dataDir, RepoDir), opts)
}

// InitData creates the store of a data directory (which may already exist
// and hold other files, such as an ext4 root's lost+found).
func InitData(dataDir string, opts Options) (*Store, error) {
	return Init(filepath.Join(dataDir, RepoDir), opts)
}
