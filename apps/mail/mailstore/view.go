package mailstore

import (
	"fmt"
	"sort"

	"github.com/emersion/go-imap/v2"
)

// View is one session's view of a selected mailbox: its own queue of
// updates (sequence numbers as the client knows them) and its \Recent
// messages.
type View struct {
	mb       *Mailbox
	queue    []update // guarded by mb.mu (updates.go)
	readOnly bool
	recent   map[imap.UID]bool // guarded by mb.mu
	// announced are the flags the session was told in FLAGS (keywords.go);
	// guarded by mb.mu.
	announced map[imap.Flag]bool
	// flagsQueued are the messages whose flag updates may wait in the
	// queue (see Mailbox.setFlags); guarded by mb.mu.
	flagsQueued map[*Message]bool
	wake        chan struct{}

	// SearchRes is the saved result of SEARCH RETURN (SAVE).
	SearchRes imap.UIDSet

	// expunged are the UIDs of the expunges queued, oldest
	// first, kept for a view opened by OpenTracked; guarded by mb.mu.
	trackExpunged bool
	expunged      []imap.UID
}

// SelectInfo is what SELECT reports.
type SelectInfo struct {
	Info        MailboxInfo
	NumMessages uint32
	NumRecent   uint32
	FirstUnseen uint32
	Flags       []imap.Flag
}

// Open selects mb for a session. A read-write view (SELECT, not EXAMINE)
// takes the messages that are nobody's \Recent yet.
func (mb *Mailbox) Open(readOnly bool) (*View, SelectInfo) {
	return mb.open(readOnly, false)
}

// OpenTracked is Open for a session that reports expunges by UID (QRESYNC's
// VANISHED): the view keeps the UID of each expunge queued for it, in
// order, for PopExpunged.
func (mb *Mailbox) OpenTracked(readOnly bool) (*View, SelectInfo) {
	return mb.open(readOnly, true)
}

// PopExpunged returns the UID of the oldest expunge not yet popped: the one
// next EXPUNGE response written from its queue is about.
func (v *View) PopExpunged() (imap.UID, bool) {
	v.mb.mu.Lock()
	defer v.mb.mu.Unlock()
	if len(v.expunged) == 0 {
		return 0, false
	}
	uid := v.expunged[0]
	v.expunged = v.expunged[1:]
	return uid, true
}

func (mb *Mailbox) open(readOnly, track bool) (*View, SelectInfo) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	v := &View{mb: mb, readOnly: readOnly, recent: map[imap.UID]bool{}, wake: make(chan struct{}, 1), trackExpunged: track}
	if !readOnly {
		for _, m := range mb.msgs {
			if m.UID >= mb.recentFrom {
				v.recent[m.UID] = true
			}
		}
		if mb.recentFrom != mb.info.UIDNext {
			mb.recentFrom = mb.info.UIDNext
			mb.user.s.goBackground(mb.persistRecent)
		}
	}
	mb.views = append(mb.views, v)
	si := SelectInfo{Info: mb.info, NumMessages: uint32(len(mb.msgs)), NumRecent: uint32(len(v.recent))}
	for i, m := range mb.msgs {
		if !hasFlag(m.flags.list(), imap.FlagSeen) {
			si.FirstUnseen = uint32(i + 1)
			break
		}
	}
	set := mb.flagSetLocked()
	v.announced = make(map[imap.Flag]bool, len(set))
	for f := range set {
		v.announced[f] = true
	}
	si.Flags = sortedFlags(set)
	return v, si
}

