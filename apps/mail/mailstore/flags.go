package mailstore

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// Flags live in chunk items of up to chunkSize UIDs each,
//
//	mail/USER/BOX/flags/HI/N     N = UID / chunkSize, HI = N / 256
//
// by a message's home UID (the one in its .meta, given by the node that
// appended it; see local.go): a message's line stays in one
// chunk on every node, so that replicas merge its flags line by line. Two
// messages appended on two nodes may share a home UID, and so a chunk;
// lines are by key. There is one line "UID KEY [%MODSEQ] FLAG..." per message that has flags or whose
// flags changed since its append (a message without either has no line).
// %MODSEQ is the message's MODSEQ (RFC 7162) as of its last flag change;
// '%' is an atom-special, so no flag can start with it. A line without it
// (written before MODSEQs were kept) leaves the message its append MODSEQ. So STORE on a whole mailbox writes a few dozen items
// rather than one per message, and APPEND of a message without flags writes
// no flags at all. A chunk stays under chunkSize lines, so the cost of a
// write does not grow with the mailbox.
const chunkSize = 256

func chunkOf(uid imap.UID) uint32 { return uint32(uid) / chunkSize }

func chunkPath(user, id string, n uint32) string {
	return fmt.Sprintf("%s/flags/%d/%d", boxDir(user, id), n/256, n)
}

// isChunkPath reports whether sub (a path below a mailbox folder) is a
// flags chunk.
func isChunkPath(sub string) bool { return strings.HasPrefix(sub, "flags/") }

type chunkLine struct {
	uid    imap.UID
	key    string
	modseq uint64 // 0: none on the line
	flags  []imap.Flag
	// unset are flags that a node removed from a message that another
	// node expunged or moved meanwhile (only on a stray line: see
	// mergeChunk), written "*FLAG" ('*' is a list-wildcard, which no flag
	// holds).
	unset []imap.Flag
}

func parseChunk(data []byte) []chunkLine {
	var out []chunkLine
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		uid, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			continue
		}
		var flags, unset []imap.Flag
		var modseq uint64
		for _, x := range f[2:] {
			switch {
			case strings.HasPrefix(x, "%"):
				if n, err := strconv.ParseUint(x[1:], 10, 63); err == nil {
					modseq = n
				}
			case strings.HasPrefix(x, "*"):
				unset = append(unset, imap.Flag(x[1:]))
			default:
				flags = append(flags, imap.Flag(x))
			}
		}
		out = append(out, chunkLine{imap.UID(uid), f[1], modseq, normFlags(flags), normFlags(unset)})
	}
	return out
}

