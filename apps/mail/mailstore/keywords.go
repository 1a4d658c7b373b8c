package mailstore

import (
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// The FLAGS a session was told (RFC 3501 7.2.6, RFC 9051 7.3.5): a client
// may only see a keyword in a FETCH response after an untagged FLAGS
// response named it. When a STORE, APPEND, COPY or MOVE brings a new keyword
// into a mailbox, every session that has it selected must get a new FLAGS
// before any FETCH that uses the keyword.
//
// go-imap's tracker queues FETCH, EXISTS and EXPUNGE updates per session
// but does not know which keywords a session was told. So each View keeps
// the set it announced (at SELECT, then every FLAGS it wrote), the mailbox
// keeps the set of flags it has ever held since it was loaded (it only
// grows, as Dovecot's does), and the IMAP session, whenever it writes
// updates (after each command, and during IDLE), first writes FLAGS if the
// mailbox holds a flag the view has not announced. A FETCH written directly
// by a command (not through the tracker) shows only announced keywords
// (Visible): the tracker then delivers the rest after the FLAGS.

// tracker is go-imap's mailbox tracker that wakes the mailbox's views
// (their IDLE) whenever it queues an update, and notes the flags that
// message updates carry. Its methods are called with the mailbox's lock
// held.
type tracker struct {
	*imapserver.MailboxTracker
	mb *Mailbox
}

func newTracker(mb *Mailbox, n uint32) *tracker {
	return &tracker{MailboxTracker: imapserver.NewMailboxTracker(n), mb: mb}
}

// QueueNumMessages queues an EXISTS update and wakes the views.
func (t *tracker) QueueNumMessages(n uint32) {
	t.MailboxTracker.QueueNumMessages(n)
	t.mb.wakeLocked()
}

// QueueExpunge queues an EXPUNGE update and wakes the views.
func (t *tracker) QueueExpunge(seq uint32) {
	t.MailboxTracker.QueueExpunge(seq)
	t.mb.wakeLocked()
}

// QueueMessageFlags notes the flags, queues a FETCH FLAGS update and wakes
// the views.
func (t *tracker) QueueMessageFlags(seq uint32, uid imap.UID, flags []imap.Flag, source *imapserver.SessionTracker) {
	t.mb.noteFlagsLocked(flags)
	t.MailboxTracker.QueueMessageFlags(seq, uid, flags, source)
	t.mb.wakeLocked()
}

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
			for _, f := range m.flags {
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

// wakeLocked tells every view's IDLE that updates wait. The caller holds
// mb.mu.
func (mb *Mailbox) wakeLocked() {
	for _, v := range mb.views {
		select {
		case v.wake <- struct{}{}:
		default:
		}
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

// Wake receives a value when updates may wait for the view (see tracker);
// an IDLE waits on it, then writes NewFlags and polls the tracker.
func (v *View) Wake() <-chan struct{} { return v.wake }

// NewFlags returns the mailbox's whole FLAGS list if it holds a flag that
// this view has not announced yet, and records it as announced: the caller
// must write it (as an untagged FLAGS response) before anything else it
// writes for the view.
func (v *View) NewFlags() ([]imap.Flag, bool) {
	v.mb.mu.Lock()
	defer v.mb.mu.Unlock()
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
// (not through its tracker): the flags it announced, and \Recent. A keyword
// it has not announced yet reaches the client later, through the tracker,
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
