package imapd

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestConformance is the checklist of the IMAP rules we were found to break
// once, by RFC section, each driven over a real connection with raw
// protocol lines so that the exact untagged responses are checked. Every
// case runs against our server and, where Dovecot is installed, against a
// private Dovecot, the same assertions for both; a case that holds only for
// us says why Dovecot answers otherwise (onlyUs).
func TestConformance(t *testing.T) {
	for _, target := range []struct {
		name  string
		start func(*testing.T) imapTarget
	}{{"nymote", nymoteTarget}, {"dovecot", dovecotTarget}} {
		t.Run(target.name, func(t *testing.T) {
			tg := target.start(t)
			for i, tc := range conformanceCases {
				t.Run(tc.name, func(t *testing.T) {
					if tc.onlyUs != "" && tg.name != "nymote" {
						t.Skip("Dovecot differs: " + tc.onlyUs)
					}
					tc.run(t, tg, fmt.Sprintf("box%d", i))
				})
			}
		})
	}
}

type conformanceCase struct {
	name string
	// onlyUs, if set, says why the case is not run against Dovecot.
	onlyUs string
	// run gets a mailbox name of its own (not yet created).
	run func(t *testing.T, tg imapTarget, box string)
}

const plainMsg = "From: \"User From\" <user-from@Domain.org>\r\n" +
	"To: user-to@domain.org, \"Two, Words\" <g2@domain.org>\r\n" +
	"Cc: <user-cc@domain.org>\r\n" +
	"Bcc: user-bcc@domain.org (Comment)\r\n" +
	"Subject: conformance\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
	"Message-ID: <conf-1@domain.org>\r\n" +
	"X-Label: Blue Sky\r\n" +
	"\r\n" +
	"hello\r\n"

const mimeMsg = "From: a@domain.org\r\n" +
	"Subject: parts\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=iso-8859-1\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"caf=E9 =3D soft=\r\n" +
	"break\r\n" +
	"--b1\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"AAECA/8=\r\n" +
	"--b1--\r\n"

var fetchFlags = regexp.MustCompile(`^\* \d+ FETCH \(.*FLAGS \(([^)]*)\)`)
var flagsResp = regexp.MustCompile(`^\* FLAGS \(([^)]*)\)`)

// checkFlagsAnnounced checks RFC 3501 7.2.6 over every untagged response a
// session got: each keyword a FETCH shows was named by a FLAGS before it.
func checkFlagsAnnounced(t *testing.T, who string, lines []string) {
	t.Helper()
	announced := map[string]bool{`\Recent`: true}
	for _, l := range lines {
		if m := flagsResp.FindStringSubmatch(l); m != nil {
			announced = map[string]bool{`\Recent`: true}
			for _, f := range strings.Fields(m[1]) {
				announced[f] = true
			}
			continue
		}
		if m := fetchFlags.FindStringSubmatch(l); m != nil {
			for _, f := range strings.Fields(m[1]) {
				if !announced[f] {
					t.Errorf("%s: %q uses %s, which no FLAGS before it named (responses: %q)", who, l, f, lines)
				}
			}
		}
	}
}

func hasLine(lines []string, re string) bool {
	r := regexp.MustCompile(re)
	for _, l := range lines {
		if r.MatchString(l) {
			return true
		}
	}
	return false
}

func wantStatus(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.HasPrefix(got, want) {
		t.Errorf("%s: got %q, want %s", what, got, want)
	}
}

func noServerBug(t *testing.T, what, got string) {
	t.Helper()
	if strings.Contains(got, "SERVERBUG") || !(strings.HasPrefix(got, "OK") || strings.HasPrefix(got, "NO") || strings.HasPrefix(got, "BAD")) {
		t.Errorf("%s: got %q, want OK, NO or BAD without SERVERBUG", what, got)
	}
}

