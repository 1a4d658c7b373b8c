package imapd

import (
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestRFC7162QresyncDovecot runs one QRESYNC session against this server
// and a private Dovecot and compares what they answer (normalized as in
// TestRFC7162CondstoreDovecot; UIDVALIDITY differs too).
func TestRFC7162QresyncDovecot(t *testing.T) {
	dv := dovecotTarget(t)
	run := func(tg imapTarget) []string {
		a := dialRaw(t, tg, "alice")
		for _, subj := range []string{"a", "b", "c", "d", "e"} {
			a.appendOK("INBOX", "Subject: "+subj+"\r\n\r\n"+subj+"\r\n")
		}
		a.ok("CREATE Other")
		var out []string
		uvRe := regexp.MustCompile(`UIDVALIDITY (\d+)`)
		hmsRe := regexp.MustCompile(`HIGHESTMODSEQ (\d+)`)
		var uv, h0 string
		step := func(s *rawSession, cmd string) {
			u, st := s.do("%s", cmd)
			var vanished imap.UIDSet
			out = append(out, "> "+regexp.MustCompile(`\(QRESYNC \(\d+ \d+`).ReplaceAllString(
				regexp.MustCompile(`(SINCE|MODSEQ) [1-9]\d*`).ReplaceAllString(cmd, "$1 n"), "(QRESYNC (uv n"))
			for _, l := range u {
				if m := uvRe.FindStringSubmatch(l); m != nil && uv == "" {
					uv = m[1]
				}
				if m := hmsRe.FindStringSubmatch(l); m != nil && h0 == "" {
					h0 = m[1]
				}
				switch {
				case strings.HasPrefix(l, "* VANISHED ("), strings.HasSuffix(l, " EXPUNGE"):
					out = append(out, l)
				case strings.HasPrefix(l, "* VANISHED "):
					// Dovecot sends one VANISHED for a command's
					// expunges, we one each: the same UIDs.
					var set imap.UIDSet
					parseNumSet(strings.TrimPrefix(l, "* VANISHED "), func(a, b uint32) { set.AddRange(imap.UID(a), imap.UID(b)) })
					vanished = append(vanished, set...)
				case strings.HasSuffix(cmd, "+FLAGS.SILENT (\\Deleted)") && regexp.MustCompile(`^\* \d+ FETCH \((UID \d+ )?MODSEQ \(\d+\)( UID \d+)?\)$`).MatchString(l):
					// Both tell the new MODSEQ of a plain STORE
					// .SILENT (RFC 7162 3.1.3), with the items in
					// another order.
				case cmd == "NOOP" && strings.Contains(l, "FETCH"):
					// We also send the flag update of a message that
					// the same poll expunges; Dovecot leaves it out.
				default:
					if n := normCond(cmd, l); n != "" {
						out = append(out, n)
					}
				}
			}
			if len(vanished) > 0 {
				nums, _ := vanished.Nums()
				var set imap.UIDSet
				for _, n := range nums {
					set.AddNum(n)
				}
				out = append(out, "* VANISHED "+set.String())
			}
			out = append(out, strings.Fields(st)[0])
		}
		step(a, "ENABLE QRESYNC")
		step(a, "SELECT INBOX")
		b := dialRaw(t, tg, "alice")
		b.ok("SELECT INBOX")
		b.ok(`STORE 2 +FLAGS.SILENT (\Flagged)`)
		b.ok(`STORE 3:4 +FLAGS.SILENT (\Deleted)`)
		b.ok("EXPUNGE")
		c := dialRaw(t, tg, "alice")
		step(c, "ENABLE QRESYNC")
		step(c, "SELECT INBOX (QRESYNC ("+uv+" "+h0+" 1:5))")
		step(c, "EXAMINE INBOX (QRESYNC ("+uv+" "+h0+"))")
		step(c, "SELECT INBOX")
		step(c, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE "+h0+" VANISHED)")
		step(a, `STORE 1 +FLAGS.SILENT (\Deleted)`)
		step(a, "EXPUNGE")
		step(a, "UID MOVE 5 Other")
		step(c, "NOOP")
		return out
	}
	ours := run(nymoteTarget(t))
	theirs := run(dv)
	if strings.Join(ours, "\n") != strings.Join(theirs, "\n") {
		t.Errorf("transcripts differ\n--- nymote\n%s\n--- dovecot\n%s", strings.Join(ours, "\n"), strings.Join(theirs, "\n"))
	}
}