// persistRecent records in the mailbox's space file (local.go) that the
// messages below recentFrom have been some session's \Recent. It is
// written after SELECT answers (a crash before it makes them \Recent once
// more, which is the lesser harm).
func (mb *Mailbox) persistRecent() {
	s := mb.user.s
	s.wmu.Lock()
	defer s.wmu.Unlock()
	mb.user.mu.RLock()
	live := mb.user.boxes[mb.ID] == mb
	mb.user.mu.RUnlock()
	if !live {
		return // deleted meanwhile
	}
	mb.mu.RLock()
	r := mb.recentFrom
	mb.mu.RUnlock()
	if err := s.logSpace(mb, []string{fmt.Sprintf("r %d", r)}, false); err != nil {
		s.log.Warn("mail: recording \\Recent", "mailbox", mb.Name(), "err", err)
	}
}

// Close ends the view.
func (v *View) Close() {
	v.mb.mu.Lock()
	for i, x := range v.mb.views {
		if x == v {
			v.mb.views = append(v.mb.views[:i], v.mb.views[i+1:]...)
			break
		}
	}
	v.mb.mu.Unlock()
}

// Mailbox is the viewed mailbox.
func (v *View) Mailbox() *Mailbox { return v.mb }

// ReadOnly reports whether the view came from EXAMINE.
func (v *View) ReadOnly() bool { return v.readOnly }

// Item is one message as a view sees it.
type Item struct {
	Seq   uint32 // as the client knows it; 0 if the client does not know it yet
	Msg   *Message
	Flags []imap.Flag // with \Recent if this session has it; read-only (it may be the index's own slice)
	// ModSeq is the message's MODSEQ (RFC 7162), read with Flags.
	ModSeq uint64
}

// Items returns the messages in numSet (all messages for a nil numSet),
// taken under the lock so that callers can write them out without it.
func (v *View) Items(numSet imap.NumSet) []Item {
	v.mb.mu.RLock()
	defer v.mb.mu.RUnlock()
	if numSet != nil {
		numSet = v.staticNumSetLocked(numSet)
	}
	var out []Item
	if numSet == nil {
		out = make([]Item, 0, len(v.mb.msgs))
	}
	add := func(i int, m *Message) {
		if it, ok := v.itemLocked(numSet, i, m); ok {
			out = append(out, it)
		}
	}
	// A UID set of a few ranges: find them by binary search rather than
	// looking at every message.
	if us, ok := numSet.(imap.UIDSet); ok && len(us) < 16 {
		for _, r := range us {
			lo := sort.Search(len(v.mb.msgs), func(i int) bool { return v.mb.msgs[i].UID >= r.Start })
			for i := lo; i < len(v.mb.msgs) && v.mb.msgs[i].UID <= r.Stop; i++ {
				add(i, v.mb.msgs[i])
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Msg.UID < out[j].Msg.UID })
		// Ranges may overlap: drop duplicates.
		k := 0
		for i := range out {
			if i == 0 || out[i].Msg != out[k-1].Msg {
				out[k] = out[i]
				k++
			}
		}
		return out[:k]
	}
	for i, m := range v.mb.msgs {
		add(i, m)
	}
	return out
}

// itemLocked is message m, the i-th of the mailbox, as the view sees it, if
// the (static) numSet holds it. The caller holds the mailbox's lock.
func (v *View) itemLocked(numSet imap.NumSet, i int, m *Message) (Item, bool) {
	seq := v.clientSeqLocked(uint32(i + 1))
	switch ns := numSet.(type) {
	case imap.SeqSet:
		if seq == 0 || !ns.Contains(seq) {
			return Item{}, false
		}
	case imap.UIDSet:
		if !ns.Contains(m.UID) {
			return Item{}, false
		}
	}
	// The index's flags are replaced, never changed in place: shared
	// (capped, so that an append by the caller copies).
	flags := m.flags.list()
	flags = flags[:len(flags):len(flags)]
	if len(v.recent) > 0 && v.recent[m.UID] {
		flags = append(append(make([]imap.Flag, 0, len(flags)+1), flags...), `\Recent`)
	}
	return Item{Seq: seq, Msg: m, Flags: flags, ModSeq: m.modseq}, true
}

