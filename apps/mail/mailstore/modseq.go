package mailstore

import (
	"sort"
	"time"

	"github.com/emersion/go-imap/v2"
)

// MODSEQ (RFC 7162 CONDSTORE): every message has a mod-sequence, set when
// it is appended and whenever its flags change; a mailbox's HIGHESTMODSEQ
// is the highest of its messages' and of its last expunge's.
//
// The values are a hybrid logical clock, max(now in µs, highest seen + 1),
// so that a replica merge, which sees one path at a time and never a
// mailbox's highest value, can stamp what it changed with a fresh value
// that is above what either replica handed out (see mergeChunk).
//
// Where they are kept, so that they survive a restart:
//   - a message's append MODSEQ in its .meta ("modseq");
//   - its MODSEQ as of its last flag change on its flags chunk line (see
//     flags.go), which therefore stays once the flags have changed;
//   - the MODSEQ of the mailbox's last expunge in mailbox.json
//     ("highestmodseq"), written by EXPUNGE anyway.
//
// On load HIGHESTMODSEQ is the highest of all these. Messages stored before
// MODSEQs were kept have MODSEQ 1.

// clock is the time source of newModSeq (a variable for tests).
var clock = time.Now

// maxModSeq bounds MODSEQs to 63 bits (RFC 7162 mod-sequence-value).
const maxModSeq = 1<<63 - 1

// newModSeq returns a MODSEQ above high: the clock in µs, or high+1 when the
// clock is behind.
func newModSeq(high uint64) uint64 {
	n := uint64(max(clock().UnixMicro(), 0))
	if n <= high {
		n = high + 1
	}
	return min(n, maxModSeq)
}

// HighestModSeq is the mailbox's HIGHESTMODSEQ (at least 1).
func (mb *Mailbox) HighestModSeq() uint64 {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	return max(mb.highestModSeq, 1)
}

// ModSeq is a message's MODSEQ.
func (mb *Mailbox) ModSeq(msg *Message) uint64 {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	return msg.modseq
}

// FlagsModSeq returns a copy of a message's flags and its MODSEQ, read
// together.
func (mb *Mailbox) FlagsModSeq(msg *Message) ([]imap.Flag, uint64) {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	return append([]imap.Flag(nil), msg.flags.list()...), msg.modseq
}

// noteModSeqLocked raises the mailbox's HIGHESTMODSEQ to n; the caller
// holds mb.mu.
func (mb *Mailbox) noteModSeqLocked(n uint64) {
	if n > mb.highestModSeq {
		mb.highestModSeq = n
	}
}

// modSeq is the MODSEQ of this commit's changes to mb: one value for all of
// them, above the mailbox's HIGHESTMODSEQ (and above those of any mailbox
// already written in the commit, so that a commit's values are ordered).
// The index takes it on apply.
func (w *Writer) modSeq(mb *Mailbox) uint64 {
	if n, ok := w.modseqs[mb]; ok {
		return n
	}
	if w.modseqs == nil {
		w.modseqs = map[*Mailbox]uint64{}
	}
	mb.mu.RLock()
	high := mb.highestModSeq
	mb.mu.RUnlock()
	for _, n := range w.modseqs {
		high = max(high, n)
	}
	n := newModSeq(high)
	w.modseqs[mb] = n
	w.apply = append(w.apply, func() {
		mb.mu.Lock()
		mb.noteModSeqLocked(n)
		mb.mu.Unlock()
	})
	return n
}

// setMetaModSeq sets a message's MODSEQ from its .meta (1 for one written
// before MODSEQs were kept).
func (m *Message) setMetaModSeq(n uint64) {
	m.metaModSeq = max(n, 1)
	m.modseq = m.metaModSeq
}

// ModSeq is a message's MODSEQ as this commit sees it: the commit's own
// value if it changed the message's flags, else the index's. Read with
// Flags inside Update, it makes a conditional STORE (RFC 7162 3.1.3
// UNCHANGEDSINCE) atomic: no other commit comes between the check and the
// write, and earlier updates of the same group commit are seen.
func (w *Writer) ModSeq(mb *Mailbox, msg *Message) uint64 {
	if _, ok := w.flags[msg]; ok {
		return w.modseqs[mb]
	}
	return mb.ModSeq(msg)
}

// VanishedRange is a range of expunged UIDs and the MODSEQ of their
// expunge.
type VanishedRange struct {
	Lo     imap.UID `json:"lo"`
	Hi     imap.UID `json:"hi"`
	ModSeq uint64   `json:"modseq"`
}

// maxVanished bounds the ranges kept in mailbox.json; older ones are
// forgotten (VanishedFloor), after which a client that resyncs from before
// them is told every UID it knows that is gone.
const maxVanished = 1000

// addVanished records that uid was expunged at modseq.
func (i *MailboxInfo) addVanished(uid imap.UID, modseq uint64) {
	if n := len(i.Vanished); n > 0 {
		last := &i.Vanished[n-1]
		if last.ModSeq == modseq && last.Hi+1 == uid {
			last.Hi = uid
			return
		}
	}
	i.Vanished = append(i.Vanished, VanishedRange{uid, uid, modseq})
	i.normVanished()
}

// vanishedHas reports whether uid is among the expunged UIDs kept.
func (i *MailboxInfo) vanishedHas(uid imap.UID) bool {
	for _, r := range i.Vanished {
		if uid >= r.Lo && uid <= r.Hi {
			return true
		}
	}
	return false
}

// normVanished sorts the ranges by MODSEQ, then UID, drops duplicates and
// forgets the oldest beyond maxVanished.
func (i *MailboxInfo) normVanished() {
	v := i.Vanished
	sort.Slice(v, func(a, b int) bool {
		if v[a].ModSeq != v[b].ModSeq {
			return v[a].ModSeq < v[b].ModSeq
		}
		if v[a].Lo != v[b].Lo {
			return v[a].Lo < v[b].Lo
		}
		// A total order: the same list whatever order the ranges came
		// in (a merge's sides).
		return v[a].Hi < v[b].Hi
	})
	k := 0
	for _, r := range v {
		if r.ModSeq <= i.VanishedFloor || (k > 0 && v[k-1] == r) {
			continue
		}
		v[k] = r
		k++
	}
	v = v[:k]
	if len(v) > maxVanished {
		i.VanishedFloor = v[len(v)-maxVanished-1].ModSeq
		v = append([]VanishedRange(nil), v[len(v)-maxVanished:]...)
	}
	i.Vanished = v
}

// VanishedSince returns the UIDs expunged after modseq. complete is false
// when some of those may have been forgotten (modseq is below the floor):
// then the caller must take every UID it cannot find as expunged.
func (mb *Mailbox) VanishedSince(modseq uint64) (uids imap.UIDSet, complete bool) {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	for _, r := range mb.info.Vanished {
		if r.ModSeq > modseq {
			uids.AddRange(r.Lo, r.Hi)
		}
	}
	return uids, modseq >= mb.info.VanishedFloor
}

// UIDs returns the UIDs of the mailbox's messages, in order.
func (mb *Mailbox) UIDs() []imap.UID {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	out := make([]imap.UID, len(mb.msgs))
	for i, m := range mb.msgs {
		out[i] = m.UID
	}
	return out
}
