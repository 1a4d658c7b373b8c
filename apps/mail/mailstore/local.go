package mailstore

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// A mailbox's UIDs are this node's own (see the package doc, "Replicas"):
// each node keeps, per mailbox, a node file (store.NodeDir, never committed
// or replicated)
//
//	mail/USER/BOX.uids
//
// that says which UID space the node's appends use, the node's UIDVALIDITY,
// and the UIDs it gave messages that another node appended. It is a log of
// lines, replayed in order at load and then rewritten whole (compacted):
//
//	s SPACE UIDVALIDITY    the node's UID space (a random id) and UIDVALIDITY
//	a KEY UID              KEY (appended elsewhere) has UID here
//	d KEY                  KEY is gone (its UID is among the v lines)
//	n UIDNEXT              UIDNEXT is at least this
//	r UID                  the first UID no session has had as \Recent
//	v LO HI MODSEQ         UIDs LO to HI were expunged at MODSEQ
//	f MODSEQ               expunges at or before MODSEQ are forgotten
//	u CEIL                 this node may have given UIDs below CEIL
//	c COMMIT               the index has followed the mailbox up to
//	                       COMMIT (the last such line counts)
//
// A message appended here records its UID and this node's space in its
// .meta, in the commit of the APPEND, so an APPEND writes nothing here; a
// UID given to a message that a merge brought is written here and synced
// before any session sees it, and so are UIDNEXT and the expunged UID
// before an EXPUNGE commits. No UID a session has seen is lost in a crash.
//
// A merge may expunge a message that this node appended (its UID is in its
// .meta only) while the index is not following: the node is down or has
// crashed after the merge commit, or the user is not loaded. So that
// VANISHED (EARLIER) still names its UID and the UID is never given again,
// an APPEND that reaches CEIL first writes (synced, in its commit) a new
// CEIL 256 above (one synced write per 256 appends), and the index, once
// it has followed a commit that changed the mailbox (every commit before
// it followed too), writes a c line for it (not synced). A load whose file
// has no c line, or whose mailbox tree differs from the one at the last
// c line's commit (a mailbox's tree never comes back to an earlier one
// once a message is gone: a new message has a new record), reports every UID below max(UIDNEXT, CEIL) that is
// neither a message's nor known as expunged as expunged now (a fresh
// MODSEQ): some may never have named a message, which VANISHED allows;
// UIDNEXT goes above CEIL. Where many ranges are missing, the oldest are
// forgotten (VanishedFloor) and VANISHED (EARLIER) lists every UID asked
// about that is gone.
type uidSpace struct {
	name  string // node file name
	space string
	uids  map[string]imap.UID // keys of other spaces
	ceil  imap.UID            // the last u line
	f     *os.File
	lines int // lines appended since the last compaction
}

// ceilStep is how far above UIDNEXT an APPEND that reaches the recorded
// ceiling moves it.
const ceilStep = 256

func spaceFile(user, id string) string { return Prefix + "/" + user + "/" + id + ".uids" }

// spaceState is what replaying a space file gives.
type spaceState struct {
	uv     uint32
	next   imap.UID
	recent imap.UID
	van    []VanishedRange
	floor  uint64
	clean  string // the commit of the last c line
}

