package mailstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// BenchmarkReadPacked reads every message of a 2000-message mailbox after
// the store has repacked (how bodies are read once a mailbox has grown), with
// the raw cache off: by the blob hash that the index keeps, and by path
// (walking the trees, as before the index kept it).
func BenchmarkReadPacked(b *testing.B) {
	ctx := context.Background()
	st, ms := newStore(b)
	ms.cache = newRawCache(-1)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	text := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n", 300)
	for i := 0; i < 2000; i += 100 {
		ms.Update(ctx, "alice", "fill", func(w *Writer) error {
			for j := i; j < i+100; j++ {
				if _, err := w.Append(inbox, []byte(fmt.Sprintf("Subject: %d\r\n\r\n%s", j, text[:1000+(j*7919)%20000])), nil, time.Time{}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if _, err := st.GC(ctx); err != nil {
		b.Fatal(err)
	}
	v, _ := inbox.Open(true)
	items := v.Items(imap.SeqSet{{Start: 1, Stop: 0}})
	byPath := make([]*Message, len(items)) // the same, without the blob hash
	for i, it := range items {
		m := it.Msg
		byPath[i] = &Message{Key: m.Key, UID: m.UID, Date: m.Date, Size: m.Size, s: m.s, meta: m.meta}
	}
	for _, bc := range []struct {
		name string
		msgs func(i int) *Message
	}{
		{"blob", func(i int) *Message { return items[i].Msg }},
		{"path", func(i int) *Message { return byPath[i] }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var n int64
			for i := 0; i < b.N; i++ {
				rd := ms.NewReader()
				for j := range items {
					raw, err := rd.ReadRaw(inbox, bc.msgs(j))
					if err != nil {
						b.Fatal(err)
					}
					n += int64(len(raw))
				}
			}
			b.SetBytes(n / int64(b.N))
		})
	}
}
