package mailstore

import (
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// Quotas (RFC 9208): each user's mail is held to the limits of the user's
// record in the store (store.Quota): STORAGE, the sum of the sizes of the
// user's messages in units of 1024 bytes, and MESSAGE, their number, over
// all of the user's mailboxes (one quota root per user).
//
// Usage is kept in the index (each mailbox's message count and byte sum,
// changed with its messages), so that a check costs a sum over the user's
// mailboxes, never a scan of messages. Every write that adds a message
// (Append, AppendSpool, Copy) checks it inside the commit, under the
// mailstore's write lock, counting what the commit itself added and
// expunged before: concurrent deliveries cannot overshoot a limit together,
// and a MOVE that expunges each original before its copy never counts a
// message twice.

// Usage is what a user's mail uses of a quota.
type Usage struct {
	Messages int64 // number of messages
	Bytes    int64 // sum of their sizes
}

func (u Usage) neg() Usage { return Usage{-u.Messages, -u.Bytes} }

// usage is the mailbox's share of its user's usage.
func (mb *Mailbox) usage() Usage {
	mb.mu.RLock()
	defer mb.mu.RUnlock()
	return Usage{Messages: int64(len(mb.msgs)), Bytes: mb.bytes}
}

// Usage sums the user's mailboxes' message counts and sizes, as the index
// holds them (after the last durable commit).
func (u *User) Usage() Usage {
	var t Usage
	for _, mb := range u.Mailboxes() {
		m := mb.usage()
		t.Messages += m.Messages
		t.Bytes += m.Bytes
	}
	return t
}

// Quota returns the user's limits from the store (zero: no limit).
func (u *User) Quota() (store.Quota, error) {
	su, err := u.s.st.LookupUser(u.Name)
	if err != nil {
		return store.Quota{}, fmt.Errorf("mailstore: quota of %s: %w", u.Name, err)
	}
	return su.Quota, nil
}

// QuotaError says that a message does not fit in a user's quota. It
// unwraps to IMAP's NO [OVERQUOTA] (RFC 9208 4.3), which imapserver answers
// as it is; smtpd answers 552 5.2.2.
type QuotaError struct {
	User     string
	Resource imap.QuotaResourceType // STORAGE or MESSAGE
	Limit    uint64                 // in the resource's units (KiB for STORAGE)
}

func (e *QuotaError) text() string {
	if e.Resource == imap.QuotaResourceStorage {
		return fmt.Sprintf("Over quota: the mailbox storage limit (%d KiB) would be exceeded", e.Limit)
	}
	return fmt.Sprintf("Over quota: the limit of %d messages would be exceeded", e.Limit)
}

func (e *QuotaError) Error() string { return "mailstore: user " + e.User + ": " + e.text() }

// Unwrap is the IMAP answer.
func (e *QuotaError) Unwrap() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: e.text()}
}

// IsOverQuota reports whether err says a user's quota is exceeded (not the
// disk: that is ErrDiskFull).
func IsOverQuota(err error) bool {
	var qe *QuotaError
	return errors.As(err, &qe)
}

// CheckQuota says whether a message of size bytes would fit in the user's
// quota now (a QuotaError if not). Writes check again in their commit;
// this is for answers before the message arrives (SMTP RCPT with SIZE).
func (u *User) CheckQuota(size int64) error {
	q, err := u.Quota()
	if err != nil {
		return err
	}
	return overQuota(u.Name, q, u.Usage(), size)
}

func overQuota(user string, q store.Quota, used Usage, size int64) error {
	if q.Messages != 0 && used.Messages+1 > int64(q.Messages) {
		return &QuotaError{User: user, Resource: imap.QuotaResourceMessage, Limit: q.Messages}
	}
	if q.StorageKiB != 0 && used.Bytes+size > int64(q.StorageKiB)*1024 {
		return &QuotaError{User: user, Resource: imap.QuotaResourceStorage, Limit: q.StorageKiB}
	}
	return nil
}

// use records what this commit adds to (or frees of) u's usage.
func (w *Writer) use(u *User, d Usage) {
	t := w.usage[u]
	t.Messages += d.Messages
	t.Bytes += d.Bytes
	w.usage[u] = t
}

// checkQuota says whether one more message of size bytes fits in u's quota,
// counting what this commit did before.
func (w *Writer) checkQuota(u *User, size int64) error {
	q, ok := w.quotas[u]
	if !ok {
		var err error
		q, err = u.Quota()
		if errors.Is(err, store.ErrNotExist) {
			// A user deleted while their mail lives on (a bounce to
			// them): no record, no limit.
			err = nil
		}
		if err != nil {
			return err
		}
		w.quotas[u] = q
	}
	if q == (store.Quota{}) {
		return nil
	}
	used := u.Usage()
	d := w.usage[u]
	used.Messages += d.Messages
	used.Bytes += d.Bytes
	return overQuota(u.Name, q, used, size)
}
