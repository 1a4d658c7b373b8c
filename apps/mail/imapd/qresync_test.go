package imapd

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestRFC7162Qresync is RFC 7162 3.2 (QRESYNC), over raw protocol lines.
func TestRFC7162Qresync(t *testing.T) {
	tg := func(h *harness) imapTarget {
		return imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}
	}
	sel := func(t *testing.T, s *rawSession, cmd string) (uv, hms string, u []string) {
		t.Helper()
		u = s.ok("%s", cmd)
		for _, l := range u {
			if m := regexp.MustCompile(`^\* OK \[UIDVALIDITY (\d+)\]`).FindStringSubmatch(l); m != nil {
				uv = m[1]
			}
			if m := regexp.MustCompile(`^\* OK \[HIGHESTMODSEQ (\d+)\]`).FindStringSubmatch(l); m != nil {
				hms = m[1]
			}
		}
		if uv == "" || hms == "" {
			t.Fatalf("%s: %q, want UIDVALIDITY and HIGHESTMODSEQ", cmd, u)
		}
		return uv, hms, u
	}
	h := start(t)
	a := dialRaw(t, tg(h), "alice")
	for _, subj := range []string{"a", "b", "c", "d"} {
		a.appendOK("INBOX", "Subject: "+subj+"\r\n\r\n"+subj+"\r\n")
	}
	wantStatus(t, "SELECT (QRESYNC) before ENABLE QRESYNC", second(a.do("SELECT INBOX (QRESYNC (1 1))")), "BAD")
	if u := a.ok("ENABLE QRESYNC"); len(u) != 1 || u[0] != "* ENABLED QRESYNC" {
		t.Fatalf("ENABLE QRESYNC: %q", u)
	}
	// 3.2.3: QRESYNC implies CONDSTORE.
	uv, h0, _ := sel(t, a, "SELECT INBOX")

	// Another session changes 2 and expunges 3 while a is away.
	b := dialRaw(t, tg(h), "alice")
	b.ok("SELECT INBOX")
	b.ok(`STORE 2 +FLAGS.SILENT (\Flagged)`)
	b.ok(`STORE 3 +FLAGS.SILENT (\Deleted)`)
	b.ok("EXPUNGE")

	t.Run("3.2.5.1: SELECT (QRESYNC) gives VANISHED (EARLIER) and the changed messages", func(t *testing.T) {
		c := dialRaw(t, tg(h), "alice")
		c.ok("ENABLE QRESYNC")
		_, _, u := sel(t, c, "SELECT INBOX (QRESYNC ("+uv+" "+h0+" 1:4))")
		vi, fi := index(u, `^\* VANISHED \(EARLIER\) 3$`), index(u, `^\* 2 FETCH \(MODSEQ \(\d+\) UID 2 FLAGS \(\\Flagged\)\)$`)
		if vi < 0 || fi < 0 || vi > fi || index(u, `FETCH`) != fi || len(u) < 2 {
			t.Errorf("SELECT (QRESYNC): %q", u)
		}
		// Without known UIDs: every UID expunged since.
		_, _, u = sel(t, c, "EXAMINE INBOX (QRESYNC ("+uv+" "+h0+"))")
		if index(u, `^\* VANISHED \(EARLIER\) 3$`) < 0 || index(u, `^\* 2 FETCH`) < 0 {
			t.Errorf("EXAMINE (QRESYNC) without known UIDs: %q", u)
		}
		// Known UIDs that leave 3 out: nothing vanished to tell.
		_, _, u = sel(t, c, "EXAMINE INBOX (QRESYNC ("+uv+" "+h0+" 1:2 (1:2 1:2)))")
		if index(u, `VANISHED`) >= 0 || index(u, `^\* 2 FETCH`) < 0 {
			t.Errorf("EXAMINE (QRESYNC) with known UIDs 1:2 and sequence match data: %q", u)
		}
		// Another UIDVALIDITY: a full resync is the client's, nothing sent.
		_, _, u = sel(t, c, "EXAMINE INBOX (QRESYNC (1 "+h0+" 1:4))")
		if index(u, `VANISHED`) >= 0 || index(u, `FETCH`) >= 0 {
			t.Errorf("EXAMINE (QRESYNC) with another UIDVALIDITY: %q", u)
		}
		// Known UIDs longer than the layer's input buffer.
		var known []string
		for u := 1; u <= 2001; u += 2 {
			known = append(known, strconv.Itoa(u))
		}
		_, _, u = sel(t, c, "EXAMINE INBOX (QRESYNC ("+uv+" "+h0+" "+strings.Join(known, ",")+"))")
		if index(u, `^\* VANISHED \(EARLIER\) 3$`) < 0 || index(u, `FETCH`) >= 0 {
			t.Errorf("EXAMINE (QRESYNC) with %d known UIDs: %q, want VANISHED 3 and no FETCH (2 not known)", len(known), u)
		}
		wantStatus(t, "QRESYNC without a mod-sequence", second(c.do("SELECT INBOX (QRESYNC ("+uv+"))")), "BAD")
	})
	t.Run("3.2.6: UID FETCH (CHANGEDSINCE VANISHED)", func(t *testing.T) {
		c := dialRaw(t, tg(h), "alice")
		wantStatus(t, "VANISHED before ENABLE QRESYNC", second(c.do("SELECT INBOX")), "OK")
		wantStatus(t, "VANISHED before ENABLE QRESYNC", second(c.do("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")), "BAD")
		c.ok("ENABLE QRESYNC")
		sel(t, c, "SELECT INBOX")
		u := c.ok("%s", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE "+h0+" VANISHED)")
		if len(u) != 2 || u[0] != "* VANISHED (EARLIER) 3" || !strings.HasPrefix(u[1], "* 2 FETCH (MODSEQ") {
			t.Errorf("UID FETCH (CHANGEDSINCE VANISHED): %q", u)
		}
		if u := c.ok("%s", "UID FETCH 1,2 (FLAGS) (CHANGEDSINCE "+h0+" VANISHED)"); len(u) != 1 || strings.Contains(u[0], "VANISHED") {
			t.Errorf("UID FETCH 1,2 (CHANGEDSINCE VANISHED): %q, want no VANISHED", u)
		}
		wantStatus(t, "VANISHED without CHANGEDSINCE", second(c.do("UID FETCH 1:* (FLAGS) (VANISHED)")), "BAD")
		wantStatus(t, "VANISHED in FETCH", second(c.do("FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")), "BAD")
	})
	t.Run("3.2.10: VANISHED instead of EXPUNGE, own and others'", func(t *testing.T) {
		a.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
		u := a.ok("EXPUNGE")
		if index(u, `^\* VANISHED 1$`) < 0 || index(u, `EXPUNGE`) >= 0 {
			t.Errorf("EXPUNGE: %q, want VANISHED 1", u)
		}
		b.ok(`STORE 2 +FLAGS.SILENT (\Deleted)`)
		if u := b.ok("EXPUNGE"); index(u, `^\* 1 EXPUNGE$`) < 0 {
			t.Errorf("EXPUNGE without QRESYNC: %q, want EXPUNGE", u)
		}
		u = a.ok("NOOP")
		if index(u, `^\* VANISHED 2$`) < 0 || index(u, `EXPUNGE`) >= 0 {
			t.Errorf("NOOP after another session's EXPUNGE: %q, want VANISHED 2", u)
		}
	})
}
