package mailstore

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// The updates a session's client was not told yet (RFC 3501 5.2, 7.4.1,
// 7.2.6). Each View has its own queue: an EXISTS for each message added,
// an EXPUNGE for each one removed, a FETCH FLAGS for each flag change, in
// the order the mailbox changed; everything about it is guarded by the
// mailbox's lock, so that a view takes its queue and compares the flags it
// announced with the mailbox's in one step (keywords.go), and a command
// maps sequence numbers between the client's view and the mailbox's while
// no update can come in between.
//
// The client's numbering is the mailbox's with the queue undone: a message
// whose EXISTS is queued is unknown to it, and a message expunged with its
// EXPUNGE queued still has its old number there. A sequence number in a
// queued update is the number the client will know the message by when it
// reads that update (the mailbox's at the time it was queued). Messages are
// only ever added at the end of a session's numbering.

type updateKind uint8

const (
	updateExists  updateKind = iota + 1 // n: the number of messages after it
	updateExpunge                       // n: the expunged message's number
	updateFlags                         // n: the message's number; uid, flags
)

type update struct {
	kind  updateKind
	n     uint32
	uid   imap.UID
	flags []imap.Flag
}

// queueLocked appends u to the queue of every view but skip, and wakes
// them. The caller holds mb.mu for writing.
func (mb *Mailbox) queueLocked(u update, skip *View) {
	for _, v := range mb.views {
		if v == skip {
			continue
		}
		v.queue = append(v.queue, u)
		select {
		case v.wake <- struct{}{}:
		default:
		}
	}
}

// queueExistsLocked tells the views that the mailbox now holds n messages,
// the last one new.
func (mb *Mailbox) queueExistsLocked(n uint32) {
	mb.queueLocked(update{kind: updateExists, n: n}, nil)
}

// queueExpungeLocked tells the views that message seq (with uid) is gone.
func (mb *Mailbox) queueExpungeLocked(seq uint32, uid imap.UID) {
	for _, v := range mb.views {
		if v.trackExpunged {
			v.expunged = append(v.expunged, uid)
		}
	}
	mb.queueLocked(update{kind: updateExpunge, n: seq}, nil)
}

// queueFlagsLocked notes the flags in the mailbox's set and tells every
// view but source the message's new flags.
func (mb *Mailbox) queueFlagsLocked(seq uint32, uid imap.UID, flags []imap.Flag, source *View) {
	mb.noteFlagsLocked(flags)
	mb.queueLocked(update{kind: updateFlags, n: seq, uid: uid, flags: flags}, source)
}

// Poll writes the updates queued for the view, oldest first, up to the
// first EXPUNGE unless allowExpunge: first a FLAGS response if the mailbox
// holds a flag the view has not announced (every keyword of the updates
// taken is in it), then the updates.
func (v *View) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	v.mb.mu.Lock()
	k := len(v.queue)
	if !allowExpunge {
		for i, u := range v.queue {
			if u.kind == updateExpunge {
				k = i
				break
			}
		}
	}
	taken := v.queue[:k:k]
	if k == len(v.queue) {
		v.queue = nil
		clear(v.flagsQueued) // no flag update waits any more
	} else {
		v.queue = append([]update(nil), v.queue[k:]...)
	}
	flags, newFlags := v.newFlagsLocked()
	v.mb.mu.Unlock()

	if newFlags {
		if err := w.WriteMailboxFlags(flags); err != nil {
			return err
		}
	}
	for _, u := range taken {
		var err error
		switch u.kind {
		case updateExists:
			err = w.WriteNumMessages(u.n)
		case updateExpunge:
			err = w.WriteExpunge(u.n)
		case updateFlags:
			err = w.WriteMessageFlags(u.n, u.uid, u.flags)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// clientSeqLocked is the number the client knows the i-th message of the
// mailbox (1-based) by, or 0 if its EXISTS is still queued. The caller
// holds mb.mu.
func (v *View) clientSeqLocked(i uint32) uint32 {
	if i == 0 || int(i) > len(v.mb.msgs) {
		return 0
	}
	for k := len(v.queue) - 1; k >= 0; k-- {
		switch u := v.queue[k]; u.kind {
		case updateExists:
			if i == u.n {
				return 0
			}
		case updateExpunge:
			if i >= u.n {
				i++
			}
		}
	}
	return i
}

// mailboxSeqLocked is the index (1-based) in the mailbox of the message
// the client knows as seq, or 0 if it is gone (its EXPUNGE still queued)
// or there is none. The caller holds mb.mu.
func (v *View) mailboxSeqLocked(seq uint32) uint32 {
	if seq == 0 {
		return 0
	}
	for _, u := range v.queue {
		if u.kind != updateExpunge {
			continue
		}
		switch {
		case seq == u.n:
			return 0
		case seq > u.n:
			seq--
		}
	}
	if int(seq) > len(v.mb.msgs) {
		return 0
	}
	return seq
}
