package imapd

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/nymote/nymote/store"
)

// TestQuota is RFC 9208's enforcement, over real connections with raw
// protocol lines: a user's STORAGE (KiB) and MESSAGE limits, from the
// user's record (nymote user quota), hold over all of the user's
// mailboxes; what would exceed them answers NO [OVERQUOTA] (RFC 9208 4.3,
// RFC 5530) and writes nothing; EXPUNGE and DELETE free usage; MOVE never
// needs room for two copies. GETQUOTA and GETQUOTAROOT are the protocol
// layer's (layer_test.go).
func TestQuota(t *testing.T) {
	msg := func(n int) string { // a message of n bytes
		h := "Subject: q\r\n\r\n"
		return h + strings.Repeat("x", n-len(h))
	}
	small := msg(100)
	for _, tc := range []struct {
		name  string
		quota store.Quota
		run   func(t *testing.T, h *harness, s *rawSession)
	}{
		{"MESSAGE limit refuses the APPEND past it, EXPUNGE frees", store.Quota{Messages: 2}, func(t *testing.T, h *harness, s *rawSession) {
			s.appendOK("INBOX", small)
			s.appendOK("INBOX", small)
			s.appendOverQuota("INBOX", small, "2 messages")
			s.ok("SELECT INBOX")
			s.ok("STORE 1 +FLAGS (\\Deleted)")
			s.ok("EXPUNGE")
			s.appendOK("INBOX", small)
		}},
		{"STORAGE limit is in KiB of message sizes", store.Quota{StorageKiB: 1}, func(t *testing.T, h *harness, s *rawSession) {
			s.appendOK("INBOX", msg(600))
			s.appendOverQuota("INBOX", msg(600), "1 KiB")
			s.appendOK("INBOX", msg(424)) // 1024 bytes in all: exactly the limit
			s.appendOverQuota("INBOX", msg(20), "1 KiB")
		}},
		{"usage is summed over every mailbox of the user", store.Quota{Messages: 2}, func(t *testing.T, h *harness, s *rawSession) {
			s.appendOK("INBOX", small)
			s.appendOK("Archive", small)
			s.appendOverQuota("Drafts", small, "")
		}},
		{"COPY over quota copies nothing", store.Quota{Messages: 3}, func(t *testing.T, h *harness, s *rawSession) {
			s.appendOK("INBOX", small)
			s.appendOK("INBOX", small)
			s.ok("SELECT INBOX")
			if _, st := s.do("COPY 1:2 Archive"); !strings.HasPrefix(st, "NO [OVERQUOTA]") {
				t.Errorf("COPY past the quota: %s, want NO [OVERQUOTA]", st)
			}
			if u := s.ok("STATUS Archive (MESSAGES)"); len(u) != 1 || !strings.Contains(u[0], "MESSAGES 0") {
				t.Errorf("Archive after a refused COPY: %q, want empty", u)
			}
			s.ok("COPY 1 Archive") // one still fits
		}},
		{"MOVE at the quota moves", store.Quota{Messages: 2}, func(t *testing.T, h *harness, s *rawSession) {
			s.appendOK("INBOX", small)
			s.appendOK("INBOX", small)
			s.ok("SELECT INBOX")
			s.ok("MOVE 1:2 Archive")
			if u := s.ok("STATUS Archive (MESSAGES)"); len(u) != 1 || !strings.Contains(u[0], "MESSAGES 2") {
				t.Errorf("Archive after MOVE: %q, want 2 messages", u)
			}
		}},
		{"RENAME INBOX at the quota renames", store.Quota{Messages: 2}, func(t *testing.T, h *harness, s *rawSession) {
			s.appendOK("INBOX", small)
			s.appendOK("INBOX", small)
			s.ok("RENAME INBOX Old")
			if u := s.ok("STATUS Old (MESSAGES)"); len(u) != 1 || !strings.Contains(u[0], "MESSAGES 2") {
				t.Errorf("Old after RENAME INBOX: %q, want 2 messages", u)
			}
		}},
		{"DELETE of a mailbox frees its usage", store.Quota{Messages: 1}, func(t *testing.T, h *harness, s *rawSession) {
			s.ok("CREATE Box")
			s.appendOK("Box", small)
			s.appendOverQuota("INBOX", small, "")
			s.ok("DELETE Box")
			s.appendOK("INBOX", small)
		}},
		{"a changed quota holds at once", store.Quota{}, func(t *testing.T, h *harness, s *rawSession) {
			s.appendOK("INBOX", small)
			s.appendOK("INBOX", small)
			if err := h.st.SetQuota(context.Background(), "alice", store.Quota{Messages: 2}); err != nil {
				t.Fatal(err)
			}
			s.appendOverQuota("INBOX", small, "")
			if err := h.st.SetQuota(context.Background(), "alice", store.Quota{}); err != nil {
				t.Fatal(err)
			}
			s.appendOK("INBOX", small)
		}},
		{"one user's quota is not another's", store.Quota{Messages: 1}, func(t *testing.T, h *harness, s *rawSession) {
			s.appendOK("INBOX", small)
			s.appendOverQuota("INBOX", small, "")
			b := dialRaw(t, imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"bob": "password-bob"}}, "bob")
			b.appendOK("INBOX", small)
			b.appendOK("INBOX", small)
		}},
		{"QUOTA is announced, GETQUOTAROOT reports the limit", store.Quota{Messages: 1}, func(t *testing.T, h *harness, s *rawSession) {
			u := s.ok("CAPABILITY")
			if len(u) != 1 || !strings.Contains(u[0], " QUOTA ") {
				t.Errorf("CAPABILITY: %q, want QUOTA", u)
			}
			if u := s.ok("GETQUOTAROOT INBOX"); len(u) != 2 || u[1] != `* QUOTA "" (MESSAGE 0 1)` {
				t.Errorf("GETQUOTAROOT: %q", u)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t)
			if err := h.st.SetQuota(context.Background(), "alice", tc.quota); err != nil {
				t.Fatal(err)
			}
			s := dialRaw(t, imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}, "alice")
			tc.run(t, h, s)
		})
	}
}

