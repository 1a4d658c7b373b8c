package mailstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestReadAhead: messages come out in order and intact, from the cache and
// from the store, also when each is larger than the window; Close after
// taking a few stops the rest.
func TestReadAhead(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	var want []string
	if err := ms.Update(ctx, "alice", "fill", func(w *Writer) error {
		for i := 0; i < 40; i++ {
			size := 100 + i*1000
			if i%10 == 9 {
				size = readAheadWindow + 1 // alone in the window
			}
			m := fmt.Sprintf("Subject: %d\r\n\r\n%s", i, strings.Repeat(fmt.Sprint(i%10), size))
			want = append(want, m)
			if _, err := w.Append(inbox, []byte(m), nil, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GC(ctx); err != nil {
		t.Fatal(err)
	}
	v, _ := inbox.Open(true)
	defer v.Close()
	var msgs []*Message
	for _, it := range v.Items(nil) {
		msgs = append(msgs, it.Msg)
	}
	for _, tc := range []struct {
		name string
		rd   *Reader
		take int
	}{
		{"cached", ms.NewReader(), len(msgs)},
		{"scan", ms.NewScanReader(), len(msgs)},
		{"uncached", (&Store{st: ms.st, cache: newRawCache(-1)}).NewReader(), len(msgs)},
		{"closed early", ms.NewReader(), 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra := tc.rd.ReadAhead(inbox, msgs)
			for i := 0; i < tc.take; i++ {
				raw, err := ra.Next()
				if err != nil || string(raw) != want[i] {
					t.Fatalf("message %d: got %d bytes, %v; want %d bytes", i, len(raw), err, len(want[i]))
				}
			}
			ra.Close()
		})
	}
}
