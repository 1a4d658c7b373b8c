// Package mailstore keeps mail in Nymote's versioned store: per user a set of
// mailboxes, each a folder of messages with IMAP's UIDs, flags and internal
// dates, every change one durable commit.
//
// Layout under the store's root (BOX is a mailbox's stable id, so that RENAME
// rewrites one small item; KEY is a message's key, made from its content,
// so that replicas that add different messages never write the same path,
// and replicas that add the same one write one):
//
//	mail/USER/BOX/mailbox.json            name, special use, subscription, HIGHESTMODSEQ, first UIDVALIDITY, layout
//	mail/USER/BOX/a/b/c/d/KEY.eml         the raw message, never changed
//	mail/USER/BOX/a/b/c/d/KEY.meta        home UID and UID space, internal date, size, parse cache, append MODSEQ
//	mail/USER/BOX/flags/HI/N              flags of home UIDs N*256 to N*256+255
//	mail/USER/subscriptions               names subscribed that are not mailboxes
//
// and beside the repository, in the node's own files (store.NodeDir, never
// replicated; see local.go and "Replicas" below):
//
//	mail/USER/BOX.uids                    this node's UIDVALIDITY, UIDNEXT, \Recent mark,
//	                                      expunged UIDs, UIDs of messages appended elsewhere,
//	                                      UID ceiling, last commit the index followed
//
// UIDNEXT is one above the highest UID in the mailbox, or what the UID file
// says if that is higher: an APPEND writes only the message's items (its
// UID is in its .meta), and EXPUNGE records UIDNEXT so that it never goes
// back.
//
// Messages are sharded by the SHA-256 of their key, four levels of 16
// folders (Layout16; mailboxes made before it have two levels of 256,
// xx/yy/, Layout256, until Relayout rewrites them: see layout.go), so that
// an APPEND writes a handful of small trees whatever the mailbox's size;
// flags sit in chunks of 256 UIDs (see flags.go) so that STORE on many
// messages writes few items.
//
// A Store keeps an in-memory index of each user's mailboxes, loaded on the
// user's first use, changed by this process's writes after their commit, and
// brought up to date from store.Watch for commits made by others (git push,
// merges). Sessions see changes through imapserver's MailboxTracker, which
// gives IMAP IDLE its push.
//
// Replicas (package replica). A person's nodes each hold the whole mail
// store and accept every write while cut off from each other; when they
// meet, commits merge with Merge (the merge function of mail/). The model:
//
//   - Identity: a message is its KEY (made from its content where it was
//     appended, see below; kept by MOVE), in a mailbox identified by BOX
//     (random, made where the mailbox was created). Nothing in the tree
//     that a merge may choose between is what a node's clients see:
//     different messages never share a path, and a merge that meets two
//     records of one message keeps one without changing a node's UID.
//   - UIDs are each node's own (local.go). A node keeps per mailbox a node
//     file (never committed or replicated) with its UIDVALIDITY, its
//     UIDNEXT, its expunged UIDs (QRESYNC's VANISHED) and the UIDs it gave
//     messages that other nodes appended. A message appended on a node
//     gets that node's UIDNEXT, recorded in its .meta with the node's UID
//     space (a random id), in the commit of the APPEND; a message that a
//     merge brings gets the node's UIDNEXT then (in key order within one
//     merge, after the home UIDs that other nodes gave them), written
//     and synced before any session sees it. So on every node UIDs are
//     unique, ascend in the order the node learnt of the messages, are
//     never reused (an expunged UID, and UIDNEXT, are synced before the
//     EXPUNGE commits), and never change: merges renumber nothing. A
//     merge that expunges a message appended here while the index is not
//     following (a crash after the merge commit, the user not loaded) is
//     found at the next load (local.go: UID ceiling, last followed commit),
//     so its UID is in VANISHED and never given again. One
//     message has different UIDs on different nodes, as the same message
//     in two mailboxes does.
//   - UIDVALIDITY is the node's, chosen when the mailbox first exists on
//     the node (created there, or brought by a merge or a clone) and never
//     changed by a merge. A clone starts its UIDs afresh under a
//     UIDVALIDITY of its own, so that a client that moves from one node to
//     another resynchronizes instead of mixing two nodes' UIDs. A node
//     whose UID file is lost or damaged starts afresh too (a new
//     UIDVALIDITY), as IMAP asks when UIDs are lost; so did every mailbox
//     once when nodes moved to this model.
//   - Flags sit in chunks by the message's home UID (the one its .meta
//     holds, given by the appending node; see flags.go),
//     one line per message KEY, so a message's flags are on one line on
//     every node and merge per message and per flag (three-way: a flag in
//     the base stays only if neither side removed it; one not in the base
//     is kept if either side added it). A write of a chunk applies its
//     changes to the chunk as the commit's base has it, not as the index
//     has it, so that flags that a merge brought before the index followed
//     it are not lost.
//   - A flag change and an expunge of the same message: the expunge wins
//     (a deleted side deletes; a flags line left for a message that is
//     gone is ignored and dropped at the chunk's next write, unless
//     another of the user's mailboxes holds its key: a MOVE's, below).
//   - MOVE (Writer.Move) expunges the message from the source and adds it
//     to the target under the same KEY, so it keeps its identity. A flag
//     that another node added meanwhile to the original leaves, when the
//     nodes merge, a line for that key in the source's flags chunk (the
//     merge keeps what one side added, and the message is gone there);
//     the node that follows such a merge finds the key in another of the
//     user's mailboxes and adds the flags there, in one commit that also
//     drops the stray line (resyncStrays; every node that does it makes
//     the same change; a write to that chunk before the index follows the
//     merge keeps the line for it). A flag removed meanwhile leaves an unset mark
//     ("*FLAG") on that stray line (mergeChunk: the base had the line,
//     one side lost it, the other dropped the flag), and the flag is
//     removed from the moved message likewise. So MOVE on one node and a
//     flag change (additions and removals, per flag) on another give one
//     moved message with the change. A node that was not following (down,
//     or the user not loaded) when it merged does this when it loads the
//     user. COPY gives the copy a key of its own (contentKey), so
//     that a change to the original (a flag set on it on another node
//     while this one expunged it) never lands on the copy.
//   - The same message appended to one mailbox on two nodes apart (one
//     SMTP delivery retried to both) is one message: a message's KEY is
//     made from its content and the number of messages with that key the
//     mailbox already holds (contentKey), so both nodes write one path.
//     The merge keeps one of the two records (.meta: the higher home UID);
//     each node keeps the UID it gave the message (the node whose record
//     lost writes it into its UID file). Its flags merge per flag
//     wherever the two records put its flags line: in one chunk, by
//     mergeChunk; in two (home UIDs in different 256-UID chunks), the
//     node that follows the merge finds the line in the chunk of the
//     record that lost (from the merged chunk, or from the old chunk of a
//     message whose record changed) and folds it into the message's line
//     in the chunk of the record that won, in one commit that drops the
//     old line (resyncStrays; every node makes the same change, a node
//     that was not following does it when it loads the user). The flags
//     of both nodes' lines are kept (their base had no line), and a later
//     removal on either node merges per flag as on any message.
//     Appended twice on one node it is two messages (two keys).
//   - mailbox.json holds what replicates: name, subscription, special use
//     (changed on both sides: the greater value, the same on every node),
//     HIGHESTMODSEQ (the higher), the UIDVALIDITY the mailbox was created
//     with (not the one clients see).
//   - Default mailboxes (INBOX, Drafts, Sent, ...) are created on a
//     user's first use with ids made from the user and the name
//     (defaultBoxID): two nodes that each saw the user first make the same
//     mailboxes, which merge into one each. Any other mailbox has a random
//     id, so one CREATEd under the same name on two nodes apart (or two
//     RENAMEd to one name) is two mailboxes after the merge. The node that
//     follows the merge (or loads the user after it) renames all but the
//     one with the lowest id to NAME-ID (the id's first 8 characters, the
//     whole id if that name is taken) in a commit of its own, as Dovecot's
//     dsync does (samename.go): a function of the merged tree alone, so
//     every node makes the same commit and those merge cleanly. Each keeps
//     its messages, UIDs and UIDVALIDITY; nothing moves between them.
package mailstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// Prefix is the store folder that holds all mail.
const Prefix = "mail"

