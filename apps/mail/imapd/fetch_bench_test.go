package imapd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// BenchmarkFetch fetches every envelope, then every body, of a mailbox of
// 2000 messages of 1-50 KB (50 MB, twice what the raw cache holds), after
// the store has packed them, through a real client, as bench/mail does. The
// client's work is in the figures too; profile with -cpuprofile and look at
// the server's side.
func BenchmarkFetch(b *testing.B) {
	h := start(b, mailstore.Options{RawCacheBytes: 25 << 20})
	ctx := context.Background()
	u, _ := h.ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	text := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n", 700)
	const n = 2000
	for i := 0; i < n; i += 100 {
		err := h.ms.Update(ctx, "alice", "fill", func(w *mailstore.Writer) error {
			for j := i; j < i+100; j++ {
				m := fmt.Sprintf("From: Sender <sender%02d@example.net>\r\nTo: alice@example.org\r\nSubject: report %d\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <%d@example.net>\r\n\r\n%s",
					j%20, j, j, text[:1000+(j*7919)%49000])
				if _, err := w.Append(inbox, []byte(m), nil, time.Time{}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if _, err := h.st.GC(ctx); err != nil {
		b.Fatal(err)
	}
	c := h.login(b, "alice", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	all := imap.SeqSet{{Start: 1, Stop: 0}}
	b.Run("envelopes", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ms, err := c.Fetch(all, &imap.FetchOptions{Flags: true, UID: true, RFC822Size: true, Envelope: true}).Collect()
			if err != nil || len(ms) != n {
				b.Fatalf("%d messages, %v", len(ms), err)
			}
		}
	})
	b.Run("bodies", func(b *testing.B) {
		var bytes int64
		for i := 0; i < b.N; i++ {
			bytes = fetchBodies(b, c, all)
		}
		b.SetBytes(bytes)
	})
}

func fetchBodies(b *testing.B, c *imapclient.Client, all imap.SeqSet) int64 {
	cmd := c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	var n int64
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		for item := m.Next(); item != nil; item = m.Next() {
			if bs, ok := item.(imapclient.FetchItemDataBodySection); ok {
				k, _ := io.Copy(io.Discard, bs.Literal)
				n += k
			}
		}
	}
	if err := cmd.Close(); err != nil {
		b.Fatal(err)
	}
	return n
}
