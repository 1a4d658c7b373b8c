package imapd

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestRFC7162Condstore is the part of RFC 7162 3 (CONDSTORE) that the layer
// implements, over raw protocol lines.
func TestRFC7162Condstore(t *testing.T) {
	tg := func(h *harness) imapTarget {
		return imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}
	}
	highest := func(t *testing.T, lines []string) uint64 {
		t.Helper()
		re := regexp.MustCompile(`^\* OK \[HIGHESTMODSEQ (\d+)\]`)
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				n, _ := strconv.ParseUint(m[1], 10, 64)
				return n
			}
		}
		t.Fatalf("no HIGHESTMODSEQ in %q", lines)
		return 0
	}
	modseqOf := func(t *testing.T, line string) uint64 {
		t.Helper()
		m := regexp.MustCompile(`^\* \d+ FETCH \(MODSEQ \((\d+)\)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no MODSEQ first in %q", line)
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s *rawSession, h *harness)
	}{
		{"3.1: no HIGHESTMODSEQ or MODSEQ before CONDSTORE is enabled", func(t *testing.T, s *rawSession, h *harness) {
			u := s.ok("SELECT INBOX")
			if index(u, `HIGHESTMODSEQ`) >= 0 {
				t.Errorf("SELECT: %q, want no HIGHESTMODSEQ", u)
			}
			if u := s.ok("FETCH 1 (FLAGS)"); len(u) != 1 || strings.Contains(u[0], "MODSEQ") {
				t.Errorf("FETCH: %q, want no MODSEQ", u)
			}
		}},
		{"3.1.8: SELECT (CONDSTORE) enables it and reports HIGHESTMODSEQ; EXAMINE after it too", func(t *testing.T, s *rawSession, h *harness) {
			n := highest(t, s.ok("SELECT INBOX (CONDSTORE)"))
			if n < 1 {
				t.Errorf("HIGHESTMODSEQ %d", n)
			}
			if m := highest(t, s.ok("EXAMINE INBOX")); m != n {
				t.Errorf("EXAMINE: HIGHESTMODSEQ %d, want %d", m, n)
			}
			if u := s.ok("FETCH 1 (FLAGS)"); len(u) != 1 || modseqOf(t, u[0]) > n {
				t.Errorf("FETCH: %q, want MODSEQ at most %d", u, n)
			}
			wantStatus(t, "SELECT with an unknown parameter", second(s.do("SELECT INBOX (FOO)")), "BAD")
		}},
		{"3.1 (RFC 5161): ENABLE CONDSTORE", func(t *testing.T, s *rawSession, h *harness) {
			if u := s.ok("ENABLE CONDSTORE"); len(u) != 1 || u[0] != "* ENABLED CONDSTORE" {
				t.Errorf("ENABLE: %q", u)
			}
			highest(t, s.ok("SELECT INBOX"))
		}},
		{"3.1 (RFC 5161): ENABLE CONDSTORE with a capability imapserver enables", func(t *testing.T, s *rawSession, h *harness) {
			if u := s.ok("ENABLE CONDSTORE UTF8=ACCEPT"); len(u) != 1 || u[0] != "* ENABLED CONDSTORE UTF8=ACCEPT" {
				t.Errorf("ENABLE: %q", u)
			}
		}},
		{"3.1.3, 3.1.4: STORE and FETCH MODSEQ; a change raises the MODSEQ of its message only", func(t *testing.T, s *rawSession, h *harness) {
			n := highest(t, s.ok("SELECT INBOX (CONDSTORE)"))
			u := s.ok(`STORE 1 +FLAGS (\Seen)`)
			if len(u) != 1 || !strings.Contains(u[0], `FLAGS (\Seen`) {
				t.Fatalf("STORE: %q", u)
			}
			m := modseqOf(t, u[0])
			if m <= n {
				t.Errorf("STORE: MODSEQ %d, want above %d", m, n)
			}
			u = s.ok("FETCH 1:* (MODSEQ)")
			if len(u) != 2 || modseqOf(t, u[0]) != m || modseqOf(t, u[1]) > n {
				t.Errorf("FETCH MODSEQ: %q, want %d for 1, at most %d for 2", u, m, n)
			}
			u = s.ok("UID FETCH 2 MODSEQ")
			if len(u) != 1 || !strings.Contains(u[0], "UID 2") {
				t.Errorf("UID FETCH 2 MODSEQ: %q", u)
			}
			if h2 := highest(t, s.ok("SELECT INBOX")); h2 != m {
				t.Errorf("SELECT again: HIGHESTMODSEQ %d, want %d", h2, m)
			}
		}},
		{"3.1.4.1: FETCH (CHANGEDSINCE) returns only changed messages, with FLAGS", func(t *testing.T, s *rawSession, h *harness) {
			n := highest(t, s.ok("SELECT INBOX (CONDSTORE)"))
			s.ok(`STORE 2 +FLAGS.SILENT ($x)`)
			u := s.ok("FETCH 1:* (UID) (CHANGEDSINCE %d)", n)
			if len(u) != 1 || !strings.HasPrefix(u[0], "* 2 FETCH (MODSEQ (") || !strings.Contains(u[0], "FLAGS ($x") || !strings.Contains(u[0], "UID 2") {
				t.Errorf("FETCH CHANGEDSINCE: %q, want message 2 with FLAGS", u)
			}
			m := modseqOf(t, u[0])
			if u := s.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", m); len(u) != 0 {
				t.Errorf("UID FETCH CHANGEDSINCE the latest: %q, want nothing", u)
			}
			if u := s.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)"); len(u) != 2 {
				t.Errorf("UID FETCH CHANGEDSINCE 1: %q, want both", u)
			}
			wantStatus(t, "CHANGEDSINCE without a value", second(s.do("FETCH 1 (FLAGS) (CHANGEDSINCE)")), "BAD")
			wantStatus(t, "an unknown modifier", second(s.do("FETCH 1 (FLAGS) (FOO 1)")), "BAD")
		}},
		{"3.1.3: STORE .SILENT tells the new MODSEQ of each message it changed, once CONDSTORE is on", func(t *testing.T, s *rawSession, h *harness) {
			s.ok("SELECT INBOX")
			if u := s.ok(`STORE 1:2 +FLAGS.SILENT (\Flagged)`); len(u) != 0 {
				t.Errorf("STORE .SILENT before CONDSTORE: %q, want nothing", u)
			}
			n := highest(t, s.ok("SELECT INBOX (CONDSTORE)"))
			u := s.ok(`STORE 1:2 +FLAGS.SILENT (\Answered)`)
			if len(u) != 2 {
				t.Fatalf("STORE .SILENT: %q, want a FETCH for each of 1 and 2", u)
			}
			for i, l := range u {
				if !regexp.MustCompile(fmt.Sprintf(`^\* %d FETCH \(MODSEQ \(\d+\) UID %d\)$`, i+1, i+1)).MatchString(l) || modseqOf(t, l) <= n {
					t.Errorf("STORE .SILENT: %q, want MODSEQ above %d and UID only", l, n)
				}
			}
			if u := s.ok(`UID STORE 1:2 +FLAGS.SILENT (\Answered)`); len(u) != 0 {
				t.Errorf("UID STORE .SILENT that changes nothing: %q, want nothing", u)
			}
			u = s.ok("FETCH 1:2 (FLAGS)")
			if len(u) != 2 || !strings.Contains(u[0], `\Answered`) || !strings.Contains(u[1], `\Answered`) {
				t.Errorf("after STORE .SILENT: %q", u)
			}
		}},
		{"3.1.3: STORE (UNCHANGEDSINCE): the check and the change in one commit, [MODIFIED set]", func(t *testing.T, s *rawSession, h *harness) {
			n := highest(t, s.ok("SELECT INBOX (CONDSTORE)"))
			u, st := s.do(`STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\Seen)`, n)
			if st != "OK STORE completed" || len(u) != 1 || !strings.Contains(u[0], `\Seen`) || modseqOf(t, u[0]) <= n {
				t.Fatalf("STORE UNCHANGEDSINCE current: %q %s", u, st)
			}
			m := modseqOf(t, u[0])
			u, st = s.do(`STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\Flagged)`, n)
			if st != "OK [MODIFIED 1] Conditional STORE failed" || len(u) != 1 || !strings.HasPrefix(u[0], "* 2 FETCH (MODSEQ (") || !strings.Contains(u[0], `\Flagged`) {
				t.Errorf("STORE UNCHANGEDSINCE older than 1: %q %s, want [MODIFIED 1] and 2 changed", u, st)
			}
			u, st = s.do(`UID STORE 1:2 (UNCHANGEDSINCE 0) FLAGS ()`)
			if st != "OK [MODIFIED 1:2] Conditional UID STORE failed" || len(u) != 0 {
				t.Errorf("UID STORE UNCHANGEDSINCE 0: %q %s, want [MODIFIED 1:2] and nothing", u, st)
			}
			u, st = s.do(`UID STORE 1 (UNCHANGEDSINCE %d) -FLAGS.SILENT (\Seen)`, m)
			if st != "OK UID STORE completed" || len(u) != 1 || !regexp.MustCompile(`^\* 1 FETCH \(MODSEQ \(\d+\) UID 1\)$`).MatchString(u[0]) || modseqOf(t, u[0]) <= m {
				t.Errorf("UID STORE .SILENT: %q %s, want MODSEQ and UID only", u, st)
			}
			u = s.ok("FETCH 1:* (FLAGS)")
			if len(u) != 2 || strings.Contains(u[0], `\Seen`) || strings.Contains(u[0], `\Flagged`) || !strings.Contains(u[1], `\Flagged`) {
				t.Errorf("after: %q", u)
			}
			s.ok("EXAMINE INBOX")
			wantStatus(t, "STORE UNCHANGEDSINCE in EXAMINE", second(s.do(`STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\Seen)`)), "NO")
			wantStatus(t, "bad modifier value", second(s.do(`STORE 1 (UNCHANGEDSINCE x) +FLAGS (\Seen)`)), "BAD")
		}},
		{"3.1.3: two sessions' STORE (UNCHANGEDSINCE) of one message at once: exactly one wins", func(t *testing.T, s *rawSession, h *harness) {
			n := highest(t, s.ok("SELECT INBOX (CONDSTORE)"))
			o := dialRaw(t, tg(h), "alice")
			o.ok("SELECT INBOX (CONDSTORE)")
			for i := 0; i < 5; i++ {
				ta := s.send(`STORE 1 (UNCHANGEDSINCE %d) FLAGS.SILENT ($a%d)`, n, i)
				tb := o.send(`STORE 1 (UNCHANGEDSINCE %d) FLAGS.SILENT ($b%d)`, n, i)
				_, sa := s.wait(ta)
				_, sb := o.wait(tb)
				won := 0
				for _, st := range []string{sa, sb} {
					switch st {
					case "OK STORE completed":
						won++
					case "OK [MODIFIED 1] Conditional STORE failed":
					default:
						t.Fatalf("round %d: %s", i, st)
					}
				}
				if won != 1 {
					t.Fatalf("round %d: %s and %s, want exactly one to win", i, sa, sb)
				}
				u := s.ok("FETCH 1 (MODSEQ)")
				n = modseqOf(t, u[len(u)-1])
			}
		}},
		{"3.1.5: SEARCH MODSEQ, with (MODSEQ n) of the matches; ESEARCH's MODSEQ", func(t *testing.T, s *rawSession, h *harness) {
			s.ok("SELECT INBOX (CONDSTORE)")
			u := s.ok(`STORE 2 +FLAGS (\Flagged)`)
			m := modseqOf(t, u[0])
			ms := strconv.FormatUint(m, 10)
			for _, c := range []struct{ cmd, want string }{
				{"SEARCH MODSEQ " + ms, "* SEARCH 2 (MODSEQ " + ms + ")"},
				{"UID SEARCH MODSEQ 1", "* SEARCH 1 2 (MODSEQ " + ms + ")"},
				{"SEARCH MODSEQ " + strconv.FormatUint(m+1, 10), "* SEARCH"},
				{`SEARCH MODSEQ "/flags/\\flagged" all ` + ms, "* SEARCH 2 (MODSEQ " + ms + ")"},
				{"SEARCH CHARSET UTF-8 OR MODSEQ " + ms + " SUBJECT a", "* SEARCH 1 2 (MODSEQ " + ms + ")"},
				{"SEARCH NOT MODSEQ " + ms, "* SEARCH 1 (MODSEQ "},
			} {
				u, st := s.do("%s", c.cmd)
				if st != "OK SEARCH completed" && st != "OK UID SEARCH completed" || len(u) != 1 || !strings.HasPrefix(u[0], c.want) {
					t.Errorf("%s: %q %s, want %s", c.cmd, u, st, c.want)
				}
			}
			tag := s.send("SEARCH RETURN (COUNT MIN) MODSEQ 1")
			u, _ = s.wait(tag)
			if want := `* ESEARCH (TAG "` + tag + `") MIN 1 COUNT 2 MODSEQ ` + ms; len(u) != 1 || u[0] != want {
				t.Errorf("ESEARCH: %q, want %s", u, want)
			}
			wantStatus(t, "MODSEQ without a value", second(s.do("SEARCH MODSEQ")), "BAD")
		}},
		{"commands longer than the layer's input buffer", func(t *testing.T, s *rawSession, h *harness) {
			n := highest(t, s.ok("SELECT INBOX (CONDSTORE)"))
			s.ok(`STORE 2 +FLAGS (\Answered)`)
			var set []string
			for u := 2; u <= 3000; u += 2 {
				set = append(set, strconv.Itoa(u))
			}
			u := s.ok("%s", "UID FETCH "+strings.Join(set, ",")+" (FLAGS) (CHANGEDSINCE "+strconv.FormatUint(n, 10)+")")
			if len(u) != 1 || !strings.HasPrefix(u[0], "* 2 FETCH (MODSEQ (") {
				t.Errorf("long UID FETCH CHANGEDSINCE: %q", u)
			}
			u = s.ok("%s", "UID FETCH "+strings.Join(set, ",")+" (FLAGS)")
			if len(u) != 1 || !strings.HasPrefix(u[0], "* 2 FETCH (MODSEQ (") {
				t.Errorf("long UID FETCH, given back to imapserver: %q", u)
			}
			if u := s.ok("%s", "UID SEARCH UID "+strings.Join(set, ",")); len(u) != 1 || u[0] != "* SEARCH 2" {
				t.Errorf("long UID SEARCH, given back to imapserver: %q", u)
			}
		}},
		{"3.1.10: STATUS HIGHESTMODSEQ, alone and with other items", func(t *testing.T, s *rawSession, h *harness) {
			u := s.ok("STATUS INBOX (HIGHESTMODSEQ)")
			if len(u) != 1 || !regexp.MustCompile(`^\* STATUS INBOX \(HIGHESTMODSEQ \d+\)$`).MatchString(u[0]) {
				t.Errorf("STATUS: %q", u)
			}
			u = s.ok("STATUS INBOX (MESSAGES HIGHESTMODSEQ UIDNEXT)")
			if len(u) != 1 || !regexp.MustCompile(`^\* STATUS INBOX \(MESSAGES 2 UIDNEXT 3 HIGHESTMODSEQ \d+\)$`).MatchString(u[0]) {
				t.Errorf("STATUS: %q", u)
			}
			wantStatus(t, "STATUS of no mailbox", second(s.do("STATUS nosuch (HIGHESTMODSEQ)")), "NO")
			// STATUS enabled CONDSTORE (3.1).
			highest(t, s.ok("SELECT INBOX"))
		}},
		{"3.1.4: unsolicited flag updates carry MODSEQ once enabled", func(t *testing.T, s *rawSession, h *harness) {
			n := highest(t, s.ok("SELECT INBOX (CONDSTORE)"))
			o := dialRaw(t, tg(h), "alice")
			o.ok("SELECT INBOX")
			o.ok(`STORE 2 +FLAGS (\Flagged)`)
			u := s.ok("NOOP")
			if len(u) != 1 || !strings.HasPrefix(u[0], "* 2 FETCH (MODSEQ (") || modseqOf(t, u[0]) <= n {
				t.Errorf("NOOP after another session's STORE: %q, want a FETCH with a MODSEQ above %d", u, n)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t)
			s := dialRaw(t, tg(h), "alice")
			s.appendOK("INBOX", "Subject: a\r\n\r\na\r\n")
			s.appendOK("INBOX", "Subject: b\r\n\r\nb\r\n")
			tc.run(t, s, h)
		})
	}
}