// Delim is the mailbox hierarchy delimiter.
const Delim = '/'

// Errors that callers branch on.
var (
	ErrNoMailbox     = errors.New("mailstore: no such mailbox")
	ErrMailboxExists = errors.New("mailstore: mailbox already exists")
	ErrBadName       = errors.New("mailstore: invalid mailbox name")
	ErrNoUser        = errors.New("mailstore: no such user")
)

// DefaultMailboxes are created for every user on first use, with their
// special use (RFC 6154).
var DefaultMailboxes = []struct {
	Name string
	Use  imap.MailboxAttr
}{
	{"INBOX", ""},
	{"Drafts", imap.MailboxAttrDrafts},
	{"Sent", imap.MailboxAttrSent},
	{"Trash", imap.MailboxAttrTrash},
	{"Junk", imap.MailboxAttrJunk},
	{"Archive", imap.MailboxAttrArchive},
}

// Store is the mail of every user of a store.Store.
type Store struct {
	st  *store.Store
	log *slog.Logger

	mu    sync.Mutex
	users map[string]*User

	// wmu serializes writes and their application to the index, so the
	// index changes in commit order.
	wmu sync.Mutex
	own map[store.Hash]store.Hash // commits made here: new head -> base

	// Updates waiting for the write lock; whoever gets it commits them all
	// in one commit (group commit).
	qmu   sync.Mutex
	queue []*request

	cache *rawCache
	sums  *summaryCache
	hdrs  *byteLRU[store.Hash, string] // headers for SEARCH (search.go)

	// Background writes (see goBackground); Close waits for them.
	bgMu     sync.Mutex
	bgClosed bool
	bg       sync.WaitGroup

	// followed is the last commit the index followed, every commit before
	// it included (zero if one could not be followed); guarded by wmu.
	// The UID files of the mailboxes a followed commit changed record it
	// (see uidSpace).
	followed store.Hash
	noted    map[store.Hash]bool // own commits that updateLocked noted

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// Options configure Open.
type Options struct {
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// RawCacheBytes bounds the in-memory cache of raw messages (recently
	// read or written). Zero means DefaultRawCacheBytes(); negative turns
	// it off.
	RawCacheBytes int64
	// SummaryCacheBytes bounds the in-memory cache of message summaries
	// (envelopes, body structures, headers). Zero means
	// DefaultSummaryCacheBytes(); negative turns it off (every FETCH of an
	// envelope reads the message's .meta). A quarter of it more bounds
	// the cache of headers that SEARCH reads (search.go).
	SummaryCacheBytes int64
}

// Open starts serving the mail in st. Close stops it (not st).
func Open(st *store.Store, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The head before the watch starts: the index follows from there (a
	// commit between the two makes Close record nothing, which is safe).
	head, err := st.BranchHead("")
	if err != nil {
		return nil, fmt.Errorf("mailstore: %w", err)
	}
	w, err := st.Watch("", Prefix+"/")
	if err != nil {
		return nil, fmt.Errorf("mailstore: watch: %w", err)
	}
	n := opts.RawCacheBytes
	if n == 0 {
		n = DefaultRawCacheBytes()
	}
	sumBytes := opts.SummaryCacheBytes
	if sumBytes == 0 {
		sumBytes = DefaultSummaryCacheBytes()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{st: st, log: log, users: map[string]*User{}, own: map[store.Hash]store.Hash{},
		cache: newRawCache(n), sums: newSummaryCache(sumBytes), hdrs: newByteLRU[store.Hash, string](sumBytes / 4), ctx: ctx, cancel: cancel, done: make(chan struct{}),
		followed: head, noted: map[store.Hash]bool{}}
	go s.watch(w)
	return s, nil
}

// Close finishes the background writes and stops following the store.
func (s *Store) Close() error {
	s.bgMu.Lock()
	s.bgClosed = true
	s.bgMu.Unlock()
	s.bg.Wait()
	s.cancel()
	<-s.done
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		for _, mb := range u.Mailboxes() {
			s.closeSpace(mb, false)
		}
	}
	return nil
}

// goBackground runs fn in a goroutine that Close waits for (not at all once
// Close has begun).
func (s *Store) goBackground(fn func()) {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.bgClosed {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn()
	}()
}

// Backing returns the underlying store.
func (s *Store) Backing() *store.Store { return s.st }

func (s *Store) watch(w *store.Watcher) {
	defer close(s.done)
	defer w.Close()
	for {
		ev, err := w.Next(s.ctx)
		if err != nil {
			return
		}
		s.wmu.Lock()
		ok := true
		if base, mine := s.own[ev.New]; mine && base == ev.Old {
			delete(s.own, ev.New)
		} else if err := s.resync(ev.Paths); err != nil {
			s.log.Warn("mail: following a commit", "commit", ev.New.String(), "err", err)
			ok = false
		}
		switch {
		case ok && s.noted[ev.New]:
			// Own commits (several, if the watch coalesced them) that
			// updateLocked noted.
			delete(s.noted, ev.New)
		case ok && !s.followed.IsZero() && s.followed == ev.Old:
			s.followed = ev.New
			s.noteFollowed(ev.New, s.boxesOf(ev.Paths))
		default:
			s.followed = store.Hash{}
		}
		s.wmu.Unlock()
	}
}

// noteFollowed writes to the UID files of mailboxes (loaded ones that a
// commit changed) that the index has followed them up to commit (not
// synced: a line lost in a crash only makes the next load look for the
// expunges it may have missed). The caller holds s.wmu.
func (s *Store) noteFollowed(commit store.Hash, boxes map[*Mailbox]bool) {
	for mb := range boxes {
		if mb.loc == nil {
			continue
		}
		if err := s.logSpace(mb, []string{"c " + commit.String()}, false); err != nil {
			s.log.Warn("mail: UID file", "mailbox", mb.ID, "err", err)
		}
	}
}

// boxesOf returns the loaded mailboxes that hold paths.
func (s *Store) boxesOf(paths []string) map[*Mailbox]bool {
	done := map[*Mailbox]bool{}
	for _, p := range paths {
		parts := strings.SplitN(p, "/", 4)
		if len(parts) < 4 || parts[0] != Prefix {
			continue
		}
		s.mu.Lock()
		u := s.users[parts[1]]
		s.mu.Unlock()
		if u == nil {
			continue
		}
		u.mu.RLock()
		mb := u.boxes[parts[2]]
		u.mu.RUnlock()
		if mb != nil {
			done[mb] = true
		}
	}
	return done
}

// User returns a user's mail, loading the index on first use and creating
// the default mailboxes for a user who has none. The user must exist in the
// store (ErrNoUser otherwise).
func (s *Store) User(ctx context.Context, name string) (*User, error) {
	s.mu.Lock()
	u := s.users[name]
	s.mu.Unlock()
	if u != nil {
		return u, nil
	}
	if _, err := s.st.LookupUser(name); err != nil {
		if errors.Is(err, store.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNoUser, name)
		}
		return nil, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	u = s.users[name]
	s.mu.Unlock()
	if u != nil {
		return u, nil
	}
	u, err := s.loadUser(name)
	if err != nil {
		return nil, err
	}
	if len(u.boxes) == 0 {
		err := s.updateLocked(ctx, name, "mail: create the mailboxes of "+name, func(w *Writer) error {
			for _, d := range DefaultMailboxes {
				if _, err := w.create(u, d.Name, d.Use, defaultBoxID(name, d.Name)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// Shared only once complete: others look users up without s.wmu.
	s.mu.Lock()
	s.users[name] = u
	s.mu.Unlock()
	// Flags lines that a merge left where the index does not read them
	// (this node was down, or had not loaded the user, when it merged)
	// follow their messages now, as resync would have made them.
	if strays := u.loadStrays; len(strays) > 0 {
		u.loadStrays = nil
		if err := s.resyncStrays(strays); err != nil {
			s.log.Warn("mail: folding stray flags lines", "user", name, "err", err)
		}
	}
	// Mailboxes made under one name on two nodes, merged while the user
	// was not loaded here (samename.go).
	if err := s.renameSameNames(u); err != nil {
		s.log.Warn("mail: renaming mailboxes of one name", "user", name, "err", err)
	}
	return u, nil
}

// Update makes one commit of the writes fn makes through w, authored by user
// (may be ""), and applies them to the index once it is durable. fn runs
// under the mailstore's write lock: it must not call User or Update, and it
// may run twice (see below), so it must only write through w and set
// results.
//
// Updates that arrive while another is committing are committed together
// in one commit when the lock frees (group commit), so that concurrent
// deliveries and APPENDs share the cost of the fsyncs. If one of them fails,
// nothing of the batch is written; the others run again together and the
// one that failed runs last, alone.
func (s *Store) Update(ctx context.Context, user, message string, fn func(w *Writer) error) error {
	r := &request{ctx: ctx, user: user, message: message, fn: fn, done: make(chan error, 1)}
	s.qmu.Lock()
	s.queue = append(s.queue, r)
	s.qmu.Unlock()
	s.wmu.Lock()
	select {
	case err := <-r.done: // committed by the previous holder of the lock
		s.wmu.Unlock()
		return err
	default:
	}
	s.qmu.Lock()
	batch := s.queue
	s.queue = nil
	s.qmu.Unlock()
	s.commitBatch(batch)
	s.wmu.Unlock()
	return DiskFull(<-r.done)
}

// ErrDiskFull is returned by Update when the data disk is full: the store's
// reserve refused new mail (store.ErrNoSpace), or the disk itself had no
// room left (ENOSPC). It is IMAP's NO [OVERQUOTA] with a text that says
// so, which imapserver answers as it is; SMTP answers 452.
var ErrDiskFull = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota,
	Text: "The data disk is full: delete mail, or try again later"}

// DiskFull adds ErrDiskFull to the errors of a full disk (store.ErrNoSpace,
// ENOSPC) and returns others as they are.
func DiskFull(err error) error {
	if err != nil && (errors.Is(err, store.ErrNoSpace) || errors.Is(err, syscall.ENOSPC)) && !errors.Is(err, ErrDiskFull) {
		return fmt.Errorf("mailstore: %w (%w)", ErrDiskFull, err)
	}
	return err
}

type request struct {
	ctx           context.Context
	user, message string
	fn            func(w *Writer) error
	done          chan error
}

// maxBatch bounds the updates in one commit.
const maxBatch = 64

// commitBatch commits the requests, as few commits as it can, and tells
// each its outcome. The caller holds s.wmu.
func (s *Store) commitBatch(batch []*request) {
	for len(batch) > 0 {
		n := min(len(batch), maxBatch)
		s.commitPart(batch[:n])
		batch = batch[n:]
	}
}

type batchError struct {
	i   int
	err error
}

func (e *batchError) Error() string { return e.err.Error() }

func (s *Store) commitPart(part []*request) {
	if len(part) == 0 {
		return
	}
	if len(part) == 1 {
		r := part[0]
		r.done <- s.updateLocked(r.ctx, r.user, r.message, r.fn)
		return
	}
	user := part[0].user
	msgs := make([]string, 0, len(part))
	for _, r := range part {
		if r.user != user {
			user = ""
		}
		msgs = append(msgs, r.message)
	}
	message := fmt.Sprintf("mail: %d changes\n\n%s", len(part), strings.Join(msgs, "\n"))
	err := s.updateLocked(context.WithoutCancel(part[0].ctx), user, message, func(w *Writer) error {
		for i, r := range part {
			err := r.ctx.Err()
			if err == nil {
				err = r.fn(w)
			}
			if err != nil {
				return &batchError{i, err}
			}
		}
		return nil
	})
	var be *batchError
	switch {
	case err == nil:
		for _, r := range part {
			r.done <- nil
		}
	case errors.As(err, &be):
		// Nothing was written. The others go again together, and the one
		// that failed goes last, alone, to get its own answer.
		rest := append(append([]*request(nil), part[:be.i]...), part[be.i+1:]...)
		s.commitPart(rest)
		r := part[be.i]
		r.done <- s.updateLocked(r.ctx, r.user, r.message, r.fn)
	default:
		for _, r := range part {
			r.done <- s.updateLocked(r.ctx, r.user, r.message, r.fn)
		}
	}
}

func (s *Store) updateLocked(ctx context.Context, user, message string, fn func(w *Writer) error) error {
	var w *Writer
	opts := store.CommitOptions{Message: message}
	if user != "" {
		opts.Author = store.Signature{Name: user, Email: user + "@localhost"}
	}
	var base store.Hash
	head, err := s.st.Update(ctx, opts, func(tx *store.Tx) error {
		w = &Writer{s: s, tx: tx, infos: map[*Mailbox]*MailboxInfo{}, flags: map[*Message][]imap.Flag{},
			added: map[*Mailbox][]*Message{}, gone: map[*Message]bool{},
			usage: map[*User]Usage{}, quotas: map[*User]store.Quota{}}
		base = tx.Base()
		if err := fn(w); err != nil {
			return err
		}
		if err := w.flush(); err != nil {
			return err
		}
		return w.writeLocal()
	})
	if err != nil {
		return err
	}
	if head != base {
		if len(s.own) > 4096 {
			clear(s.own)
		}
		s.own[head] = base
	}
	for _, f := range w.apply {
		f()
	}
	if head != base && s.followed == base && !base.IsZero() {
		// Every commit before this one is followed: note it now (the
		// watch skips it), so that a restart right after finds it.
		s.followed = head
		if len(s.noted) > 4096 {
			clear(s.noted)
		}
		s.noted[head] = true
		s.noteFollowed(head, w.touched())
	}
	return nil
}

// User is one user's mail.
type User struct {
	Name string
	s    *Store

	mu    sync.RWMutex
	boxes map[string]*Mailbox // by id
	// uvHigh is the highest UIDVALIDITY this process gave a mailbox of the
	// user, deleted ones included (see takeUIDValidity); guarded by mu.
	uvHigh uint32
	// subs are the names subscribed without a mailbox (subscriptions.go);
	// guarded by mu.
	subs map[string]bool
	// loadStrays are the stray flags lines found at load (see
	// resyncStrays), folded in once the user is loaded.
	loadStrays []stray
}

// takeUIDValidity returns the UIDVALIDITY for a new mailbox: uv, or above
// every one given before by this process. A mailbox deleted and created
// again within the same second (uv is the time) so never gets the
// UIDVALIDITY it had, which RFC 3501 2.3.1.1 forbids when UIDs restart.
func (u *User) takeUIDValidity(uv uint32) uint32 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.takeUIDValidityLocked(uv)
}

func (u *User) takeUIDValidityLocked(uv uint32) uint32 {
	if uv <= u.uvHigh {
		uv = u.uvHigh + 1
	}
	u.uvHigh = uv
	return uv
}

// MailboxInfo is what mailbox.json holds.
type MailboxInfo struct {
	Name        string             `json:"name"`
	UIDValidity uint32             `json:"uidvalidity"`
	UIDNext     imap.UID           `json:"uidnext"`
	SpecialUse  []imap.MailboxAttr `json:"special_use,omitempty"`
	Subscribed  bool               `json:"subscribed"`
	// RecentFrom is the first UID that no read-write session has had as
	// \Recent yet, so that \Recent survives a restart. Zero (a mailbox
	// written before it was kept) means UIDNext.
	RecentFrom imap.UID `json:"recent_from,omitempty"`
	// HighestModSeq is the mailbox's HIGHESTMODSEQ when this was written
	// (see modseq.go); EXPUNGE writes it, so that it never goes back.
	HighestModSeq uint64 `json:"highestmodseq,omitempty"`
	// Vanished are the UIDs expunged, with the MODSEQ of their expunge
	// (QRESYNC, RFC 7162 3.2; see modseq.go). Those expunged at or
	// before VanishedFloor have been forgotten.
	Vanished      []VanishedRange `json:"vanished,omitempty"`
	VanishedFloor uint64          `json:"vanished_floor,omitempty"`
	// Layout is where the mailbox writes its messages' items: Layout16,
	// or (zero) Layout256.
	Layout int `json:"layout,omitempty"`
}

// Message is one message of a mailbox, as the index holds it.
type Message struct {
	Key string
	// UID is the message's UID on this node; home is the one that the node
	// that appended it gave it (in its .meta, where its flags line is
	// kept: see flags.go).
	UID  imap.UID
	home imap.UID
	Date time.Time
	Size int64

	// s and meta read the summary (Summary); blob is the hash of the raw
	// message's blob (zero if unknown), so that reading it skips the
	// trees on its path. (A Message is about 144 bytes, a few of them
	// for each message of every mailbox loaded: a field more is 50,000
	// times more in a 50,000-message mailbox.)
	s    *Store
	meta store.Hash
	blob store.Hash

	flags flagList // sorted; guarded by the mailbox's mu

	// modseq is the message's MODSEQ, metaModSeq the one in its .meta
	// (its append's); guarded by the mailbox's mu. See modseq.go.
	modseq, metaModSeq uint64
}

type msgMeta struct {
	UID     imap.UID  `json:"uid"`
	Space   string    `json:"space,omitempty"` // the UID space of UID (local.go)
	Date    time.Time `json:"date"`
	Size    int64     `json:"size"`
	Summary *Summary  `json:"cache"` // the on-disk name from before the rename
	ModSeq  uint64    `json:"modseq,omitempty"`
}

// msgMetaIndex is what the index keeps of a .meta: its summary is read
// when needed (Message.Summary).
type msgMetaIndex struct {
	UID    imap.UID  `json:"uid"`
	Space  string    `json:"space,omitempty"`
	Date   time.Time `json:"date"`
	Size   int64     `json:"size"`
	ModSeq uint64    `json:"modseq,omitempty"`
}

func userDir(user string) string         { return Prefix + "/" + user }
func boxDir(user, id string) string      { return userDir(user) + "/" + id }
func boxInfoPath(user, id string) string { return boxDir(user, id) + "/mailbox.json" }

// defaultBoxID is the id of a default mailbox: the same on every node, so
// that two replicas that each made a user's mailboxes at its first use
// (a node cloned before the user had any) make the same mailboxes, which
// merge into one (mergeInfo), not two INBOXes. Any other mailbox gets a
// random id (newKey) at its CREATE.
func defaultBoxID(user, name string) string {
	h := sha256.Sum256([]byte("nymote default mailbox\x00" + user + "\x00" + name))
	return hex.EncodeToString(h[:6])
}

func newKey() string {
	var b [10]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Store) loadUser(name string) (*User, error) {
	u := &User{Name: name, s: s, boxes: map[string]*Mailbox{}}
	sn, err := s.st.Snapshot("")
	if err != nil {
		return nil, err
	}
	top, err := sn.ReadDir(userDir(name))
	if err != nil {
		return nil, fmt.Errorf("mailstore: list %s: %w", name, err)
	}
	// The trees of the user's mailboxes at a commit that a UID file says
	// the index followed (see uidSpace), by commit.
	seen := map[string]map[string]store.Hash{}
	at := func(commit string) map[string]store.Hash {
		if m, ok := seen[commit]; ok {
			return m
		}
		m := map[string]store.Hash{}
		seen[commit] = m
		var h store.Hash
		if b, err := hex.DecodeString(commit); err != nil || len(b) != len(h) {
			return m
		} else {
			copy(h[:], b)
		}
		csn, err := s.st.SnapshotOf(h)
		if err != nil {
			return m
		}
		ents, err := csn.ReadDir(userDir(name))
		if err != nil {
			return m
		}
		for _, e := range ents {
			if e.Dir {
				m[path.Base(e.Path)] = e.Hash
			}
		}
		return m
	}
	for _, e := range top {
		if !e.Dir {
			if path.Base(e.Path) == "subscriptions" {
				data, err := sn.Read(e.Path)
				if err != nil {
					return nil, err
				}
				u.subs = parseSubs(data)
			}
			continue
		}
		if err := s.loadMailbox(sn, u, e.Path, e.Hash, at); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// loadMailbox adds the mailbox in folder dir to u's index, walking its
// message shards one folder at a time (a listing of the whole mailbox
// would hold every path of a 50,000-message mailbox at once).
func (s *Store) loadMailbox(sn *store.Snapshot, u *User, dir string, tree store.Hash, at func(commit string) map[string]store.Hash) error {
	entries, err := sn.ReadDir(dir)
	if err != nil {
		return err
	}
	id := path.Base(dir)
	var mb *Mailbox
	for _, e := range entries {
		if !e.Dir && path.Base(e.Path) == "mailbox.json" {
			data, err := sn.Read(e.Path)
			if err != nil {
				return err
			}
			if mb, err = newMailbox(u, id, data); err != nil {
				s.log.Warn("mail: skipping a damaged mailbox", "path", e.Path, "err", err)
				return nil
			}
		}
	}
	if mb == nil {
		return nil
	}
	u.boxes[id] = mb
	// The UID file first, so that each message gets its UID here as it
	// is read (rather than a map of every message's UID space, kept until
	// all are read).
	sp, ss, err := s.readSpace(u.Name, id)
	if err != nil {
		return err
	}
	var chunks []store.Entry
	// walk reads the messages under dir, depth folders below the
	// mailbox's; they are in its leaves, at depth deep (see Layout256
	// and Layout16).
	var walk func(dir string, depth, deep int) error
	walk = func(dir string, depth, deep int) error {
		entries, err := sn.ReadDir(dir)
		if err != nil {
			return err
		}
		// A shard folder holds a few messages: a .meta and an .eml
		// each, in name order.
		var emls []store.Entry
		for _, e := range entries {
			if e.Dir {
				if depth < deep {
					if err := walk(e.Path, depth+1, deep); err != nil {
						return err
					}
				}
				continue
			}
			if depth == deep && strings.HasSuffix(e.Path, ".eml") {
				emls = append(emls, e)
			}
		}
		if depth != deep {
			return nil
		}
		for _, e := range entries {
			base := path.Base(e.Path)
			if e.Dir || path.Ext(base) != ".meta" {
				continue
			}
			name := strings.TrimSuffix(base, ".meta")
			if name == "" {
				continue
			}
			data, err := sn.Read(e.Path)
			if err != nil {
				return err
			}
			m, err := decodeMetaIndex(data)
			if err != nil {
				s.log.Warn("mail: skipping a damaged message", "path", e.Path, "err", err)
				continue
			}
			// A copy: a substring would keep the whole path (about 80
			// bytes) alive for as long as the message is in the index.
			key := strings.Clone(name)
			msg := &Message{Key: key, home: m.UID, Date: m.Date, Size: m.Size, s: s, meta: e.Hash}
			for _, x := range emls {
				if strings.TrimSuffix(path.Base(x.Path), ".eml") == key {
					msg.blob = x.Hash
					break
				}
			}
			if sp != nil {
				msg.UID = sp.localUID(key, m.Space, m.UID)
			}
			msg.setMetaModSeq(m.ModSeq)
			mb.noteModSeqLocked(msg.modseq)
			mb.msgs = append(mb.msgs, msg)
			mb.byKey.put(msg)
			mb.bytes += msg.Size
		}
		return nil
	}
	for _, e := range entries {
		switch {
		case !e.Dir:
		case path.Base(e.Path) == "flags":
			if chunks, err = sn.List(e.Path); err != nil {
				return err
			}
		default:
			// xx/ (Layout256: messages two folders down) or a/
			// (Layout16: four).
			var deep int
			switch len(path.Base(e.Path)) {
			case 2:
				deep = 2
			case 1:
				deep = 4
			default:
				continue
			}
			if err := walk(e.Path, 1, deep); err != nil {
				return err
			}
		}
	}
	// Flag sets are few (most messages have none, \Seen, or \Seen
	// \Answered): the messages share one slice per set (no one changes
	// a message's flags in place: they are replaced, see setFlags).
	sets := map[string]flagList{}
	for _, e := range chunks {
		data, err := sn.Read(e.Path)
		if err != nil {
			return err
		}
		n, err := strconv.ParseUint(path.Base(e.Path), 10, 32)
		if err != nil {
			continue
		}
		for _, l := range parseChunk(data) {
			// (Only in the chunk of its home: see flush.)
			m := mb.byKey.get(l.key)
			if m != nil && chunkOf(m.home) == uint32(n) {
				m.flags = internFlags(sets, l.flags)
				if l.modseq != 0 {
					m.modseq = l.modseq
					mb.noteModSeqLocked(l.modseq)
				}
			} else if len(l.flags) > 0 || len(l.unset) > 0 {
				u.loadStrays = append(u.loadStrays, stray{mb, l})
			}
		}
	}
	if err := s.loadUIDs(mb, sp, ss, sn.Commit(), tree, at); err != nil {
		return err
	}
	mb.initRecent()
	return nil
}

// loadUIDs gives the messages of mb (just read from the tree) their UIDs on
// this node, new ones to those it has not seen (UID zero: the caller gave
// each message its UID from sp, the mailbox's space file read with ss, nil
// if it has none), in the order of their home UIDs, and sorts them by UID.
// tree is the mailbox's tree in commit, and at gives the trees of the
// user's mailboxes at another commit (see uidSpace). The space file is
// rewritten.
func (s *Store) loadUIDs(mb *Mailbox, sp *uidSpace, ss *spaceState, commit, tree store.Hash, at func(string) map[string]store.Hash) error {
	i := &mb.info
	i.Vanished, i.VanishedFloor, i.RecentFrom = nil, 0, 0
	if sp == nil {
		// New here (a clone, or a mailbox from before UIDs were a
		// node's): UIDs start afresh, under a UIDVALIDITY of this node.
		sp = newSpace(mb)
		mb.user.mu.Lock()
		i.UIDValidity = freshUIDValidity(mb.user, mb.treeUV)
		mb.user.mu.Unlock()
		i.UIDNext = 1
		for _, m := range mb.msgs {
			m.UID = 0
		}
	} else {
		i.UIDValidity, i.UIDNext = ss.uv, max(ss.next, 1)
		i.Vanished, i.VanishedFloor, i.RecentFrom = ss.van, ss.floor, ss.recent
		i.normVanished()
	}
	mb.loc = sp
	high := max(mb.highestModSeq, i.VanishedFloor)
	for _, r := range i.Vanished {
		high = max(high, r.ModSeq)
		i.UIDNext = max(i.UIDNext, r.Hi+1)
	}
	var pending []*Message
	sort.Slice(mb.msgs, func(a, b int) bool {
		x, y := mb.msgs[a], mb.msgs[b]
		if x.UID != y.UID {
			return x.UID < y.UID
		}
		return x.Key < y.Key
	})
	// An expunge whose commit failed left its line: the UID is live.
	van := i.Vanished[:0]
	for _, r := range i.Vanished {
		if r.Hi-r.Lo > 1<<16 || !anyLive(mb.msgs, r.Lo, r.Hi) {
			van = append(van, r)
		}
	}
	i.Vanished = van
	kept := mb.msgs[:0]
	for k, m := range mb.msgs {
		// Never two messages with one UID, nor a UID expunged here
		// (neither can happen unless the files were damaged).
		if m.UID == 0 || (k > 0 && mb.msgs[k-1].UID == m.UID) {
			if m.UID != 0 {
				delete(sp.uids, m.Key)
			}
			pending = append(pending, m)
			continue
		}
		kept = append(kept, m)
		i.UIDNext = max(i.UIDNext, m.UID+1)
	}
	mb.msgs = kept
	// Messages gone since the node last saw them: expunged here now.
	var goneKeys []string
	for key := range sp.uids {
		if mb.byKey.get(key) == nil {
			goneKeys = append(goneKeys, key)
		}
	}
	sort.Strings(goneKeys)
	if len(goneKeys) > 0 {
		ms := newModSeq(high)
		for _, key := range goneKeys {
			i.addVanished(sp.uids[key], ms)
			i.UIDNext = max(i.UIDNext, sp.uids[key]+1)
			delete(sp.uids, key)
		}
		high = ms
	}
	if ss != nil && (ss.clean == "" || at(ss.clean)[mb.ID] != tree) {
		// Not closed cleanly where the tree now is: a merge may have
		// expunged messages appended here that the index did not see
		// go (see uidSpace).
		i.UIDNext = max(i.UIDNext, sp.ceil)
		uids := make([]imap.UID, len(mb.msgs))
		for k, m := range mb.msgs {
			uids[k] = m.UID
		}
		if gaps := vanishedGaps(uids, i.Vanished, i.UIDNext); len(gaps) > 0 {
			ms := newModSeq(high)
			for _, g := range gaps {
				i.Vanished = append(i.Vanished, VanishedRange{g[0], g[1], ms})
			}
			i.normVanished()
			high = ms
			s.log.Info("mail: UIDs missing from a mailbox since it was last followed are reported expunged",
				"user", mb.user.Name, "mailbox", mb.ID, "ranges", len(gaps))
		}
	}
	mb.noteModSeqLocked(high)
	sort.Slice(pending, func(a, b int) bool {
		x, y := pending[a], pending[b]
		if x.home != y.home {
			return x.home < y.home
		}
		return x.Key < y.Key
	})
	next := i.UIDNext
	mb.assignUIDs(pending)
	mb.msgs = append(mb.msgs, pending...)
	// \Recent: what no session had yet, and the messages new here (a
	// space made afresh has nothing \Recent).
	switch {
	case ss == nil || i.RecentFrom == 0:
		i.RecentFrom = i.UIDNext
	case len(pending) > 0:
		i.RecentFrom = min(i.RecentFrom, next)
	}
	mb.initRecent()
	// The index has the mailbox as of commit now.
	return s.writeSpace(mb, commit.String())
}

// anyLive says whether one of msgs (sorted by UID) has a UID from lo to hi.
func anyLive(msgs []*Message, lo, hi imap.UID) bool {
	k := sort.Search(len(msgs), func(k int) bool { return msgs[k].UID >= lo })
	return k < len(msgs) && msgs[k].UID <= hi
}

// flagList is a message's flags: a pointer to a sorted list, 8 bytes in
// every Message where a slice would take 24. A list is never changed:
// a message's flags are replaced (setFlags), so messages may share one.
type flagList struct{ p *[]imap.Flag }

func makeFlagList(flags []imap.Flag) flagList {
	if len(flags) == 0 {
		return flagList{}
	}
	return flagList{&flags}
}

// list returns the flags; the caller must not change them.
func (f flagList) list() []imap.Flag {
	if f.p == nil {
		return nil
	}
	return *f.p
}

// internFlags returns the list of sets that holds flags, adding a copy
// of flags (its keywords copied too, so that they do not keep the text
// they were parsed from) if none does.
func internFlags(sets map[string]flagList, flags []imap.Flag) flagList {
	if len(flags) == 0 {
		return flagList{}
	}
	name := string(flags[0])
	if len(flags) > 1 {
		var b strings.Builder
		for _, f := range flags {
			b.WriteString(string(f))
			b.WriteByte(' ')
		}
		name = b.String()
	}
	if set, ok := sets[name]; ok {
		return set
	}
	list := make([]imap.Flag, len(flags))
	for k, f := range flags {
		list[k] = imap.Flag(strings.Clone(string(f)))
	}
	set := makeFlagList(list)
	sets[strings.Clone(name)] = set
	return set
}

func parseFlags(data []byte) []imap.Flag {
	var out []imap.Flag
	for _, f := range strings.Fields(string(data)) {
		out = append(out, CanonicalFlag(imap.Flag(f)))
	}
	return out
}

func formatFlags(flags []imap.Flag) []byte {
	var b strings.Builder
	for i, f := range flags {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(string(f))
	}
	return []byte(b.String())
}

// normFlags canonicalizes, sorts and deduplicates flags, dropping \Recent
// (which is a session's, never stored).
func normFlags(in []imap.Flag) []imap.Flag {
	seen := map[imap.Flag]bool{}
	var out []imap.Flag
	for _, f := range in {
		f = CanonicalFlag(f)
		if f == `\Recent` || f == "" || seen[f] {
			continue
		}
		seen[f] = true
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Mailboxes lists the user's mailboxes sorted by name.
func (u *User) Mailboxes() []*Mailbox {
	u.mu.RLock()
	defer u.mu.RUnlock()
	out := make([]*Mailbox, 0, len(u.boxes))
	for _, mb := range u.boxes {
		out = append(out, mb)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Name(), out[j].Name()
		return a < b || a == b && out[i].ID < out[j].ID
	})
	return out
}

// NormName canonicalizes a mailbox name: INBOX in any case is INBOX, and a
// trailing delimiter is dropped.
func NormName(name string) string {
	name = strings.TrimRight(name, string(Delim))
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}

// Mailbox finds a mailbox by name.
func (u *User) Mailbox(name string) (*Mailbox, error) {
	name = NormName(name)
	u.mu.RLock()
	defer u.mu.RUnlock()
	var found *Mailbox
	for _, mb := range u.boxes {
		// Two of one name (until samename.go renames one): the lower id,
		// the one that keeps the name.
		if mb.Name() == name && (found == nil || mb.ID < found.ID) {
			found = mb
		}
	}
	if found != nil {
		return found, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrNoMailbox, name)
}

// Mailbox is one mailbox.
type Mailbox struct {
	ID   string
	user *User

	mu         sync.RWMutex
	info       MailboxInfo
	msgs       []*Message // sorted by UID
	byKey      keyIndex
	views      []*View
	flagSet    map[imap.Flag]bool // see keywords.go; nil until first used
	recentFrom imap.UID           // messages from this UID on are not yet anyone's \Recent
	// treeUV is the UIDVALIDITY in mailbox.json: the one the mailbox was
	// created with; info.UIDValidity is this node's (local.go).
	treeUV uint32
	// loc is the mailbox's UIDs on this node (local.go); guarded by the
	// Store's wmu.
	loc *uidSpace
	// highestModSeq is the HIGHESTMODSEQ (see modseq.go), zero for a
	// mailbox that has never had a message.
	highestModSeq uint64
	bytes         int64 // sum of the sizes of msgs, for quota usage (quota.go)
}

func newMailbox(u *User, id string, data []byte) (*Mailbox, error) {
	mb := &Mailbox{ID: id, user: u}
	if err := json.Unmarshal(data, &mb.info); err != nil {
		return nil, err
	}
	if mb.info.UIDNext == 0 {
		mb.info.UIDNext = 1
	}
	mb.highestModSeq = mb.info.HighestModSeq
	mb.treeUV = mb.info.UIDValidity
	mb.initRecent()
	return mb, nil
}

// initRecent sets where \Recent starts from what mailbox.json says.
func (mb *Mailbox) initRecent() {
	mb.recentFrom = mb.info.UIDNext
	if r := mb.info.RecentFrom; r != 0 && r < mb.recentFrom {
		mb.recentFrom = r
	}
}

// Name is the mailbox's name.
func (mb *Mailbox) Name() string {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	return mb.info.Name
}

// Info returns a copy of the mailbox's metadata.
func (mb *Mailbox) Info() MailboxInfo {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	i := mb.info
	i.SpecialUse = append([]imap.MailboxAttr(nil), i.SpecialUse...)
	i.Vanished = append([]VanishedRange(nil), i.Vanished...)
	i.RecentFrom = mb.recentFrom
	i.HighestModSeq = mb.highestModSeq
	return i
}

// User is the mailbox's owner.
func (mb *Mailbox) User() *User { return mb.user }

// Stats are a mailbox's counts, for STATUS.
type Stats struct {
	Messages, Unseen, Deleted, Recent uint32
	Size                              int64
	// DeletedSize is the sum of the sizes of the messages flagged
	// \Deleted (STATUS DELETED-STORAGE, RFC 9208 4.2).
	DeletedSize int64
}

// Stats counts the mailbox's messages.
func (mb *Mailbox) Stats() Stats {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	st := Stats{Messages: uint32(len(mb.msgs))}
	for _, m := range mb.msgs {
		if !hasFlag(m.flags.list(), imap.FlagSeen) {
			st.Unseen++
		}
		if hasFlag(m.flags.list(), imap.FlagDeleted) {
			st.Deleted++
			st.DeletedSize += m.Size
		}
		if m.UID >= mb.recentFrom {
			st.Recent++
		}
		st.Size += m.Size
	}
	return st
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// ReadRaw returns a message's raw bytes.
func (s *Store) ReadRaw(mb *Mailbox, msg *Message) ([]byte, error) {
	return s.NewReader().ReadRaw(mb, msg)
}

// Reader reads raw messages from one snapshot of the store, taken on first
// use, so that a command reading many messages resolves the branch once.
// Take it after looking the messages up in the index: the index only holds
// committed messages, so the snapshot has them all.
type Reader struct {
	s    *Store
	scan bool

	mu sync.Mutex // ReadAhead's workers share the Reader
	sn *store.Snapshot
}

// NewReader returns a Reader.
func (s *Store) NewReader() *Reader { return &Reader{s: s} }

// NewScanReader returns a Reader for a command that reads many messages
// once (FETCH of a whole mailbox, SEARCH BODY): what it reads goes into the
// cache only where there is room, so that a scan of more than the cache
// holds does not push out what is in it (with plain LRU, reading a mailbox
// larger than the cache in order twice would find nothing the second time).
func (s *Store) NewScanReader() *Reader { return &Reader{s: s, scan: true} }

func (r *Reader) snapshot() (*store.Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sn == nil {
		sn, err := r.s.st.Snapshot("")
		if err != nil {
			return nil, err
		}
		r.sn = sn
	}
	return r.sn, nil
}

// ReadRaw returns a message's raw bytes, from the cache, by its blob's hash,
// or from the snapshot.
func (r *Reader) ReadRaw(mb *Mailbox, msg *Message) ([]byte, error) {
	s := r.s
	if b := s.cache.get(msg.Key); b != nil {
		return b, nil
	}
	if !msg.blob.IsZero() {
		b, err := s.st.ReadBlob(msg.blob)
		if err != nil {
			return nil, fmt.Errorf("mailstore: read message %d of %s: %w", msg.UID, mb.Name(), err)
		}
		s.cache.put(msg.Key, b, !r.scan)
		return b, nil
	}
	sn, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	_, b, err := readMsg(sn.Read, mb.user.Name, mb.ID, mb.layout(), msg.Key, ".eml")
	if err != nil {
		return nil, fmt.Errorf("mailstore: read message %d of %s: %w", msg.UID, mb.Name(), err)
	}
	s.cache.put(msg.Key, b, !r.scan)
	return b, nil
}
