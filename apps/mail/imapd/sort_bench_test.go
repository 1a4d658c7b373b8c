package imapd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// BenchmarkSortThread is SORT and THREAD over a mailbox of 10000 messages
// (threads of up to 10 replies, 500 subjects), over a raw connection: the
// keys come from the parse cache.
func BenchmarkSortThread(b *testing.B) {
	h := start(b)
	ctx := context.Background()
	u, _ := h.ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	const n = 10000
	for i := 0; i < n; i += 500 {
		err := h.ms.Update(ctx, "alice", "fill", func(w *mailstore.Writer) error {
			for j := i; j < i+500; j++ {
				refs := ""
				if j%10 != 0 {
					refs = fmt.Sprintf("References: <%d@x>\r\n", j-j%10)
				}
				subj := fmt.Sprintf("topic %d", (j/10)%500)
				if refs != "" {
					subj = "Re: " + subj
				}
				m := fmt.Sprintf("From: s%d@x.org\r\nTo: alice@example.org\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d@x>\r\n%s\r\nbody %s\r\n",
					j%37, subj, time.Date(2006, 1, 2, 0, 0, (j*7919)%86400, 0, time.UTC).Format(time.RFC1123Z), j, refs, strings.Repeat("x", j%300))
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
	s := dialRaw(b, imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}, "alice")
	s.ok("SELECT INBOX")
	for _, cmd := range []string{"SORT (DATE) UTF-8 ALL", "SORT (SUBJECT FROM) UTF-8 ALL", "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL"} {
		b.Run(strings.Fields(cmd)[0]+"_"+strings.Trim(strings.Fields(cmd)[1], "()"), func(b *testing.B) {
			for b.Loop() {
				if u := s.ok("%s", cmd); len(u) != 1 {
					b.Fatalf("%s: %d lines", cmd, len(u))
				}
			}
		})
	}
}
