package imapd

import (
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestRFC7162CondstoreDovecot runs one CONDSTORE session against this
// server and a private Dovecot and compares what they answer, MODSEQ
// values aside (ours are a clock, Dovecot's a counter) and FETCH items in
// any order. Two differences that are imapserver's, not CONDSTORE's, are
// left out: it adds UID to the FETCH responses of STORE and of flag
// updates, and its flag updates do not carry \Recent.
func TestRFC7162CondstoreDovecot(t *testing.T) {
	dv := dovecotTarget(t)
	run := func(tg imapTarget) []string {
		s := dialRaw(t, tg, "alice")
		for _, subj := range []string{"a", "b", "c"} {
			s.appendOK("INBOX", "Subject: "+subj+"\r\n\r\n"+subj+"\r\n")
		}
		var out []string
		modRe := regexp.MustCompile(`MODSEQ \(?(\d+)`)
		last := func(lines []string) string {
			for i := len(lines) - 1; i >= 0; i-- {
				if m := modRe.FindStringSubmatch(lines[i]); m != nil {
					return m[1]
				}
			}
			t.Fatalf("%s: no MODSEQ in %q", tg.name, lines)
			return ""
		}
		step := func(cmd string) []string {
			u, st := s.do("%s", cmd)
			out = append(out, "> "+regexp.MustCompile(`(SINCE|MODSEQ) [1-9]\d*`).ReplaceAllString(cmd, "$1 n"))
			for _, l := range u {
				if n := normCond(cmd, l); n != "" {
					out = append(out, n)
				}
			}
			code := ""
			if i := strings.Index(st, "]"); strings.Contains(st, "[") && i > 0 && !strings.Contains(st, "[CLIENTBUG]") {
				code = st[strings.Index(st, "[") : i+1]
			}
			out = append(out, strings.Fields(st)[0]+" "+code)
			return u
		}
		step("ENABLE CONDSTORE")
		h0 := last(step("SELECT INBOX"))
		m1 := last(step(`STORE 1 +FLAGS (\Seen)`))
		step("FETCH 1:* (FLAGS) (CHANGEDSINCE " + h0 + ")")
		step("UID FETCH 1:* (UID) (CHANGEDSINCE " + m1 + ")")
		step(`STORE 1:2 (UNCHANGEDSINCE ` + h0 + `) +FLAGS (\Flagged)`)
		step(`STORE 3 (UNCHANGEDSINCE ` + h0 + `) +FLAGS.SILENT (\Answered)`)
		step(`UID STORE 1:3 (UNCHANGEDSINCE 0) -FLAGS (\Seen)`)
		step("SEARCH MODSEQ " + m1)
		step("SEARCH MODSEQ 1")
		step("UID SEARCH RETURN (COUNT) MODSEQ " + m1)
		step("STATUS INBOX (MESSAGES HIGHESTMODSEQ)")
		step("FETCH 2 (MODSEQ)")
		step("UID FETCH 2 (FLAGS MODSEQ)")
		o := dialRaw(t, tg, "alice")
		o.ok("SELECT INBOX")
		o.ok(`STORE 3 +FLAGS.SILENT (\Deleted)`)
		step("NOOP")
		step("EXAMINE INBOX (CONDSTORE)")
		return out
	}
	ours := run(nymoteTarget(t))
	theirs := run(dv)
	if strings.Join(ours, "\n") != strings.Join(theirs, "\n") {
		t.Errorf("transcripts differ\n--- nymote\n%s\n--- dovecot\n%s", strings.Join(ours, "\n"), strings.Join(theirs, "\n"))
	}
}

// normCond keeps the lines CONDSTORE changes, with MODSEQ values as "n" and
// FETCH items sorted; "" for others.
func normCond(cmd, l string) string {
	l = regexp.MustCompile(`MODSEQ (\(?)\d+`).ReplaceAllString(l, "MODSEQ ${1}n")
	switch {
	case strings.HasPrefix(l, "* OK [HIGHESTMODSEQ"):
		return l[:strings.Index(l, "]")+1]
	case strings.HasPrefix(l, "* SEARCH"), strings.HasPrefix(l, "* ESEARCH"), strings.HasPrefix(l, "* ENABLED"), strings.HasPrefix(l, "* STATUS"):
		return regexp.MustCompile(`TAG "[^"]*"`).ReplaceAllString(l, `TAG "t"`)
	}
	m := regexp.MustCompile(`^(\* \d+ FETCH )\((.*)\)$`).FindStringSubmatch(l)
	if m == nil {
		return ""
	}
	// Items: NAME value pairs, a value an atom or a parenthesized list.
	var items []string
	s := m[2]
	for s != "" {
		name, rest, _ := strings.Cut(s, " ")
		val := rest
		if strings.HasPrefix(rest, "(") {
			i := strings.Index(rest, ")")
			val, rest = rest[:i+1], strings.TrimPrefix(rest[i+1:], " ")
		} else {
			val, rest, _ = strings.Cut(rest, " ")
		}
		if name == "UID" && !strings.Contains(cmd, "UID") {
			s = rest
			continue
		}
		if name == "FLAGS" {
			var f []string
			for _, x := range strings.Fields(strings.Trim(val, "()")) {
				if x != `\Recent` {
					f = append(f, x)
				}
			}
			sort.Strings(f)
			val = "(" + strings.Join(f, " ") + ")"
		}
		items = append(items, name+" "+val)
		s = rest
	}
	sort.Strings(items)
	return m[1] + "(" + strings.Join(items, " ") + ")"
}

// TestRFC7162ImplicitEnableDovecot: a CONDSTORE-enabling command other
// than ENABLE and SELECT (CONDSTORE), issued with a mailbox selected,
// gets "* OK [HIGHESTMODSEQ n]" before its answers the first time (RFC
// 7162 3.1), and not again; the same on both servers for FETCH MODSEQ,
// FETCH (CHANGEDSINCE), STORE (UNCHANGEDSINCE) and SEARCH MODSEQ.
func TestRFC7162ImplicitEnableDovecot(t *testing.T) {
	dv := dovecotTarget(t)
	run := func(tg imapTarget) []string {
		var out []string
		for i, first := range []string{"FETCH 1 (MODSEQ)", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1)", `STORE 1 (UNCHANGEDSINCE 9000000000000000000) +FLAGS (\Seen)`, "SEARCH MODSEQ 1"} {
			s := dialRaw(t, tg, "alice")
			if i == 0 {
				s.appendOK("INBOX", "Subject: a\r\n\r\na\r\n")
			}
			s.ok("SELECT INBOX")
			for _, cmd := range []string{first, "FETCH 1 (MODSEQ)"} {
				u, st := s.do("%s", cmd)
				out = append(out, "> "+cmd)
				for _, l := range u {
					if n := normCond(cmd, l); n != "" {
						out = append(out, n)
					}
				}
				out = append(out, strings.Fields(st)[0])
			}
		}
		return out
	}
	ours := run(nymoteTarget(t))
	theirs := run(dv)
	if strings.Join(ours, "\n") != strings.Join(theirs, "\n") {
		t.Errorf("transcripts differ\n--- nymote\n%s\n--- dovecot\n%s", strings.Join(ours, "\n"), strings.Join(theirs, "\n"))
	}
}
