package smtpd

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// step is one line of an SMTP dialogue and the start of the answer it
// must get ("" for the lines of a message, which get none).
type step struct{ send, want string }

// TestQuota: a local recipient over quota (nymote user quota) is refused
// with 552 5.2.2 (RFC 5321 4.2.2 "exceeded storage allocation", RFC 3463
// X.2.2 "mailbox full"): at RCPT, that recipient alone, when the announced
// SIZE would not fit or nothing fits any more; at DATA when it is the only
// recipient; and with 452 4.2.2 at DATA for the whole message when other
// recipients would get it (none may be lost, SMTP answers DATA once).
// Each dialogue runs over a real connection, raw lines, on inbound SMTP or
// submission (local delivery), and then the mailboxes are counted.
func TestQuota(t *testing.T) {
	big := strings.Repeat("x", 2000) // over a 1 KiB limit with any header
	body := func(text string) []step {
		return []step{{"DATA", "354"}, {"From: bob@example.org", ""}, {"Subject: q", ""}, {"", ""}, {text, ""}, {".", ""}}
	}
	join := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	end := func(want string) []step { return []step{{"", want}} } // the answer to the final "."
	for _, tc := range []struct {
		name       string
		quota      store.Quota // alice's; bob has none
		before     int         // messages delivered to alice first (no quota yet)
		submission bool        // as bob on submission, else inbound
		steps      []step
		alice, bob int // messages in INBOX after
	}{
		{"under quota delivers", store.Quota{Messages: 2, StorageKiB: 1}, 0, false, join(
			[]step{{"MAIL FROM:<x@example.net> SIZE=100", "250"}, {"RCPT TO:<alice@example.org>", "250"}},
			body("hi"), end("250")), 1, 0},
		{"RCPT with SIZE over STORAGE refuses that recipient alone", store.Quota{StorageKiB: 1}, 0, false, join(
			[]step{{"MAIL FROM:<x@example.net> SIZE=2000", "250"}, {"RCPT TO:<alice@example.org>", "552 5.2.2"}, {"RCPT TO:<bob@example.org>", "250"}},
			body(big), end("250")), 0, 1},
		{"RCPT without SIZE when the MESSAGE limit is reached", store.Quota{Messages: 1}, 1, false, join(
			[]step{{"MAIL FROM:<x@example.net>", "250"}, {"RCPT TO:<alice+tag@example.org>", "552 5.2.2"}, {"RCPT TO:<bob@example.org>", "250"}},
			body("hi"), end("250")), 0, 1},
		{"DATA over STORAGE, the only recipient", store.Quota{StorageKiB: 1}, 0, false, join(
			[]step{{"MAIL FROM:<x@example.net>", "250"}, {"RCPT TO:<alice@example.org>", "250"}},
			body(big), end("552 5.2.2")), 0, 0},
		{"DATA over STORAGE with another recipient: 452 for all, nothing lost", store.Quota{StorageKiB: 1}, 0, false, join(
			[]step{{"MAIL FROM:<x@example.net>", "250"}, {"RCPT TO:<alice@example.org>", "250"}, {"RCPT TO:<bob@example.org>", "250"}},
			body(big), end("452 4.2.2")), 0, 0},
		{"SIZE is forgotten after RSET", store.Quota{StorageKiB: 1}, 0, false, join(
			[]step{{"MAIL FROM:<x@example.net> SIZE=2000", "250"}, {"RSET", "250"}, {"MAIL FROM:<x@example.net>", "250"}, {"RCPT TO:<alice@example.org>", "250"}},
			body("hi"), end("250")), 1, 0},
		{"submission's local delivery", store.Quota{StorageKiB: 1}, 0, true, join(
			[]step{{"MAIL FROM:<bob@example.org> SIZE=2000", "250"}, {"RCPT TO:<alice@example.org>", "552 5.2.2"}, {"RCPT TO:<bob@example.org>", "250"}},
			body(big), end("250")), 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServers(t, t.TempDir(), store.Options{}, Options{})
			ctx := context.Background()
			if err := ts.st.AddUser(ctx, "bob", testPassword, store.GitNone); err != nil {
				t.Fatal(err)
			}
			for range tc.before {
				if err := deliverMsg(t, ts.smtp, "", "x@example.net", "alice@example.org", []byte("Subject: before\r\n\r\nhi\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			if err := ts.st.SetQuota(ctx, "alice", tc.quota); err != nil {
				t.Fatal(err)
			}
			addr := ts.smtp
			if tc.submission {
				addr = ts.submission
			}
			c := dialSMTP(t, addr)
			if tc.submission {
				c.expect(t, "AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00bob\x00"+testPassword)), "235")
			}
			for _, s := range tc.steps {
				c.expect(t, s.send, s.want)
			}
			c.expect(t, "QUIT", "221")
			for _, u := range []struct {
				name string
				want int
			}{{"alice", tc.alice + tc.before}, {"bob", tc.bob}} {
				if n := inboxCount(t, ts.ms, u.name); n != u.want {
					t.Errorf("%s's INBOX holds %d messages, want %d", u.name, n, u.want)
				}
			}
		})
	}
}