func formatChunk(lines []chunkLine) []byte {
	sort.Slice(lines, func(i, j int) bool {
		if lines[i].uid != lines[j].uid {
			return lines[i].uid < lines[j].uid
		}
		return lines[i].key < lines[j].key
	})
	var b bytes.Buffer
	for _, l := range lines {
		if l.modseq == 0 && len(l.flags) == 0 && len(l.unset) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%d %s", l.uid, l.key)
		if l.modseq != 0 {
			fmt.Fprintf(&b, " %%%d", l.modseq)
		}
		if len(l.flags) > 0 {
			fmt.Fprintf(&b, " %s", formatFlags(l.flags))
		}
		for _, f := range l.unset {
			fmt.Fprintf(&b, " *%s", f)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// mergeChunk merges a flags chunk per message and per flag (see Merge).
// A message missing from a side has no flags there.
//
// A message whose line the base has and one side has not (expunged or
// moved there; a line with a MODSEQ stays when its flags are cleared)
// while the other side changed its flags keeps a stray line of that
// change: the flags that side added, and those it removed as "*FLAG"
// (unset). The node that follows the merge makes the change follow a
// moved message (resyncStrays), and the line goes at the chunk's next
// write. Unset marks of a stray line merge per mark, as flags do.
//
// A message's MODSEQ is the higher of the two sides' when both sides have
// the merged flags; otherwise the merge changed what (at least) one side's
// clients saw, and the message gets a fresh value of the MODSEQ clock
// (newModSeq), above both sides' values in the chunk and, clocks being
// roughly in step, above everything either replica handed out, so that
// CHANGEDSINCE finds the change on both.
func mergeChunk(base, ours, theirs []byte) []byte {
	type entry struct {
		uid, oUID     imap.UID
		tUID          imap.UID
		b, o          map[imap.Flag]bool
		t             map[imap.Flag]bool
		oMod, tMod    uint64
		inB, inO, inT bool
	}
	// Flags and unset marks ("*FLAG") merge alike, as tokens.
	tokens := func(l chunkLine, into map[imap.Flag]bool) {
		for _, f := range l.flags {
			into[f] = true
		}
		for _, f := range l.unset {
			into["*"+f] = true
		}
	}
	m := map[string]*entry{}
	get := func(l chunkLine) *entry {
		e := m[l.key]
		if e == nil {
			e = &entry{uid: l.uid, b: map[imap.Flag]bool{}, o: map[imap.Flag]bool{}, t: map[imap.Flag]bool{}}
			m[l.key] = e
		}
		return e
	}
	var high uint64
	for _, l := range parseChunk(base) {
		e := get(l)
		e.inB = true
		high = max(high, l.modseq)
		tokens(l, e.b)
	}
	for _, l := range parseChunk(ours) {
		e := get(l)
		e.oUID = l.uid
		e.oMod, e.inO = l.modseq, true
		high = max(high, l.modseq)
		tokens(l, e.o)
	}
	for _, l := range parseChunk(theirs) {
		e := get(l)
		e.tUID = l.uid
		e.tMod, e.inT = l.modseq, true
		high = max(high, l.modseq)
		tokens(l, e.t)
	}
	var fresh uint64 // taken once, for all the lines the merge changed
	var lines []chunkLine
	for key, e := range m {
		// The line's home UID: a side's over the base's, the higher of
		// the two sides' where both have the line (as pickMeta picks the
		// .meta), the same whichever side is ours.
		switch {
		case e.inO && e.inT:
			e.uid = max(e.oUID, e.tUID)
		case e.inO:
			e.uid = e.oUID
		case e.inT:
			e.uid = e.tUID
		}
		merged := map[imap.Flag]bool{}
		for f := range union(e.o, e.t) {
			if !e.b[f] || (e.o[f] && e.t[f]) {
				merged[f] = true
			}
		}
		if e.inB && e.inO != e.inT {
			// Gone on one side: the other side's removals stay as
			// unset marks of the stray line.
			kept := e.o
			if e.inT {
				kept = e.t
			}
			for f := range e.b {
				if !strings.HasPrefix(string(f), "*") && !kept[f] {
					merged["*"+f] = true
				}
			}
		}
		var flags, unset []imap.Flag
		for f := range merged {
			if u, ok := strings.CutPrefix(string(f), "*"); ok {
				unset = append(unset, imap.Flag(u))
			} else {
				flags = append(flags, f)
			}
		}
		if len(flags) == 0 && len(unset) == 0 && (!e.inO || !e.inT) {
			// Expunged on a side (a line with a MODSEQ stays when the
			// flags are cleared), or without flags on both.
			continue
		}
		modseq := max(e.oMod, e.tMod)
		// Lines without a MODSEQ on either side (written before they were
		// kept) stay without one.
		if modseq != 0 && (!sameFlags(merged, e.o) || !sameFlags(merged, e.t)) {
			if fresh == 0 {
				fresh = newModSeq(high)
			}
			modseq = fresh
		}
		lines = append(lines, chunkLine{e.uid, key, modseq, normFlags(flags), normFlags(unset)})
	}
	return formatChunk(lines)
}

// markChunk notes that msg's line in mb's flags chunk must be written when
// the commit's function returns.
func (w *Writer) markChunk(mb *Mailbox, msg *Message) {
	if w.dirty == nil {
		w.dirty = map[*Mailbox]map[uint32]map[*Message]bool{}
	}
	n := chunkOf(msg.home)
	if w.dirty[mb] == nil {
		w.dirty[mb] = map[uint32]map[*Message]bool{}
	}
	if w.dirty[mb][n] == nil {
		w.dirty[mb][n] = map[*Message]bool{}
	}
	w.dirty[mb][n][msg] = true
}

// Flags returns msg's flags as this commit sees them: as an earlier
// SetFlags of the commit (or of its batch) left them, else as the index has
// them. A change of some flags (STORE +FLAGS, \Seen by FETCH) must read the
// flags here, inside Update, where no other write comes between the read
// and the write; flags read before Update may be stale by the time it
// commits, and writing them back would undo a concurrent change.
func (w *Writer) Flags(mb *Mailbox, msg *Message) []imap.Flag {
	if f, ok := w.flags[msg]; ok {
		return slices.Clone(f)
	}
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	return slices.Clone(msg.flags.list())
}

func (w *Writer) pendingFlags(msg *Message) ([]imap.Flag, bool) {
	f, ok := w.flags[msg]
	return f, ok
}

// flush writes the flags chunks that the commit changed: each as the
// transaction has it, with the lines of the messages that the commit
// appended, expunged or reflagged changed. A message's new flags are
// applied as a change to the index's (what the command saw): flags that
// the transaction's head has and the index not yet (a merge that the index
// has not followed yet) stay, so that no flag set elsewhere is lost.
func (w *Writer) flush() error {
	for mb, chunks := range w.dirty {
		ms := w.modseqs[mb] // set by SetFlags if any flags changed
		for n, msgs := range chunks {
			p := chunkPath(mb.user.Name, mb.ID, n)
			data, err := w.tx.Get(p)
			if err != nil && !errors.Is(err, store.ErrNotExist) {
				return err
			}
			lines := map[string]chunkLine{}
			for _, l := range parseChunk(data) {
				lines[l.key] = l
			}
			mb.mu.RLock()
			for m := range msgs {
				if w.gone[m] {
					delete(lines, m.Key)
					continue
				}
				idx, modseq := m.flags.list(), m.modseq
				cur := idx
				if f, ok := w.pendingFlags(m); ok {
					cur = f
					modseq = max(modseq, ms)
					if l, ok := lines[m.Key]; ok {
						cur = applyFlagChange(l.flags, idx, f)
						modseq = max(modseq, l.modseq)
					}
				}
				if len(cur) > 0 || modseq != m.metaModSeq {
					lines[m.Key] = chunkLine{uid: m.home, key: m.Key, modseq: modseq, flags: cur}
				} else {
					delete(lines, m.Key)
				}
			}
			// Lines of messages that are gone (a merge of a flag change
			// with an expunge can leave one) are dropped. A stray line
			// with flags to fold into the message elsewhere (a MOVE
			// here, a flag change there; or another node's record of
			// the same message) stays for resyncStrays, which folds it
			// in and drops it: this write may come before the index
			// follows the merge that brought the line.
			var strays []string
			for key, l := range lines {
				carries := len(l.flags) > 0 || len(l.unset) > 0
				if m := mb.byKey.get(key); m != nil && chunkOf(m.home) != n {
					// A line where another node's record of the
					// same message (contentKey) put it: the
					// message's line is in its home's chunk.
					if !carries {
						delete(lines, key)
					}
					continue
				}
				if mb.byKey.get(key) == nil && !w.isAdded(mb, key) {
					if _, ok, err := findMsg(w.tx.Exists, mb.user.Name, mb.ID, mb.info.layout(), key, ".meta"); err == nil && !ok { // (mb.mu held)
						if carries {
							strays = append(strays, key)
						} else {
							delete(lines, key)
						}
					}
				}
			}
			mb.mu.RUnlock()
			for _, key := range strays {
				held, err := w.heldElsewhere(mb, key)
				if err != nil {
					return err
				}
				if !held {
					delete(lines, key) // expunged: the expunge wins
				}
			}
			if len(lines) == 0 {
				if err := w.tx.Delete(p); err != nil {
					return err
				}
				continue
			}
			out := make([]chunkLine, 0, len(lines))
			for _, l := range lines {
				out = append(out, l)
			}
			if err := w.tx.Put(p, formatChunk(out)); err != nil {
				return err
			}
		}
	}
	return nil
}

// heldElsewhere reports whether another mailbox of mb's user holds a
// message with key (a MOVE keeps the key) as the transaction sees it,
// also a mailbox that the index does not know yet (a merge brought it).
func (w *Writer) heldElsewhere(mb *Mailbox, key string) (bool, error) {
	sn, err := w.s.st.SnapshotOf(w.tx.Base())
	if err != nil {
		return false, err
	}
	ids := map[string]bool{}
	entries, err := sn.ReadDir(userDir(mb.user.Name))
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Dir {
			ids[path.Base(e.Path)] = true
		}
	}
	for _, o := range mb.user.Mailboxes() {
		ids[o.ID] = true // (also one this transaction created)
	}
	delete(ids, mb.ID)
	for id := range ids {
		_, ok, err := findMsg(w.tx.Exists, mb.user.Name, id, Layout16, key, ".meta")
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func (w *Writer) isAdded(mb *Mailbox, key string) bool {
	for _, m := range w.added[mb] {
		if m.Key == key {
			return true
		}
	}
	return false
}

// applyFlagChange returns head's flags changed as from was changed to to.
func applyFlagChange(head, from, to []imap.Flag) []imap.Flag {
	set := map[imap.Flag]bool{}
	for _, f := range head {
		set[f] = true
	}
	for _, f := range from {
		if !slices.Contains(to, f) {
			delete(set, f)
		}
	}
	for _, f := range to {
		set[f] = true
	}
	out := make([]imap.Flag, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	return normFlags(out)
}

// byChunk returns the index's messages of mb whose flags lines are in the
// given chunks (by their home UIDs), by chunk.
func (mb *Mailbox) byChunk(chunks map[uint32]bool) map[uint32][]*Message {
	out := map[uint32][]*Message{}
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	for _, m := range mb.msgs {
		if n := chunkOf(m.home); chunks[n] {
			out[n] = append(out[n], m)
		}
	}
	return out
}

func sameFlags(a, b map[imap.Flag]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for f := range a {
		if !b[f] {
			return false
		}
	}
	return true
}
