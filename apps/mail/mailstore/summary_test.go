package mailstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

// TestSummaryReadBack: with no summary cache, every envelope and header
// field is read back from the message's .meta, after an APPEND, a COPY and
// a reload; the index itself keeps no summary.
func TestSummaryReadBack(t *testing.T) {
	ctx := context.Background()
	st, err := store.InitData(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddUser(ctx, "alice", "password1", store.GitNone); err != nil {
		t.Fatal(err)
	}
	check := func(ms *Store, box string, n int) {
		t.Helper()
		u, err := ms.User(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		mb, _ := u.Mailbox(box)
		v, _ := mb.Open(true)
		defer v.Close()
		items := v.Items(imap.SeqSet{{Start: 1, Stop: 0}})
		if len(items) != n {
			t.Fatalf("%s: %d messages, want %d", box, len(items), n)
		}
		for i, it := range items {
			want := fmt.Sprintf("hello %d", i+1)
			if got := it.Msg.Summary().Envelope.Subject; got != want {
				t.Errorf("%s UID %d: subject %q, want %q", box, it.Msg.UID, got, want)
			}
			if vs, ok := it.Msg.HeaderField("Subject"); !ok || len(vs) != 1 || vs[0] != want {
				t.Errorf("%s UID %d: header Subject %q %v, want %q", box, it.Msg.UID, vs, ok, want)
			}
			if it.Msg.s == nil {
				t.Errorf("%s UID %d: the index's message has no store to read its summary from", box, it.Msg.UID)
			}
		}
	}
	ms, err := Open(st, Options{SummaryCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	archive, _ := u.Mailbox("Archive")
	err = ms.Update(ctx, "alice", "append", func(w *Writer) error {
		for i := 1; i <= 20; i++ {
			if _, err := w.Append(inbox, testMsg(i), nil, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check(ms, "INBOX", 20)
	v, _ := inbox.Open(true)
	err = ms.Update(ctx, "alice", "copy", func(w *Writer) error {
		for _, it := range v.Items(imap.SeqSet{{Start: 1, Stop: 0}}) {
			if _, err := w.Copy(inbox, it.Msg, archive); err != nil {
				return err
			}
		}
		return nil
	})
	v.Close()
	if err != nil {
		t.Fatal(err)
	}
	check(ms, "Archive", 20)
	ms.Close()

	ms2, err := Open(st, Options{SummaryCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ms2.Close()
	check(ms2, "INBOX", 20)
	check(ms2, "Archive", 20)
}

// TestSummaryCacheBound: the cache holds at most its budget, dropping the
// least recently used first.
func TestSummaryCacheBound(t *testing.T) {
	c := newSummaryCache(10 << 10)
	var hs []store.Hash
	for i := 0; i < 100; i++ {
		h := store.BlobHash([]byte(fmt.Sprint(i)))
		hs = append(hs, h)
		c.put(h, &Summary{Header: fmt.Sprint(i)}, 1000)
		if i == 50 {
			c.get(hs[48]) // used: kept longer than 49, 50
		}
		if c.lru.size > c.lru.max {
			t.Fatalf("after %d puts: %d bytes, budget %d", i+1, c.lru.size, c.lru.max)
		}
	}
	if c.get(hs[99]) == nil {
		t.Error("the newest summary was dropped")
	}
	if c.get(hs[0]) != nil {
		t.Error("the oldest summary is still there")
	}
	if n := len(c.lru.m); n != c.lru.ll.Len() || int64(n)*(2*1000+256) != c.lru.size {
		t.Errorf("%d entries, list %d, %d bytes", n, c.lru.ll.Len(), c.lru.size)
	}
}

// TestHeaderCharsets: header fields in the single-byte charsets that
// package charset decodes are searched decoded (SEARCH SUBJECT, FROM).
func TestHeaderCharsets(t *testing.T) {
	hdr := "From: =?koi8-r?Q?=F0=D2=C9=D7=C5=D4?= <a@example.org>\r\nSubject: =?windows-1251?B?zvjo4erg?= =?iso-8859-2?Q?=A3=F3d=BC?=\r\n\r\n"
	if got := HeaderFieldValues(hdr, "subject"); len(got) != 1 || got[0] != "ошибкаłódź" {
		t.Errorf("subject: %q", got)
	}
	if got := HeaderFieldValues(hdr, "from"); len(got) != 1 || got[0] != "привет <a@example.org>" {
		t.Errorf("from: %q", got)
	}
	sum := Parse([]byte(hdr + "body\r\n"))
	if got := sum.headerField("Subject"); len(got) != 1 || got[0] != "ошибкаłódź" {
		t.Errorf("summary's subject: %q", got)
	}
}
