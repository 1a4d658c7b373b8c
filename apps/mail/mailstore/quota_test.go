package mailstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// TestUsage: a user's usage, summed over mailboxes from the index, follows
// every write (append, copy, expunge, delete of a mailbox) and survives a
// reload; a quota refuses with a QuotaError that is IMAP's NO [OVERQUOTA];
// AppendNotice (bounces) passes a full quota.
func TestUsage(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, err := ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := u.Mailbox("INBOX")
	archive, _ := u.Mailbox("Archive")
	m1, m2 := testMsg(1), testMsg(2)
	size := int64(len(m1)) // both the same size
	update := func(fn func(w *Writer) error) error { return ms.Update(ctx, "alice", "test", fn) }
	check := func(step string, want Usage) {
		t.Helper()
		if got := u.Usage(); got != want {
			t.Errorf("after %s: usage %+v, want %+v", step, got, want)
		}
	}
	check("nothing", Usage{})
	if err := update(func(w *Writer) error {
		for _, m := range [][]byte{m1, m2} {
			if _, err := w.Append(inbox, m, nil, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("2 appends", Usage{2, 2 * size})
	msgs := func(mb *Mailbox) []*Message {
		v, _ := mb.Open(true)
		defer v.Close()
		var out []*Message
		for _, it := range v.Items(nil) {
			out = append(out, it.Msg)
		}
		return out
	}
	if err := update(func(w *Writer) error { _, err := w.Copy(inbox, msgs(inbox)[0], archive); return err }); err != nil {
		t.Fatal(err)
	}
	check("a copy", Usage{3, 3 * size})
	if err := update(func(w *Writer) error { return w.Expunge(inbox, msgs(inbox)[1]) }); err != nil {
		t.Fatal(err)
	}
	check("an expunge", Usage{2, 2 * size})

	// The limits: MESSAGE counts what the commit itself added.
	if err := st.SetQuota(ctx, "alice", store.Quota{Messages: 3}); err != nil {
		t.Fatal(err)
	}
	err = update(func(w *Writer) error {
		for _, m := range [][]byte{m1, m2} {
			if _, err := w.Append(inbox, m, nil, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	})
	var qe *QuotaError
	var ie *imap.Error
	if !errors.As(err, &qe) || qe.Resource != imap.QuotaResourceMessage || qe.Limit != 3 ||
		!errors.As(err, &ie) || ie.Code != imap.ResponseCodeOverQuota || !IsOverQuota(err) || errors.Is(err, ErrDiskFull) {
		t.Fatalf("2 appends over a 3-message quota holding 2: %v, want a MESSAGE QuotaError", err)
	}
	check("a refused commit", Usage{2, 2 * size})
	if err := u.CheckQuota(size); err != nil {
		t.Errorf("CheckQuota with room for one: %v", err)
	}
	if err := st.SetQuota(ctx, "alice", store.Quota{StorageKiB: 1}); err != nil {
		t.Fatal(err)
	}
	if err := u.CheckQuota(1024 - 2*size); err != nil {
		t.Errorf("CheckQuota up to the STORAGE limit: %v", err)
	}
	if err := u.CheckQuota(1024 - 2*size + 1); !errors.As(err, &qe) || qe.Resource != imap.QuotaResourceStorage {
		t.Errorf("CheckQuota past STORAGE: %v, want a STORAGE QuotaError", err)
	}
	if err := update(func(w *Writer) error { _, err := w.AppendNotice(inbox, m1); return err }); err != nil {
		t.Errorf("AppendNotice over quota: %v", err)
	}
	check("a notice", Usage{3, 3 * size})
	if err := update(func(w *Writer) error { return w.Delete(archive) }); err != nil {
		t.Fatal(err)
	}
	check("deleting Archive", Usage{2, 2 * size})

	// Reloaded from the store, the index counts the same.
	ms.Close()
	ms2, err := Open(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ms2.Close()
	u2, err := ms2.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := u2.Usage(); got != (Usage{2, 2 * size}) {
		t.Errorf("after a reload: usage %+v, want %+v", got, Usage{2, 2 * size})
	}
}
