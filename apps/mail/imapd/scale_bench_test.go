package imapd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// BenchmarkScale runs the phases of bench/mail -scale over one mailbox of
// 20,000 small messages (every fourth \Seen, every fifth about a zebra),
// through a real client: FETCH 1:* (UID FLAGS), UID SEARCH SUBJECT, UID
// SEARCH UNSEEN. Profile the server's side with -cpuprofile.
func BenchmarkScale(b *testing.B) {
	h := start(b, mailstore.Options{})
	ctx := context.Background()
	u, _ := h.ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	const n = 20000
	for i := 0; i < n; i += 1000 {
		err := h.ms.Update(ctx, "alice", "fill", func(w *mailstore.Writer) error {
			for j := i; j < i+1000; j++ {
				subj := []string{"meeting", "report", "zebra", "garden", "lunch"}[j%5]
				m := fmt.Sprintf("From: Sender <sender%02d@example.net>\r\nTo: alice@example.org\r\nSubject: %s %d\r\nMessage-ID: <%d@example.net>\r\n\r\nbody %d\r\n", j%20, subj, j, j, j)
				var flags []imap.Flag
				if j%4 == 0 {
					flags = []imap.Flag{imap.FlagSeen}
				}
				if _, err := w.Append(inbox, []byte(m), flags, time.Time{}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	c := h.login(b, "alice", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	for _, general := range []bool{false, true} {
		name := "fetch-flags"
		if general {
			name += "-general" // imapserver's FetchWriter, not fetchflags.go
		}
		b.Run(name, func(b *testing.B) {
			h.srv.generalFetch.Store(general)
			defer h.srv.generalFetch.Store(false)
			for i := 0; i < b.N; i++ {
				ms, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, UID: true}).Collect()
				if err != nil || len(ms) != n {
					b.Fatalf("%d messages, %v", len(ms), err)
				}
			}
		})
	}
	// The same FETCH read as lines by a raw connection: the server's
	// side alone (the go-imap client's parsing dominates fetch-flags),
	// and UID FETCH 1:* (FLAGS); each by the fast path (fetchflags.go)
	// and by imapserver's FetchWriter ("general"). Then UID SEARCH
	// UNSEEN read raw (one line of 15,000 UIDs) and its ESEARCH form, by
	// the fast path (searchwrite.go) and by imapserver's encoder.
	for _, bc := range []struct {
		name, cmd string
		lines     int
		general   *atomic.Bool
	}{
		{"fetch-flags-raw", "FETCH 1:* (UID FLAGS)", n, &h.srv.generalFetch},
		{"uid-fetch-flags-raw", "UID FETCH 1:* (FLAGS)", n, &h.srv.generalFetch},
		{"search-unseen-raw", "UID SEARCH UNSEEN", 1, &h.srv.generalSearch},
		{"esearch-unseen-raw", "UID SEARCH RETURN (ALL) UNSEEN", 1, &h.srv.generalSearch},
	} {
		for _, general := range []bool{false, true} {
			name := bc.name
			if general {
				name += "-general"
			}
			b.Run(name, func(b *testing.B) {
				bc.general.Store(general)
				defer bc.general.Store(false)
				fetchRaw(b, h.addr, bc.cmd, bc.lines)
			})
		}
	}
	for _, s := range []struct {
		name string
		c    imap.SearchCriteria
		want int
	}{
		{"search-subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "zebra"}}}, n / 5},
		{"search-unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, n - n/4},
	} {
		b.Run(s.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				d, err := c.UIDSearch(&s.c, nil).Wait()
				if err != nil || len(d.AllUIDs()) != s.want {
					b.Fatalf("%d found, %v", len(d.AllUIDs()), err)
				}
			}
		})
	}
}

// BenchmarkChangedSinceScattered is a CONDSTORE resync after every other
// message of 20,000 changed: UID FETCH 1:* (FLAGS) (CHANGEDSINCE m), whose
// set the layer narrows to the 10,000 changed UIDs (10,000 ranges).
func BenchmarkChangedSinceScattered(b *testing.B) {
	h := start(b, mailstore.Options{})
	ctx := context.Background()
	u, _ := h.ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	const n = 20000
	for i := 0; i < n; i += 1000 {
		err := h.ms.Update(ctx, "alice", "fill", func(w *mailstore.Writer) error {
			for j := i; j < i+1000; j++ {
				if _, err := w.Append(inbox, []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", j)), nil, time.Time{}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	since := inbox.HighestModSeq()
	err := h.ms.Update(ctx, "alice", "flag", func(w *mailstore.Writer) error {
		for i, m := range inbox.Messages() {
			if i%2 == 0 {
				if err := w.SetFlags(inbox, m, []imap.Flag{imap.FlagFlagged}, nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, general := range []bool{false, true} {
		name := "fast"
		if general {
			name = "general"
		}
		b.Run(name, func(b *testing.B) {
			h.srv.generalFetch.Store(general)
			defer h.srv.generalFetch.Store(false)
			fetchRaw(b, h.addr, fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", since), n/2)
		})
	}
}

// fetchRaw sends cmd over a raw connection b.N times, reading the answers
// as lines; each must have n untagged lines.
func fetchRaw(b *testing.B, addr, cmd string, n int) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 64<<10)
	tag := 0
	do := func(c string) int {
		tag++
		t := fmt.Sprintf("x%d ", tag)
		fmt.Fprintf(conn, "%s%s\r\n", t, c)
		lines := 0
		for {
			line, err := br.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				// A line longer than the buffer (SEARCH's): its start
				// is enough.
				line = append([]byte(nil), line[:len(t)]...)
				for err == bufio.ErrBufferFull {
					_, err = br.ReadSlice('\n')
				}
			}
			if err != nil {
				b.Fatal(err)
			}
			if bytes.HasPrefix(line, []byte(t)) {
				if !bytes.HasPrefix(line[len(t):], []byte("OK")) {
					b.Fatalf("%s: %s", c, line)
				}
				return lines
			}
			lines++
		}
	}
	br.ReadSlice('\n')
	do("LOGIN alice password-alice")
	do("SELECT INBOX")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if got := do(cmd); got != n {
			b.Fatalf("%d lines", got)
		}
	}
}
