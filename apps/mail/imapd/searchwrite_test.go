package imapd

import (
	"context"
	mrand "math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// TestSearchFastPath checks that the fast path of SEARCH answers
// (searchwrite.go) answers byte for byte as imapserver and the layer do.
// Each trial plays one random script twice, on two fresh stores: once
// with the fast path off, once on. The script fills a mailbox (empty in
// some trials) with random flags, then a writer session APPENDs, STOREs
// and EXPUNGEs while a reader session, selected first, sends SEARCH and
// UID SEARCH: random keys (flags, sets, UID sets, "$", OR, a literal, bad
// ones), with and without RETURN options (ESEARCH: MIN, MAX, COUNT, ALL,
// SAVE, none, bad ones), CHARSET (good and refused), MODSEQ (the layer's),
// under IMAP4rev1, CONDSTORE or IMAP4rev2 (ESEARCH for every SEARCH),
// with odd and long tags, outside the selected state, and FETCHes of the
// saved result. Every byte the reader receives must be the same in both
// runs, the updates it is owed after each SEARCH included (EXISTS, FLAGS,
// flag FETCHes; EXPUNGE waits). MODSEQs are compared by rank.
func TestSearchFastPath(t *testing.T) {
	for trial := range scriptTrials() {
		seed := uint64(trial + 1)
		general, _ := searchScript(t, seed, true)
		fast, n := searchScript(t, seed, false)
		all := sameAnswers(t, trial, general, fast)
		t.Logf("trial %d: %d exchanges, %d answered by the fast path; SEARCH %d, ESEARCH %d, ALL %d, MIN %d, COUNT %d, EXISTS %d, FETCH %d, MODSEQ %d, BAD %d, NO %d", trial, len(general), n,
			strings.Count(all, "* SEARCH"), strings.Count(all, "* ESEARCH"), strings.Count(all, " ALL "), strings.Count(all, " MIN "), strings.Count(all, " COUNT "),
			strings.Count(all, "EXISTS"), strings.Count(all, " FETCH ("), strings.Count(all, "MODSEQ"), strings.Count(all, " BAD "), strings.Count(all, " NO "))
		if n < 10 {
			t.Fatalf("trial %d: the fast path answered %d SEARCHes", trial, n)
		}
	}
}

// searchScript plays the script of seed (see TestSearchFastPath) and
// returns what the reader was answered, MODSEQs replaced by their ranks,
// and how many SEARCHes the fast path answered.
func searchScript(t *testing.T, seed uint64, general bool) ([]flagsExchange, int64) {
	t.Helper()
	h := start(t)
	h.srv.generalSearch.Store(general)
	r := mrand.New(mrand.NewPCG(seed, 0x5ea7c4))
	flags := func() string {
		var fs []string
		for _, f := range []string{`\Seen`, `\Flagged`, `\Answered`, `\Deleted`, "work"} {
			if r.IntN(3) == 0 {
				fs = append(fs, f)
			}
		}
		return strings.Join(fs, " ")
	}
	n := 0
	if seed%4 != 0 {
		n = 1 + r.IntN(400)
	}
	mode := seed % 3 // 0: IMAP4rev1, 1: CONDSTORE, 2: IMAP4rev2
	sc := newScript(t, h, r, n, flags, []string{"", "ENABLE CONDSTORE", "ENABLE IMAP4rev2"}[mode])
	inbox, rd, wr, set := sc.inbox, sc.rd, sc.wr, sc.set
	key := func() string {
		switch k := r.IntN(16); k {
		case 0:
			return set(false)
		case 1:
			return "UID " + set(true)
		case 2:
			return "$"
		case 3:
			return "OR FLAGGED SEEN"
		case 4:
			return "NOT DELETED"
		case 5:
			return "SUBJECT {4+}\r\nfill"
		case 6:
			return []string{"FOO", "UID x", "(UNSEEN", ""}[r.IntN(4)] // BAD
		case 7:
			if mode != 0 {
				// The layer's (condstore.go), and CONDSTORE on.
				return "MODSEQ " + strconv.FormatUint(max(inbox.HighestModSeq(), 2)-uint64(r.IntN(2)), 10)
			}
			return "ALL"
		case 8:
			return "SUBJECT new UNSEEN"
		}
		return []string{"UNSEEN", "SEEN", "FLAGGED", "ALL", "KEYWORD work", "DELETED", "UNFLAGGED"}[r.IntN(7)]
	}
	ret := func() string {
		if r.IntN(2) == 0 {
			return ""
		}
		return []string{"()", "(ALL)", "(MIN)", "(MAX)", "(COUNT)", "(MIN MAX)", "(MIN MAX COUNT ALL)", "(SAVE)", "(SAVE MIN)", "(ALL SAVE)", "(count min)", "(BOGUS)"}[r.IntN(12)]
	}
	tags := []string{"A1", "z.9", "t-" + strings.Repeat("x", 70), "u" + strings.Repeat("z", 44), "v" + strings.Repeat("w", 50), "t" + strings.Repeat("y", 300), "x+1", "!#$&'-9"}

	var out []flagsExchange
	modseqRe := regexp.MustCompile(`MODSEQ \d+`)
	record := func(tag, cmd string) {
		// The command as compared: a mod-sequence is this run's.
		c := modseqRe.ReplaceAllString(cmd, "MODSEQ m")
		var o string
		if tag == "" {
			o = rd.do(t, "%s", cmd)
		} else {
			o = rd.doTag(t, tag, cmd)
		}
		out = append(out, flagsExchange{c, o})
	}
	for range 60 {
		switch k := r.IntN(20); {
		case k < 3:
			wr.do(t, "APPEND INBOX (%s) {%d+}\r\n%s", flags(), len(msg(0, "new")), msg(0, "new"))
		case k < 5:
			op := []string{"+FLAGS", "-FLAGS", "FLAGS", "+FLAGS.SILENT"}[r.IntN(4)]
			wr.do(t, "UID STORE %s %s (%s)", set(true), op, flags())
		case k < 6:
			wr.do(t, `UID STORE %s +FLAGS.SILENT (\Deleted)`, set(true))
			wr.do(t, "EXPUNGE")
		case k < 7:
			record("", "NOOP")
		case k < 8:
			record("", "UID FETCH $ (FLAGS)")
		case k < 9:
			// Not selected: imapserver's BAD, after the command is read.
			rd.do(t, "UNSELECT")
			record("", "SEARCH ALL")
			rd.do(t, "SELECT INBOX")
		default:
			cmd := "SEARCH"
			if r.IntN(2) == 0 {
				cmd = "UID SEARCH"
			}
			if rt := ret(); rt != "" {
				if r.IntN(4) == 0 {
					cmd += " return " + rt
				} else {
					cmd += " RETURN " + rt
				}
			}
			if r.IntN(8) == 0 {
				cmd += " CHARSET " + []string{"UTF-8", "us-ascii", "KOI8-R"}[r.IntN(3)]
			}
			cmd += " " + key()
			if r.IntN(3) == 0 {
				cmd += " " + key()
			}
			tag := ""
			if r.IntN(5) == 0 {
				tag = tags[r.IntN(len(tags))]
			}
			record(tag, cmd)
		}
	}
	record("", "UID SEARCH UNSEEN")
	record("", "NOOP")
	return rankModSeqs(out), h.srv.fastSearches.Load()
}

// TestSearchFastPathLarge compares the two paths on answers longer than
// the fast path's buffer (written in several writes): 30,000 messages,
// every other one \Flagged, every third \Seen, the SEARCH and ESEARCH
// forms of sets of many numbers and many ranges, on one connection, the
// fast path off and on in turn.
func TestSearchFastPathLarge(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	u, _ := h.ms.User(ctx, "alice")
	inbox, _ := u.Mailbox("INBOX")
	const n = 30000
	err := h.ms.Update(ctx, "alice", "fill", func(w *mailstore.Writer) error {
		for i := range n {
			var flags []imap.Flag
			if i%2 == 1 {
				flags = append(flags, imap.FlagFlagged)
			}
			if i%3 == 0 {
				flags = append(flags, imap.FlagSeen)
			}
			if _, err := w.Append(inbox, []byte("Subject: "+strconv.Itoa(i)+"\r\n\r\nbody\r\n"), flags, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := dialBytes(t, h.addr)
	s.do(t, "LOGIN alice password-alice")
	s.do(t, "SELECT INBOX")
	for _, cmd := range []string{
		"UID SEARCH UNSEEN", "SEARCH ALL", "SEARCH FLAGGED",
		"UID SEARCH RETURN (ALL) FLAGGED", "SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN", "UID SEARCH RETURN (SAVE ALL) UNFLAGGED",
	} {
		var outs [2]string
		for i, general := range []bool{true, false} {
			h.srv.generalSearch.Store(general)
			before := h.srv.fastSearches.Load()
			outs[i] = s.doTag(t, "L1", cmd) // the same tag: ESEARCH has it
			if used := h.srv.fastSearches.Load() > before; used == general {
				t.Fatalf("%s: fast path used %v, want %v", cmd, used, !general)
			}
		}
		if len(outs[0]) <= flagsFlush {
			t.Fatalf("%s: answer of %d bytes, want one longer than %d", cmd, len(outs[0]), flagsFlush)
		}
		if outs[0] != outs[1] {
			t.Fatalf("%s:\ngeneral path:\n%s\nfast path:\n%s", cmd, clip(outs[0]), clip(outs[1]))
		}
	}
}
