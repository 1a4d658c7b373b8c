package mailstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestAppendSpool: a message appended from a spool (the path of SMTP DATA
// and IMAP APPEND) is parsed from the file as Parse parses it from memory,
// reads back byte for byte, and a large one is not kept in the body cache.
func TestAppendSpool(t *testing.T) {
	st, ms := newStore(t)
	u, err := ms.User(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := u.Mailbox("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	for i := 0; body.Len() < 3<<20; i++ {
		fmt.Fprintf(&body, "line %d of the attachment, which is long enough to matter\r\n", i)
	}
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"small", testMsg(1)},
		{"large multipart", []byte("From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: big one\r\n" +
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n" +
			"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\n" + body.String() +
			"\r\n--b--\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, err := st.NewSpool()
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			sp.Write(tc.raw)
			var uid imap.UID
			err = ms.Update(context.Background(), "alice", "append", func(w *Writer) error {
				var err error
				uid, err = w.AppendSpool(inbox, sp, []imap.Flag{imap.FlagSeen}, time.Time{})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			sp.Close()
			var msg *Message
			inbox.mu.RLock()
			for _, m := range inbox.msgs {
				if m.UID == uid {
					msg = m
				}
			}
			inbox.mu.RUnlock()
			if msg == nil {
				t.Fatalf("UID %d is not in the index", uid)
			}
			got, _ := json.Marshal(msg.Summary())
			want, _ := json.Marshal(Parse(tc.raw))
			if !bytes.Equal(got, want) {
				t.Errorf("parse cache from the spool:\n got %s\nwant %s", got, want)
			}
			raw, err := ms.ReadRaw(inbox, msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, tc.raw) {
				t.Errorf("read back %d bytes that differ from the %d appended", len(raw), len(tc.raw))
			}
			if len(tc.raw) > maxCachedRaw && ms.cache.get(msg.Key) != nil {
				t.Errorf("a %d-byte message is kept in the body cache", len(tc.raw))
			}
		})
	}
}