// readSpace reads mailbox id's space file; nil if there is none.
func (s *Store) readSpace(user, id string) (*uidSpace, *spaceState, error) {
	name := spaceFile(user, id)
	data, err := s.st.ReadNodeFile(name)
	if errors.Is(err, store.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	sp := &uidSpace{name: name, uids: map[string]imap.UID{}}
	ss := &spaceState{}
	for n, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		num := func(i int) uint64 {
			if i >= len(f) {
				err = fmt.Errorf("line %d: too short", n+1)
				return 0
			}
			v, e := strconv.ParseUint(f[i], 10, 64)
			if e != nil && err == nil {
				err = fmt.Errorf("line %d: %w", n+1, e)
			}
			return v
		}
		switch f[0] {
		case "s":
			if len(f) > 1 {
				sp.space = f[1]
			}
			ss.uv = uint32(num(2))
		case "a":
			if len(f) > 1 {
				sp.uids[f[1]] = imap.UID(num(2))
			}
		case "d":
			if len(f) > 1 {
				delete(sp.uids, f[1])
			}
		case "n":
			ss.next = max(ss.next, imap.UID(num(1)))
		case "r":
			ss.recent = max(ss.recent, imap.UID(num(1)))
		case "v":
			ss.van = append(ss.van, VanishedRange{imap.UID(num(1)), imap.UID(num(2)), num(3)})
		case "f":
			ss.floor = max(ss.floor, num(1))
		case "u":
			sp.ceil = max(sp.ceil, imap.UID(num(1)))
		}
		if f[0] == "c" && len(f) > 1 {
			ss.clean = f[1]
		}
		if err != nil {
			break
		}
	}
	if err == nil && (sp.space == "" || ss.uv == 0) {
		err = errors.New("no space line")
	}
	if err != nil {
		// Unreadable: the mailbox starts afresh here, with a new
		// UIDVALIDITY, which is what IMAP asks when UIDs are lost.
		s.log.Warn("mail: a mailbox's UID file is damaged; its UIDs start again", "file", name, "err", err)
		return nil, nil, nil
	}
	return sp, ss, nil
}

// newSpace makes a UID space for mailbox mb (not yet written).
func newSpace(mb *Mailbox) *uidSpace {
	return &uidSpace{name: spaceFile(mb.user.Name, mb.ID), space: newKey()[:12], uids: map[string]imap.UID{}}
}

// freshUIDValidity is a UIDVALIDITY for a mailbox whose UIDs start here:
// the time plus a random offset (so that two nodes cloned from one in the
// same second most likely differ), above the mailbox's UIDVALIDITY in the
// tree, and above every one this process gave the user
// (takeUIDValidityLocked; the caller holds u.mu).
func freshUIDValidity(u *User, tree uint32) uint32 {
	var b [2]byte
	rand.Read(b[:])
	off := 1 + (uint32(b[0])<<8 | uint32(b[1]))
	return u.takeUIDValidityLocked(max(uint32(time.Now().Unix()), tree) + off)
}

// compactSpace rewrites mb's space file from the index, durably. The caller
// holds s.wmu (or has mb to itself).
//
// The c line it writes (the index has followed every commit up to
// s.followed) stays true: the index is at least there.
func (s *Store) compactSpace(mb *Mailbox) error {
	c := ""
	if !s.followed.IsZero() {
		c = s.followed.String()
	}
	return s.writeSpace(mb, c)
}

// writeSpace is compactSpace, ending with a c line for tree if not "" (a
// clean close that followed the mailbox up to tree).
func (s *Store) writeSpace(mb *Mailbox, tree string) error {
	sp := mb.loc
	var b bytes.Buffer
	mb.mu.RLock()
	fmt.Fprintf(&b, "s %s %d\nn %d\nr %d\n", sp.space, mb.info.UIDValidity, mb.info.UIDNext, mb.recentFrom)
	if sp.ceil != 0 {
		fmt.Fprintf(&b, "u %d\n", sp.ceil)
	}
	if mb.info.VanishedFloor != 0 {
		fmt.Fprintf(&b, "f %d\n", mb.info.VanishedFloor)
	}
	for _, r := range mb.info.Vanished {
		fmt.Fprintf(&b, "v %d %d %d\n", r.Lo, r.Hi, r.ModSeq)
	}
	mb.mu.RUnlock()
	keys := make([]string, 0, len(sp.uids))
	for k := range sp.uids {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "a %s %d\n", k, sp.uids[k])
	}
	if tree != "" {
		fmt.Fprintf(&b, "c %s\n", tree)
	}
	if sp.f != nil {
		sp.f.Close()
		sp.f = nil
	}
	if err := s.st.WriteNodeFile(sp.name, b.Bytes()); err != nil {
		return fmt.Errorf("mailstore: %w", err)
	}
	sp.lines = 0
	return nil
}