var conformanceCases = []conformanceCase{
	{name: "RFC3501 7.2.6 FLAGS announced before FETCH uses a new keyword from STORE", run: func(t *testing.T, tg imapTarget, box string) {
		a, b, c := dialRaw(t, tg, "alice"), dialRaw(t, tg, "alice"), dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.appendMsg(box, `\Seen`, plainMsg)
		a.appendMsg(box, ``, plainMsg)
		for _, s := range []*rawSession{a, b, c} {
			s.ok("SELECT %s", box)
		}
		idle := c.idle()
		a.ok(`STORE 1 +FLAGS ($Label1)`)
		// b fetches before it has been told: the keyword must not show
		// before a FLAGS names it.
		b.ok("FETCH 1:* (FLAGS)")
		b.ok("NOOP")
		b.ok("FETCH 1:* (FLAGS)")
		c.until(`FETCH .*\$Label1`)
		c.done(idle)
		a.ok(`STORE 2 FLAGS.SILENT ($hello)`)
		a.ok("FETCH 2 (FLAGS)")
		b.ok("NOOP")
		for who, s := range map[string]*rawSession{"storing session": a, "other session": b, "idling session": c} {
			checkFlagsAnnounced(t, who, s.all)
		}
		if !hasLine(b.all, `^\* FLAGS \(.*\$Label1`) || !hasLine(b.all, `^\* \d+ FETCH \(.*\$Label1`) {
			t.Errorf("other session: never told of $Label1: %q", b.all)
		}
		if !hasLine(a.all, `^\* \d+ FETCH \(.*\$hello`) {
			t.Errorf("storing session: FETCH 2 (FLAGS) does not show $hello: %q", a.all)
		}
	}},
	{name: "RFC3501 7.2.6 FLAGS announced before EXISTS brings a message with a new keyword from APPEND", run: func(t *testing.T, tg imapTarget, box string) {
		a, b := dialRaw(t, tg, "alice"), dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.ok("SELECT %s", box)
		b.ok("SELECT %s", box)
		u, st := a.appendMsg(box, `$Fresh \Flagged`, plainMsg)
		wantStatus(t, "APPEND", st, "OK")
		if !hasLine(u, `^\* FLAGS \(.*\$Fresh`) {
			t.Errorf("APPEND to the selected mailbox: no FLAGS naming $Fresh in %q", u)
		}
		idle := b.idle()
		b.until(`EXISTS`)
		b.done(idle)
		b.ok("FETCH 1 (FLAGS)")
		checkFlagsAnnounced(t, "appending session", a.all)
		checkFlagsAnnounced(t, "other session", b.all)
		if !hasLine(b.all, `^\* 1 FETCH \(.*\$Fresh`) {
			t.Errorf("FETCH after APPEND: $Fresh missing in %q", b.all)
		}
	}},
	{name: "RFC3501 7.2.6 FLAGS announced before use across four sessions storing new keywords in turn", run: func(t *testing.T, tg imapTarget, box string) {
		ss := []*rawSession{dialRaw(t, tg, "alice"), dialRaw(t, tg, "alice"), dialRaw(t, tg, "alice"), dialRaw(t, tg, "alice")}
		ss[0].ok("CREATE %s", box)
		for i := 0; i < 6; i++ {
			ss[0].appendMsg(box, ``, plainMsg)
		}
		for _, s := range ss {
			s.ok("SELECT %s", box)
		}
		watcher := dialRaw(t, tg, "alice")
		watcher.ok("SELECT %s", box)
		idle := watcher.idle()
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 60; i++ {
			s := ss[r.IntN(len(ss))]
			switch r.IntN(4) {
			case 0:
				s.ok("STORE %d +FLAGS ($kw%d)", 1+r.IntN(6), i)
			case 1:
				s.ok("STORE %d +FLAGS.SILENT ($kw%d \\Flagged)", 1+r.IntN(6), i)
			case 2:
				s.ok("FETCH 1:* (FLAGS)")
			case 3:
				s.appendMsg(box, fmt.Sprintf("$new%d", i), plainMsg)
			}
		}
		for _, s := range ss {
			s.ok("NOOP")
		}
		ss[0].ok("STORE 1 +FLAGS ($last)")
		watcher.until(`FETCH .*\$last`)
		watcher.done(idle)
		for i, s := range append(ss, watcher) {
			checkFlagsAnnounced(t, fmt.Sprintf("session %d", i), s.all)
		}
	}},
	{name: "RFC3501 9 flag-keyword NIL is refused, never shown as NIL", onlyUs: "Dovecot stores the keyword NIL and writes FLAGS (NIL), which clients parse as nil", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		_, st := a.appendMsg(box, `NIL`, plainMsg)
		wantStatus(t, "APPEND (NIL)", st, "NO")
		a.appendMsg(box, ``, plainMsg)
		a.ok("SELECT %s", box)
		_, st = a.do("STORE 1 +FLAGS (nil)")
		wantStatus(t, "STORE +FLAGS (nil)", st, "NO")
		a.ok("FETCH 1 (FLAGS)")
		if hasLine(a.all, `(?i)[( ]NIL[ )]`) {
			t.Errorf("NIL shown as a flag: %q", a.all)
		}
	}},
	{name: "RFC3501 6.4.2 CLOSE after EXAMINE succeeds and expunges nothing", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.appendMsg(box, `\Deleted`, plainMsg)
		a.ok("EXAMINE %s", box)
		u := a.ok("CLOSE")
		if hasLine(u, `EXPUNGE`) {
			t.Errorf("CLOSE after EXAMINE expunged: %q", u)
		}
		u = a.ok("SELECT %s", box)
		if !hasLine(u, `^\* 1 EXISTS`) {
			t.Errorf("SELECT after CLOSE of an EXAMINE: got %q, want 1 EXISTS", u)
		}
	}},
	{name: "RFC3501 6.3.2 EXAMINE refuses STORE, EXPUNGE and MOVE but allows COPY out", onlyUs: "Dovecot answers OK to STORE (Store ignored) and MOVEs out of an EXAMINEd mailbox", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.ok("CREATE %s-to", box)
		a.appendMsg(box, ``, plainMsg)
		u := a.ok("EXAMINE %s", box)
		if !hasLine(u, `PERMANENTFLAGS \(\)`) {
			t.Errorf("EXAMINE: got %q, want PERMANENTFLAGS ()", u)
		}
		_, st := a.do(`STORE 1 +FLAGS (\Seen)`)
		wantStatus(t, "STORE in EXAMINE", st, "NO")
		_, st = a.do("MOVE 1 %s-to", box)
		wantStatus(t, "MOVE in EXAMINE", st, "NO")
		a.ok("COPY 1 %s-to", box)
		a.ok("FETCH 1 BODY[TEXT]")
		u = a.ok("FETCH 1 (FLAGS)")
		if hasLine(u, `\\Seen`) {
			t.Errorf("FETCH BODY[] in EXAMINE set \\Seen: %q", u)
		}
	}},
	{name: "RFC6851 3.1 MOVE to the selected mailbox moves with COPYUID", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.appendMsg(box, ``, plainMsg)
		a.ok("SELECT %s", box)
		u, st := a.do("MOVE 1 %s", box)
		wantStatus(t, "MOVE to the same mailbox", st, "OK")
		// The copy's EXISTS may come before or after the EXPUNGE.
		if !hasLine(u, `^\* OK \[COPYUID \d+ 1 2\]`) || !hasLine(u, `^\* 1 EXPUNGE`) || !hasLine(u, `^\* [12] EXISTS`) {
			t.Errorf("MOVE to the same mailbox: got %q, want COPYUID n 1 2, 1 EXPUNGE and EXISTS", u)
		}
		u = a.ok("UID FETCH 1:* (UID)")
		if !hasLine(u, `UID 2\)`) || len(u) != 1 {
			t.Errorf("after MOVE: got %q, want UID 2 alone", u)
		}
	}},
	{name: "RFC4315 3 COPY to the same mailbox, to a missing one, and of nothing", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.appendMsg(box, `\Flagged $Kw`, plainMsg)
		a.ok("SELECT %s", box)
		u, st := a.do("COPY 1 %s", box)
		if !regexp.MustCompile(`^OK \[COPYUID \d+ 1 2\]`).MatchString(st) {
			t.Errorf("COPY to the same mailbox: got %q, want OK [COPYUID n 1 2]", st)
		}
		u = append(u, a.ok("NOOP")...)
		if !hasLine(u, `^\* 2 EXISTS`) {
			t.Errorf("after COPY to the selected mailbox: got %q, want 2 EXISTS", u)
		}
		u = a.ok("FETCH 2 (FLAGS)")
		if !hasLine(u, `\\Flagged`) || !hasLine(u, `\$Kw`) {
			t.Errorf("COPY kept flags: got %q", u)
		}
		_, st = a.do("COPY 1 %s-missing", box)
		wantStatus(t, "COPY to a missing mailbox", st, "NO [TRYCREATE]")
		_, st = a.do("UID COPY 99 %s", box)
		wantStatus(t, "UID COPY of no message", st, "OK")
		if strings.Contains(st, "COPYUID") {
			t.Errorf("UID COPY of no message: got %q, want no COPYUID", st)
		}
	}},
	{name: "RFC3501 6.4.4 SEARCH FROM TO CC BCC match a substring of the header, case-insensitive", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.appendMsg(box, ``, plainMsg)
		a.appendMsg(box, ``, "From: other@example.com\r\nSubject: x\r\n\r\nx\r\n")
		// Bare LF line ends, a folded header, an encoded name.
		a.appendMsg(box, ``, "Subject: lf\nFrom: =?utf-8?q?J=C3=BCrgen?=\n <user-from@domain.org>\nTo: =?iso-8859-1?q?Andr=E9?= <andre@domain.org>\n\nbody\n")
		a.ok("SELECT %s", box)
		for _, tc := range []struct{ q, want string }{
			{"FROM user-from@domain.org", "1 3"}, {"FROM USER-FROM", "1 3"}, {`FROM "User From"`, "1"}, {"FROM domain.ORG", "1 3"},
			{`FROM "jürgen"`, "3"}, {`TO "andré"`, "3"}, {"TO andre@", "3"},
			{"TO user-to@domain.org", "1"}, {"TO g2@domain.org", "1"}, {`TO "two, words"`, "1"}, {"TO <g2@", "1"},
			{"CC user-cc", "1"}, {"BCC user-bcc@domain.org", "1"},
			{"HEADER X-Label sky", "1"}, {`HEADER X-Label ""`, "1"}, {"HEADER Message-ID conf-1", "1"},
			{"OR FROM nobody@nowhere FROM user-from", "1 3"}, {"NOT FROM example.com", "1 3"},
		} {
			q := tc.q
			charset := ""
			if strings.ContainsAny(q, "üé") {
				charset = "CHARSET UTF-8 "
			}
			u := a.ok("SEARCH %s%s", charset, q)
			if !hasLine(u, `^\* SEARCH `+tc.want+`$`) {
				t.Errorf("SEARCH %s: got %q, want * SEARCH %s", q, u, tc.want)
			}
		}
		u := a.ok("SEARCH FROM user-to")
		if !hasLine(u, `^\* SEARCH$`) {
			t.Errorf("SEARCH FROM user-to: got %q, want none", u)
		}
	}},
	{name: "RFC3501 7.4.2 FETCH ENVELOPE with comments and quoted names", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.appendMsg(box, ``, plainMsg)
		a.ok("EXAMINE %s", box)
		u := a.ok("FETCH 1 ENVELOPE")
		want := `* 1 FETCH (ENVELOPE ("Mon, 02 Jan 2006 15:04:05 +0000" "conformance" (("User From" NIL "user-from" "Domain.org")) (("User From" NIL "user-from" "Domain.org")) (("User From" NIL "user-from" "Domain.org")) ((NIL NIL "user-to" "domain.org")("Two, Words" NIL "g2" "domain.org")) ((NIL NIL "user-cc" "domain.org")) (("Comment" NIL "user-bcc" "domain.org")) NIL "<conf-1@domain.org>"))`
		// No space between the addresses of a list: "(" 1*address ")".
		if len(u) == 1 {
			u[0] = strings.Replace(u[0], "UID 1 ", "", 1)
		}
		if len(u) != 1 || u[0] != want {
			t.Errorf("FETCH ENVELOPE:\n got %q\nwant %q", u, want)
		}
	}},
	{name: "RFC3501 7.4.2 FETCH ENVELOPE marks groups (RFC 5322 3.4)", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.appendMsg(box, ``, "From: a@x.org\r\nTo: Team: one@x.org, \"Two\" <two@x.org>;, solo@x.org\r\n"+
			"Cc: undisclosed-recipients:;\r\nBcc: \"Our, Group\": <three@x.org>;\r\nSubject: g\r\n\r\nx\r\n")
		a.ok("EXAMINE %s", box)
		u := a.ok("FETCH 1 ENVELOPE")
		// A group starts with (NIL NIL "name" NIL) and ends with
		// (NIL NIL NIL NIL); an empty group is the two alone.
		want := `* 1 FETCH (ENVELOPE (NIL "g" ((NIL NIL "a" "x.org")) ((NIL NIL "a" "x.org")) ((NIL NIL "a" "x.org")) ` +
			`((NIL NIL "Team" NIL)(NIL NIL "one" "x.org")("Two" NIL "two" "x.org")(NIL NIL NIL NIL)(NIL NIL "solo" "x.org")) ` +
			`((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL NIL "Our, Group" NIL)(NIL NIL "three" "x.org")(NIL NIL NIL NIL)) NIL NIL))`
		if len(u) == 1 {
			u[0] = strings.Replace(u[0], "UID 1 ", "", 1)
		}
		if len(u) != 1 || u[0] != want {
			t.Errorf("FETCH ENVELOPE:\n got %q\nwant %q", u, want)
		}
	}},
	{name: "RFC3516 4.2 BINARY decodes quoted-printable and base64 parts", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.appendMsg(box, ``, mimeMsg)
		a.ok("EXAMINE %s", box)
		for _, tc := range []struct{ item, want string }{
			{"BINARY.PEEK[1]", "* 1 FETCH (BINARY[1] {16}caf\xe9 = softbreak)"},
			{"BINARY.SIZE[1]", "* 1 FETCH (BINARY.SIZE[1] 16)"},
			{"BINARY.PEEK[2]", "* 1 FETCH (BINARY[2] ~{5}\x00\x01\x02\x03\xff)"},
			{"BINARY.SIZE[2]", "* 1 FETCH (BINARY.SIZE[2] 5)"},
			// A partial fetch names its origin octet (RFC 3516 4.2, 9).
			{"BINARY.PEEK[1]<0.4>", "* 1 FETCH (BINARY[1]<0> {4}caf\xe9)"},
			{"BINARY.PEEK[2]<2.10>", "* 1 FETCH (BINARY[2]<2> ~{3}\x02\x03\xff)"},
			{"BINARY.PEEK[1]<4.3> BINARY.PEEK[2]<0.1>", "* 1 FETCH (BINARY[1]<4> {3} =  BINARY[2]<0> {1}\x00)"},
		} {
			u := a.ok("FETCH 1 (%s)", tc.item)
			// A literal8 (~{n}) or a literal: both may carry 8-bit data.
			if len(u) != 1 || strings.NewReplacer("UID 1 ", "", "~{", "{").Replace(u[0]) != strings.Replace(tc.want, "~{", "{", 1) {
				t.Errorf("FETCH 1 (%s): got %q, want %q", tc.item, u, tc.want)
			}
		}
	}},
	{name: "RFC3516 4.2 BINARY sets \\Seen, BINARY.PEEK does not", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.appendMsg(box, ``, mimeMsg)
		a.ok("SELECT %s", box)
		a.ok("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[2])")
		if u := a.ok("FETCH 1 FLAGS"); len(u) != 1 || strings.Contains(u[0], `\Seen`) {
			t.Errorf("after BINARY.PEEK: %q, want no \\Seen", u)
		}
		a.ok("FETCH 1 (BINARY[1]<0.2>)")
		if u := a.ok("FETCH 1 FLAGS"); len(u) != 1 || !strings.Contains(u[0], `\Seen`) {
			t.Errorf("after BINARY: %q, want \\Seen", u)
		}
	}},
	{name: "RFC3501 6.3.4, 6.3.6 DELETE leaves the subscription", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.ok("SUBSCRIBE %s", box)
		a.ok("DELETE %s", box)
		if u := a.ok(`LSUB "" %s`, box); len(u) != 1 || !regexp.MustCompile(`^\* LSUB \(.*\) "/" "?`+box+`"?$`).MatchString(u[0]) {
			t.Errorf("LSUB after DELETE: %q, want the name still subscribed", u)
		}
		if u := a.ok(`LIST (SUBSCRIBED) "" %s`, box); len(u) != 1 || !strings.Contains(u[0], `\NonExistent`) || !strings.Contains(u[0], `\Subscribed`) {
			t.Errorf("LIST (SUBSCRIBED) after DELETE: %q, want \\NonExistent \\Subscribed", u)
		}
		if u := a.ok(`LIST "" %s`, box); len(u) != 0 {
			t.Errorf("LIST after DELETE: %q, want nothing", u)
		}
		// CREATE again: the mailbox is subscribed (the name was).
		a.ok("CREATE %s", box)
		if u := a.ok(`LIST (SUBSCRIBED) "" %s`, box); len(u) != 1 || strings.Contains(u[0], `\NonExistent`) || !strings.Contains(u[0], `\Subscribed`) {
			t.Errorf("LIST (SUBSCRIBED) after CREATE again: %q", u)
		}
		a.ok("DELETE %s", box)
		a.ok("UNSUBSCRIBE %s", box)
		if u := a.ok(`LSUB "" %s`, box); len(u) != 0 {
			t.Errorf("LSUB after UNSUBSCRIBE of a deleted mailbox: %q, want nothing", u)
		}
		// The subscription is kept in the store: a new session sees it.
		a.ok("CREATE %s", box)
		a.ok("SUBSCRIBE %s", box)
		a.ok("DELETE %s", box)
		b := dialRaw(t, tg, "alice")
		if u := b.ok(`LSUB "" %s`, box); len(u) != 1 {
			t.Errorf("LSUB in another session: %q", u)
		}
	}},
	{name: "RFC5258 3.5 LIST (SUBSCRIBED RECURSIVEMATCH) reports CHILDINFO", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s/a/b", box)
		a.ok("CREATE %s/c", box)
		a.ok("SUBSCRIBE %s/a/b", box)
		a.ok("SUBSCRIBE %s/c", box)
		a.ok("UNSUBSCRIBE %s/a", box)
		a.ok("UNSUBSCRIBE %s", box)
		u := a.ok(`LIST (SUBSCRIBED RECURSIVEMATCH) "" "%s/%%"`, box)
		// box/a is not subscribed but has a subscribed child: CHILDINFO
		// (a mailbox CREATE made as a superior: Dovecot's maildir makes
		// none, so it is \NonExistent there).
		wantA := `^\* LIST \((\\NonExistent|\\HasChildren)?\) "/" "?` + box + `/a"? \("?CHILDINFO"? \("SUBSCRIBED"\)\)$`
		wantC := `^\* LIST \(\\Subscribed( \\HasNoChildren)?\) "/" "?` + box + `/c"?$`
		if len(u) != 2 || !hasLine(u, wantA) || !hasLine(u, wantC) {
			t.Errorf("LIST (SUBSCRIBED RECURSIVEMATCH):\n got %q\nwant %s and %s", u, wantA, wantC)
		}
		u = a.ok(`LIST (SUBSCRIBED) "" "%s/*"`, box)
		if len(u) != 2 || !hasLine(u, `/a/b"?$`) || !hasLine(u, `/c"?$`) {
			t.Errorf("LIST (SUBSCRIBED): got %q, want a/b and c", u)
		}
		u = a.ok(`LIST "" "%s/%%" RETURN (CHILDREN SUBSCRIBED)`, box)
		if !hasLine(u, `^\* LIST \((\\NonExistent )?\\HasChildren\) "/" "?`+box+`/a"?$`) || !hasLine(u, `^\* LIST \((\\HasNoChildren \\Subscribed|\\Subscribed \\HasNoChildren)\) "/" "?`+box+`/c"?$`) {
			t.Errorf("LIST RETURN (CHILDREN SUBSCRIBED): got %q", u)
		}
		u = a.ok(`LSUB "" "%s/%%"`, box)
		// (LSUB is served as LIST (SUBSCRIBED RECURSIVEMATCH), whose
		// \Subscribed and \HasNoChildren clients of LSUB ignore.)
		if !hasLine(u, `^\* LSUB \((\\HasChildren )?\\Noselect\) "/" "?`+box+`/a"?$`) || !hasLine(u, `^\* LSUB \((\\Subscribed \\HasNoChildren)?\) "/" "?`+box+`/c"?$`) {
			t.Errorf("LSUB with a subscribed child below %%: got %q", u)
		}
	}},
	{name: "RFC3501 2.3.1.1 UIDVALIDITY changes when a mailbox is deleted and created again", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		uv := regexp.MustCompile(`\[UIDVALIDITY (\d+)\]`)
		var seen []string
		for i := 0; i < 3; i++ {
			a.ok("CREATE %s", box)
			a.appendMsg(box, ``, plainMsg)
			u := a.ok("SELECT %s", box)
			var v string
			for _, l := range u {
				if m := uv.FindStringSubmatch(l); m != nil {
					v = m[1]
				}
			}
			for _, s := range seen {
				if s == v {
					t.Errorf("UIDVALIDITY %s given twice to %s (%q)", v, box, seen)
				}
			}
			seen = append(seen, v)
			if !hasLine(u, `^\* OK \[UIDNEXT 2\]`) {
				t.Errorf("SELECT: got %q, want UIDNEXT 2", u)
			}
			a.ok("UNSELECT")
			a.ok("DELETE %s", box)
		}
	}},
	{name: "RFC3501 6.3.1 a failed SELECT leaves no mailbox selected", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		a.ok("CREATE %s", box)
		a.ok("SELECT %s", box)
		_, st := a.do("SELECT %s-missing", box)
		wantStatus(t, "SELECT of a missing mailbox", st, "NO")
		_, st = a.do("FETCH 1 (FLAGS)")
		wantStatus(t, "FETCH after a failed SELECT", st, "BAD")
	}},
	{name: "RFC3501 5.1.3 a mailbox name that is not modified UTF-7 is a clear NO or BAD", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		for _, cmd := range []string{`CREATE "%s&bad"`, `SELECT "%s&Jjo"`, "STATUS %s&- (MESSAGES)", "SELECT \"%s\xff\xfe\""} {
			_, st := a.do(cmd, box)
			noServerBug(t, cmd, st)
			if strings.HasPrefix(st, "OK") && !strings.HasPrefix(cmd, "STATUS") {
				t.Errorf("%s: got %q, want NO or BAD", cmd, st)
			}
		}
		a.ok("NOOP")
	}},
	{name: "RFC3501 6.3.8 LIST with a pattern of unusual atom characters is not a server bug", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "alice")
		// go-imap v2.0.0-beta.9 answers NO [SERVERBUG] to a pattern that is
		// not modified UTF-7 ("&'+,-", "&Jjo"): the layer answers those
		// BAD first (listcheck.go).
		for _, p := range []string{"!#$$'+,-.0123456789:;<=>?@^_`|[}%*", "]%", `"&-"`, "%&-*", "&'+,-", `"&Jjo"`, `("INBOX" "&Jjo")`, `(SUBSCRIBED) "" &Jjo* RETURN (CHILDREN)`, "{4+}\r\n&Jjo"} {
			_, st := a.do(`LIST "" %s`, p)
			noServerBug(t, "LIST \"\" "+p, st)
		}
		// A pattern in good modified UTF-7 still lists its mailbox.
		a.ok(`CREATE "%s-caf&AOk-"`, box)
		for _, args := range []string{`"" "BOX-caf&AOk-"`, `"" BOX-*&AOk-`, `"" (NOSUCH "BOX-caf&AOk-") RETURN (CHILDREN)`} {
			args = strings.Replace(args, "BOX", box, 1)
			if u := a.ok("LIST %s", args); !hasLine(u, `^\* LIST .*-caf&AOk-"?$`) {
				t.Errorf("LIST %s: %q, want the mailbox", args, u)
			}
		}
		a.ok("NOOP")
	}},
	{name: "RFC3501 6.3.11 APPEND before login is refused without reading its literal", onlyUs: "Dovecot sends the continuation request and reads the literal before it refuses", run: func(t *testing.T, tg imapTarget, box string) {
		a := dialRaw(t, tg, "")
		tag := a.send("APPEND INBOX {1000}")
		l := a.line()
		if strings.HasPrefix(l, "+") {
			t.Fatalf("APPEND before login: got a continuation request %q, want a refusal", l)
		}
		if !strings.HasPrefix(l, tag+" NO") && !strings.HasPrefix(l, tag+" BAD") {
			t.Errorf("APPEND before login: got %q, want NO or BAD", l)
		}
	}},
}