// Bounds returns the number of messages in the mailbox and the highest
// UID among them (0 if empty), as Items(nil) would show them.
func (v *View) Bounds() (n uint32, maxUID imap.UID) {
	v.mb.mu.RLock()
	defer v.mb.mu.RUnlock()
	if k := len(v.mb.msgs); k > 0 {
		return uint32(k), v.mb.msgs[k-1].UID
	}
	return 0, 0
}

// ModSeqOfSeq is the MODSEQ of the message with sequence number seq as the
// client knows it, or 0 if there is none.
func (v *View) ModSeqOfSeq(seq uint32) uint64 {
	v.mb.mu.RLock()
	defer v.mb.mu.RUnlock()
	i := v.mailboxSeqLocked(seq)
	if i == 0 || int(i) > len(v.mb.msgs) {
		return 0
	}
	return v.mb.msgs[i-1].modseq
}

// staticNumSetLocked resolves "*" and the SEARCHRES marker "$".
func (v *View) staticNumSetLocked(numSet imap.NumSet) imap.NumSet {
	if imap.IsSearchRes(numSet) {
		return v.SearchRes
	}
	switch ns := numSet.(type) {
	case imap.SeqSet:
		out := make(imap.SeqSet, len(ns))
		copy(out, ns)
		max := uint32(len(v.mb.msgs))
		for i := range out {
			staticRange(&out[i].Start, &out[i].Stop, max)
		}
		return out
	case imap.UIDSet:
		out := make(imap.UIDSet, len(ns))
		copy(out, ns)
		max := uint32(v.mb.info.UIDNext) - 1
		for i := range out {
			staticRange((*uint32)(&out[i].Start), (*uint32)(&out[i].Stop), max)
		}
		return out
	}
	return numSet
}

func staticRange(start, stop *uint32, max uint32) {
	if *start == 0 {
		*start = max
	}
	if *stop == 0 {
		*stop = max
	}
	if *start > *stop {
		*start, *stop = *stop, *start
	}
}

// ItemsWindows calls fn with the messages in numSet (all messages for a nil
// numSet), as Items would return them, in UID order and in windows of at
// most n, each taken under the lock and handed to fn without it. A FETCH
// of a large mailbox then holds n items at a time rather than one per
// message (48 bytes each: 4.8 MB a session for 100,000). The set is
// resolved ("*", "$") once, at the start; a message expunged meanwhile by
// another session is still handed over if its window was taken before
// (as with Items), one added meanwhile is in a later window only if the
// set names it. fn must not keep the slice.
func (v *View) ItemsWindows(numSet imap.NumSet, n int, fn func([]Item) error) error {
	n = max(n, 1)
	v.mb.mu.RLock()
	if numSet != nil {
		numSet = v.staticNumSetLocked(numSet)
	}
	v.mb.mu.RUnlock()
	us, _ := numSet.(imap.UIDSet)
	win := make([]Item, 0, n)
	var after imap.UID // the last UID looked at
	for {
		win = win[:0]
		done := true
		v.mb.mu.RLock()
		msgs := v.mb.msgs
		i := sort.Search(len(msgs), func(i int) bool { return msgs[i].UID > after })
		for i < len(msgs) {
			if len(win) == n {
				done = false
				break
			}
			m := msgs[i]
			if us != nil && !us.Contains(m.UID) {
				// Skip to the next range that starts above m.UID.
				next := imap.UID(0)
				for _, r := range us {
					if r.Start > m.UID && (next == 0 || r.Start < next) {
						next = r.Start
					}
				}
				if next == 0 {
					break
				}
				after = next - 1
				i += sort.Search(len(msgs)-i, func(j int) bool { return msgs[i+j].UID >= next })
				continue
			}
			after = m.UID
			if it, ok := v.itemLocked(numSet, i, m); ok {
				win = append(win, it)
			}
			i++
		}
		v.mb.mu.RUnlock()
		if len(win) > 0 {
			if err := fn(win); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}