// logSpace appends lines to mb's space file, synced if sync is set. The
// caller holds s.wmu. A file grown long is first rewritten from the index,
// which holds what every line written before says.
func (s *Store) logSpace(mb *Mailbox, lines []string, sync bool) error {
	if len(lines) == 0 {
		return nil
	}
	sp := mb.loc
	if sp.lines > 4096+2*len(sp.uids) {
		if err := s.compactSpace(mb); err != nil {
			return err
		}
	}
	if sp.f == nil {
		f, err := os.OpenFile(filepath.Join(s.st.NodeDir(), filepath.FromSlash(sp.name)), os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("mailstore: UID file: %w", err)
		}
		sp.f = f
	}
	w := bufio.NewWriter(sp.f)
	for _, l := range lines {
		w.WriteString(l)
		w.WriteByte('\n')
	}
	err := w.Flush()
	if err == nil && sync {
		err = sp.f.Sync()
	}
	if err != nil {
		sp.f.Close()
		sp.f = nil
		return fmt.Errorf("mailstore: UID file %s: %w", sp.name, err)
	}
	sp.lines += len(lines)
	return nil
}

// closeSpace closes mb's space file (removed too if remove is set).
func (s *Store) closeSpace(mb *Mailbox, remove bool) {
	if mb.loc == nil {
		return
	}
	if mb.loc.f != nil {
		mb.loc.f.Close()
		mb.loc.f = nil
	}
	if remove {
		os.Remove(filepath.Join(s.st.NodeDir(), filepath.FromSlash(mb.loc.name)))
	}
}

// assignUIDs gives the messages of mb that have no UID here yet (UID 0)
// UIDs from UIDNEXT, in the order given, and returns the space file lines
// that record them. The caller holds s.wmu and has mb's messages to itself
// (not yet in the index).
func (mb *Mailbox) assignUIDs(msgs []*Message) []string {
	var lines []string
	mb.mu.Lock()
	defer mb.mu.Unlock()
	for _, m := range msgs {
		m.UID = mb.info.UIDNext
		mb.info.UIDNext++
		mb.loc.uids[m.Key] = m.UID
		lines = append(lines, fmt.Sprintf("a %s %d", m.Key, m.UID))
	}
	return lines
}

// localUID is the UID that a message read from the tree (its .meta says
// UID home in space) has here: home if the space is this node's, the one
// the space file gave it, or 0 if it has none yet.
func (sp *uidSpace) localUID(key, space string, home imap.UID) imap.UID {
	if space == sp.space {
		return home
	}
	return sp.uids[key]
}

// vanishedGaps returns the UIDs below next that are neither live (sorted)
// nor in van, as ranges.
func vanishedGaps(live []imap.UID, van []VanishedRange, next imap.UID) [][2]imap.UID {
	type span struct{ lo, hi imap.UID }
	cov := make([]span, 0, len(live)+len(van))
	for _, u := range live {
		cov = append(cov, span{u, u})
	}
	for _, r := range van {
		cov = append(cov, span{r.Lo, r.Hi})
	}
	sort.Slice(cov, func(a, b int) bool { return cov[a].lo < cov[b].lo })
	var out [][2]imap.UID
	at := imap.UID(1) // the lowest UID not known to be covered
	for _, c := range cov {
		if at >= next {
			break
		}
		if c.lo > at {
			out = append(out, [2]imap.UID{at, min(c.lo-1, next-1)})
		}
		if c.hi >= at {
			at = c.hi + 1
			if at == 0 { // wrapped
				return out
			}
		}
	}
	if at < next {
		out = append(out, [2]imap.UID{at, next - 1})
	}
	return out
}
