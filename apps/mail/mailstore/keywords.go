package mailstore

import (
	"sort"

	"github.com/emersion/go-imap/v2"
)

// The FLAGS a session was told (RFC 3501 7.2.6, RFC 9051 7.3.5): a client
// may only see a keyword in a FETCH response after an untagged FLAGS
// response named it. When a STORE, APPEND, COPY or MOVE brings a new keyword
// into a mailbox, every session that has it selected must get a new FLAGS
// before any FETCH that uses the keyword.
//
// Each View has its own queue of the updates its client was not told yet
// (updates.go), and keeps the set of flags it announced (at SELECT, then
// every FLAGS it wrote); the mailbox keeps the set of flags it has ever held
// since it was loaded (it only grows, as Dovecot's does). Whenever a view
// writes its queue out (after each command, and during IDLE), it takes the
// queue and compares the sets under the mailbox's lock, and writes a FLAGS
// response first if the mailbox holds a flag it has not announced: every
// keyword of the updates taken with it was noted in the set before they
// were queued, under that lock, so the FLAGS names it. A FETCH written
// directly by a command (not through the queue) shows only announced
// keywords (Visible): the queue then delivers the rest after the FLAGS.

// systemFlags are always in a mailbox's FLAGS.
var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// flagSetLocked is the set of flags the mailbox has held since it was
// loaded, built on first use. The caller holds mb.mu (for writing, since
// it may build the set).
func (mb *Mailbox) flagSetLocked() map[imap.Flag]bool {
	if mb.flagSet == nil {
		mb.flagSet = map[imap.Flag]bool{}
		for _, f := range systemFlags {
			mb.flagSet[f] = true
		}
		for _, m := range mb.msgs {
			for _, f := range m.flags.list() {
				mb.flagSet[f] = true
			}
		}
	}
	return mb.flagSet
}

// noteFlagsLocked adds flags to the mailbox's set. The caller holds mb.mu
// for writing.
func (mb *Mailbox) noteFlagsLocked(flags []imap.Flag) {
	set := mb.flagSetLocked()
	for _, f := range flags {
		set[f] = true
	}
}

// sortedFlags lists a flag set in a stable order.
func sortedFlags(set map[imap.Flag]bool) []imap.Flag {
	out := make([]imap.Flag, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Wake receives a value when updates may wait for the view; an IDLE waits
// on it, then polls.
func (v *View) Wake() <-chan struct{} { return v.wake }

// newFlagsLocked returns the mailbox's whole FLAGS list if it holds a flag
// that the view has not announced yet, and records it as announced: the
// caller must write it (as an untagged FLAGS response) before anything else
// it writes for the view. The caller holds mb.mu for writing.
func (v *View) newFlagsLocked() ([]imap.Flag, bool) {
	set := v.mb.flagSetLocked()
	if len(set) == len(v.announced) {
		return nil, false // the set only grows, and announced is a subset
	}
	v.announced = make(map[imap.Flag]bool, len(set))
	for f := range set {
		v.announced[f] = true
	}
	return sortedFlags(set), true
}

// Visible returns the flags of a FETCH response the session writes itself
// (not through its queue): the flags it announced, and \Recent. A keyword
// it has not announced yet reaches the client later, through the queue,
// after a FLAGS response.
func (v *View) Visible(flags []imap.Flag) []imap.Flag {
	v.mb.mu.RLock()
	defer v.mb.mu.RUnlock()
	for i, f := range flags {
		if f != `\Recent` && !v.announced[f] {
			out := append([]imap.Flag(nil), flags[:i]...)
			for _, g := range flags[i+1:] {
				if g == `\Recent` || v.announced[g] {
					out = append(out, g)
				}
			}
			return out
		}
	}
	return flags
}

// Announced reports whether the view has announced every flag of flags.
func (v *View) Announced(flags []imap.Flag) bool {
	v.mb.mu.RLock()
	defer v.mb.mu.RUnlock()
	for _, f := range flags {
		if f != `\Recent` && !v.announced[f] {
			return false
		}
	}
	return true
}