// TestQuotaConcurrentAppends: APPENDs from many sessions at once, committed
// together (group commit), never overshoot a limit together.
func TestQuotaConcurrentAppends(t *testing.T) {
	const limit, sessions, each = 5, 6, 3
	h := start(t)
	if err := h.st.SetQuota(context.Background(), "alice", store.Quota{Messages: limit}); err != nil {
		t.Fatal(err)
	}
	tg := imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}
	var ss []*rawSession
	for range sessions {
		ss = append(ss, dialRaw(t, tg, "alice"))
	}
	var mu sync.Mutex
	statuses := map[string]int{}
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				_, st := s.appendMsg("INBOX", "", "Subject: c\r\n\r\nbody\r\n")
				mu.Lock()
				statuses[strings.SplitN(st, " ", 3)[0]+" "+strings.SplitN(st+" ", " ", 3)[1]]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if statuses["OK [APPENDUID"] != limit || statuses["NO [OVERQUOTA]"] != sessions*each-limit {
		t.Errorf("APPEND answers %v, want %d OK and %d NO [OVERQUOTA]", statuses, limit, sessions*each-limit)
	}
	if u := ss[0].ok("STATUS INBOX (MESSAGES)"); len(u) != 1 || !strings.Contains(u[0], "MESSAGES 5") {
		t.Errorf("INBOX: %q, want %d messages", u, limit)
	}
}

func (s *rawSession) appendOK(mailbox, msg string) {
	s.t.Helper()
	if _, st := s.appendMsg(mailbox, "", msg); !strings.HasPrefix(st, "OK") {
		s.t.Errorf("APPEND %d bytes to %s: %s, want OK", len(msg), mailbox, st)
	}
}

// appendOverQuota checks that an APPEND is refused with NO [OVERQUOTA], its
// text naming want.
func (s *rawSession) appendOverQuota(mailbox, msg, want string) {
	s.t.Helper()
	if _, st := s.appendMsg(mailbox, "", msg); !strings.HasPrefix(st, "NO [OVERQUOTA]") || !strings.Contains(st, want) {
		s.t.Errorf("APPEND %d bytes to %s: %s, want NO [OVERQUOTA] ...%s", len(msg), mailbox, st, want)
	}
}
