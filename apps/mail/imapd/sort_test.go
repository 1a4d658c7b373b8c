package imapd

import (
	"fmt"
	"strings"
	"testing"
)

// TestRFC5256 is SORT and THREAD (RFC 5256), the same assertions against
// our server and a private Dovecot.
func TestRFC5256(t *testing.T) {
	type m struct{ subject, date, from, ids string }
	msgs := []m{
		{"Re: Hello", "Tue, 03 Jan 2006 10:00:00 +0000", "carol", "Message-ID: <m1@x>\r\nIn-Reply-To: <m0@x>\r\n"},
		{"hello", "Sun, 01 Jan 2006 10:00:00 +0000", "Alice", "Message-ID: <m0@x>\r\n"},
		{"[list] Fwd: Other (fwd)", "Mon, 02 Jan 2006 10:00:00 +0000", "bob", "Message-ID: <m2@x>\r\n"},
		{"other", "Thu, 05 Jan 2006 10:00:00 +0000", "dave", "Message-ID: <m3@x>\r\nReferences: <m2@x>\r\n"},
		{"Re: hello", "Wed, 04 Jan 2006 10:00:00 +0000", "eve", "Message-ID: <m4@x>\r\nReferences: <m0@x> <m1@x>\r\n"},
		{"zeta", "", "bob", "Message-ID: <m5@x>\r\n"}, // no Date: the internal date counts
		{"alpha", "Mon, 02 Jan 2006 03:00:00 +0500", "frank", "Message-ID: <m6@x>\r\nReferences: <missing@x>\r\n"},
		{"Re: zeta", "Fri, 06 Jan 2006 10:00:00 +0000", "grace", "Message-ID: <m7@x>\r\n"},
	}
	for _, target := range []struct {
		name  string
		start func(*testing.T) imapTarget
	}{{"nymote", nymoteTarget}, {"dovecot", dovecotTarget}} {
		t.Run(target.name, func(t *testing.T) {
			tg := target.start(t)
			s := dialRaw(t, tg, "alice")
			s.ok("CREATE sorted")
			for i, x := range msgs {
				h := fmt.Sprintf("From: %s@x.org\r\nTo: t@x.org\r\nSubject: %s\r\n%s", x.from, x.subject, x.ids)
				if x.date != "" {
					h += "Date: " + x.date + "\r\n"
				}
				body := h + "\r\n" + strings.Repeat("b", 200*(i+1)) + "\r\n"
				tag := s.send(`APPEND sorted "0%d-Feb-2006 10:00:00 +0000" {%d}`, i+1, len(body))
				if l := s.line(); !strings.HasPrefix(l, "+") {
					t.Fatalf("APPEND: %q", l)
				}
				fmt.Fprintf(s.c, "%s\r\n", body)
				if _, st := s.wait(tag); !strings.HasPrefix(st, "OK") {
					t.Fatalf("APPEND: %s", st)
				}
			}
			u := s.ok("CAPABILITY")
			for _, c := range []string{"SORT", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"} {
				if !strings.Contains(u[0]+" ", " "+c+" ") {
					t.Errorf("CAPABILITY: %q, want %s", u, c)
				}
			}
			wantStatus(t, "SORT unselected", second(s.do("SORT (DATE) UTF-8 ALL")), "BAD")
			s.ok("SELECT sorted")
			for _, c := range []struct{ cmd, want string }{
				// 3: each key, REVERSE, ties in mailbox order.
				{"SORT (ARRIVAL) UTF-8 ALL", "* SORT 1 2 3 4 5 6 7 8"},
				{"SORT (REVERSE ARRIVAL) UTF-8 ALL", "* SORT 8 7 6 5 4 3 2 1"},
				{"SORT (DATE) UTF-8 ALL", "* SORT 2 7 3 1 5 4 8 6"},
				{"SORT (SUBJECT) UTF-8 ALL", "* SORT 7 1 2 5 3 4 6 8"},
				{"SORT (SUBJECT REVERSE DATE) UTF-8 ALL", "* SORT 7 5 1 2 4 3 6 8"},
				{"SORT (FROM) UTF-8 ALL", "* SORT 2 3 6 1 4 5 7 8"},
				{"SORT (REVERSE SIZE) US-ASCII ALL", "* SORT 8 7 6 5 4 3 2 1"},
				{"SORT (TO SIZE) UTF-8 ALL", "* SORT 1 2 3 4 5 6 7 8"},
				{"SORT (CC REVERSE SIZE) UTF-8 ALL", "* SORT 8 7 6 5 4 3 2 1"},
				// The search program.
				{"SORT (DATE) UTF-8 FROM bob", "* SORT 3 6"},
				{"SORT (DATE) UTF-8 OR FROM bob (SUBJECT hello NOT FROM alice) 1:7", "* SORT 3 1 5 6"},
				{"SORT (DATE) UTF-8 SUBJECT nothing", "* SORT"},
				{"UID SORT (REVERSE DATE) UTF-8 UID 2:4", "* SORT 4 3 2"},
				// 4: threads.
				{"THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (2 (1)(5))(7)(3 4)(8 6)"},
				{"THREAD REFERENCES UTF-8 ALL", "* THREAD (2 1 5)(7)(3 4)(6 8)"},
				{"UID THREAD REFERENCES UTF-8 NOT 1", "* THREAD (2 5)(7)(3 4)(6 8)"},
				// ESORT (RFC 5267 3.2).
				{"SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL", `* ESEARCH (TAG "%s") MIN 2 MAX 6 ALL 2,7,3,1,5,4,8,6 COUNT 8`},
				{"SORT RETURN () (REVERSE ARRIVAL) UTF-8 2:5", `* ESEARCH (TAG "%s") ALL 5,4,3,2`},
				{"UID SORT RETURN (COUNT MIN) (ARRIVAL) UTF-8 ALL", `* ESEARCH (TAG "%s") UID MIN 1 COUNT 8`},
				{"UID SORT RETURN (ALL) (SIZE) UTF-8 ALL", `* ESEARCH (TAG "%s") UID ALL 1:8`},
				{"SORT RETURN (MIN COUNT) (DATE) UTF-8 SUBJECT nothing", `* ESEARCH (TAG "%s") COUNT 0`},
			} {
				tag := s.send("%s", c.cmd)
				u, st := s.wait(tag)
				if strings.Contains(c.want, "%s") {
					c.want = fmt.Sprintf(c.want, tag)
				}
				if !strings.HasPrefix(st, "OK") || len(u) != 1 || u[0] != c.want {
					t.Errorf("%s: %s %q, want %q", c.cmd, st, u, c.want)
				}
			}
			// SAVE (RFC 5182, allowed in SORT by RFC 5267 3.2): the
			// result is $ for the commands after it.
			for _, c := range []struct{ sort, want string }{
				{"SORT RETURN (SAVE) (DATE) UTF-8 FROM bob", "* SEARCH 3 6"},
				{"SORT RETURN (SAVE MIN) (REVERSE DATE) UTF-8 ALL", "* SEARCH 6"},
				{"SORT RETURN (SAVE MAX COUNT) (SIZE) UTF-8 1:3", "* SEARCH 1 2 3"},
				// SEARCH alike (RFC 5182 2.4): MIN and/or MAX
				// alone save only those.
				{"SEARCH RETURN (SAVE MIN) FROM bob", "* SEARCH 3"},
				{"SEARCH RETURN (SAVE MAX) FROM bob", "* SEARCH 6"},
				{"UID SEARCH RETURN (SAVE MIN MAX) ALL", "* SEARCH 1 8"},
				{"SEARCH RETURN (SAVE MIN COUNT) FROM bob", "* SEARCH 3 6"},
				{"SEARCH RETURN (SAVE MAX ALL) 2:4", "* SEARCH 2 3 4"},
			} {
				u, st := s.do("%s", c.sort)
				if !strings.HasPrefix(st, "OK") || (strings.Contains(c.sort, "(SAVE)") && len(u) != 0) {
					t.Errorf("%s: %s %q", c.sort, st, u)
				}
				if u := s.ok("SEARCH $"); len(u) != 1 || u[0] != c.want {
					t.Errorf("SEARCH $ after %s: %q, want %q", c.sort, u, c.want)
				}
			}
			wantStatus(t, "unknown charset", second(s.do("SORT (DATE) X-NO-SUCH-CHARSET ALL")), "NO [BADCHARSET")
			wantStatus(t, "unknown sort key", second(s.do("SORT (COLOR) UTF-8 ALL")), "BAD")
			wantStatus(t, "unknown algorithm", second(s.do("THREAD WEAVE UTF-8 ALL")), "BAD")
			wantStatus(t, "no search keys", second(s.do("SORT (DATE) UTF-8")), "BAD")
			s.ok("NOOP")
		})
	}
}

// TestBaseSubject is RFC 5256 2.1's extraction.
func TestBaseSubject(t *testing.T) {
	for _, c := range []struct {
		in, want string
		reply    bool
	}{
		{"Hello", "Hello", false},
		{"Re: Hello", "Hello", true},
		{"RE: re:  Fwd:Hello", "Hello", true},
		{"Re[2]: Hello", "Hello", true},
		{"[list] Re: Hello", "Hello", true},
		{"[list] Hello", "Hello", false},
		{"[list]", "[list]", false},
		{"Hello (fwd)", "Hello", true},
		{"[Fwd: Re: Hello]", "Hello", true},
		{"  a\t \tb  ", "a b", false},
		{"Re:", "", true},
		{"Reply", "Reply", false},
	} {
		got, reply := baseSubject(c.in)
		if got != c.want || reply != c.reply {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", c.in, got, reply, c.want, c.reply)
		}
	}
}