// TestQuotaExpungeFrees: once the user expunges a message, the mail that
// was refused for the MESSAGE limit is delivered.
func TestQuotaExpungeFrees(t *testing.T) {
	ts := startServers(t, t.TempDir(), store.Options{}, Options{})
	ctx := context.Background()
	if err := ts.st.SetQuota(ctx, "alice", store.Quota{Messages: 1}); err != nil {
		t.Fatal(err)
	}
	msg := []byte("Subject: q\r\n\r\nhi\r\n")
	if err := deliverMsg(t, ts.smtp, "", "x@example.net", "alice@example.org", msg); err != nil {
		t.Fatal(err)
	}
	if err := deliverMsg(t, ts.smtp, "", "x@example.net", "alice@example.org", msg); smtpCode(err) != 552 || !strings.Contains(err.Error(), "5.2.2") {
		t.Fatalf("delivery over quota: %v, want 552 5.2.2", err)
	}
	u, err := ts.ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := u.Mailbox("INBOX")
	v, _ := inbox.Open(true)
	items := v.Items(nil)
	v.Close()
	if err := ts.ms.Update(ctx, "alice", "expunge", func(w *mailstore.Writer) error { return w.Expunge(inbox, items[0].Msg) }); err != nil {
		t.Fatal(err)
	}
	if err := deliverMsg(t, ts.smtp, "", "x@example.net", "alice@example.org", msg); err != nil {
		t.Errorf("delivery after EXPUNGE: %v, want 250", err)
	}
}

// TestQuotaExactlyFull: at the STORAGE limit exactly (by bytes), RCPT
// without SIZE refuses: no message fits.
func TestQuotaExactlyFull(t *testing.T) {
	ts := startServers(t, t.TempDir(), store.Options{}, Options{})
	ctx := context.Background()
	u, err := ts.ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := u.Mailbox("INBOX")
	h := "Subject: full\r\n\r\n"
	if err := ts.ms.Update(ctx, "alice", "fill", func(w *mailstore.Writer) error {
		_, err := w.Append(inbox, []byte(h+strings.Repeat("z", 1024-len(h))), nil, time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := ts.st.SetQuota(ctx, "alice", store.Quota{StorageKiB: 1}); err != nil {
		t.Fatal(err)
	}
	c := dialSMTP(t, ts.smtp)
	c.expect(t, "MAIL FROM:<x@example.net>", "250")
	c.expect(t, "RCPT TO:<alice@example.org>", "552 5.2.2")
}

type smtpConn struct {
	*textproto.Conn
}

func dialSMTP(t *testing.T, addr string) *smtpConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(2 * time.Minute)) // only a hung server waits this long
	c := &smtpConn{textproto.NewConn(nc)}
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	c.expect(t, "EHLO client.example.net", "250")
	return c
}

// expect sends line and, if want is not "", checks that the answer starts
// with it (code and enhanced code).
func (c *smtpConn) expect(t *testing.T, line, want string) {
	t.Helper()
	if line != "" || want == "" {
		if err := c.PrintfLine("%s", line); err != nil {
			t.Fatal(err)
		}
	}
	if want == "" {
		return
	}
	code, msg, err := c.ReadResponse(0)
	if err != nil && code == 0 {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%d %s", code, msg); !strings.HasPrefix(got, want) {
		t.Errorf("%q: got %q, want %s", line, got, want)
	}
}

func inboxCount(t *testing.T, ms *mailstore.Store, user string) int {
	t.Helper()
	u, err := ms.User(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := u.Mailbox("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return int(inbox.Stats().Messages)
}
