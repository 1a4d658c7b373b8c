package mailstore

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

// benchMessage is a message like the ones bench/mail appends: size bytes of
// text, or (multipart) a third of text and a base64 attachment.
func benchMessage(i, size int, multipart bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Sender <sender%02d@example.net>\r\nTo: bench@example.org\r\nSubject: report zebra #%d\r\nDate: %s\r\nMessage-ID: <%d.bench@example.net>\r\nMIME-Version: 1.0\r\n",
		i%20, i, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Minute).Format(time.RFC1123Z), i)
	text := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.\r\n"
	if !multipart {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		for b.Len() < size {
			b.WriteString(text)
		}
		return []byte(b.String())
	}
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", i, i)
	for b.Len() < size/3 {
		b.WriteString(text)
	}
	fmt.Fprintf(&b, "\r\n--b%d\r\nContent-Type: application/octet-stream; name=\"f.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", i)
	raw := make([]byte, (size-b.Len())*3/4)
	for j := range raw {
		raw[j] = byte(j*7919 + i)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	fmt.Fprintf(&b, "%s\r\n--b%d--\r\n", enc, i)
	return []byte(b.String())
}

// BenchmarkAppend appends one 25 KB message per commit, durably, as a
// client's APPEND does (every fifth multipart with an attachment).
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	_, ms := newStore(b)
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	msgs := make([][]byte, 50)
	for i := range msgs {
		msgs[i] = benchMessage(i, 25000, i%5 == 0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw := msgs[i%len(msgs)]
		err := ms.Update(ctx, "alice", "append", func(w *Writer) error {
			_, err := w.Append(inbox, raw, nil, time.Time{})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
