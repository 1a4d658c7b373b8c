package imapd

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// CONDSTORE (RFC 7162 3) in the layer, over the mailstore's MODSEQs (see
// mailstore's modseq.go). imapserver knows nothing of it, so the layer
// rewrites the commands that carry its syntax before imapserver reads them
// (proto.input, literals sent on non-synchronizing) and edits what
// imapserver writes back:
//
//   - ENABLE CONDSTORE: CONDSTORE is taken out of the command and added to
//     imapserver's ENABLED response.
//   - SELECT/EXAMINE mailbox (CONDSTORE): the parameter is taken out; once
//     CONDSTORE is on, "* OK [HIGHESTMODSEQ n]" goes before the tagged OK
//     of every SELECT and EXAMINE, n read before the mailbox was opened.
//   - STATUS (HIGHESTMODSEQ): the item is taken out and added to
//     imapserver's STATUS response (answered by the layer if it was the
//     only item).
//   - FETCH MODSEQ, FETCH (CHANGEDSINCE n): MODSEQ is taken out, FLAGS
//     added, and n handed to Session.Fetch (proto.changedSince), which
//     leaves out the messages not changed since n; if there is none, the
//     layer answers OK.
//   - Every FETCH response once CONDSTORE is on (those of FETCH and STORE,
//     and the unsolicited flag updates) gets MODSEQ as its first item.
//
// Each of these commands enables CONDSTORE for the session (RFC 7162
// 3.1).
//
// QRESYNC (RFC 7162 3.2), once ENABLEd:
//
//   - SELECT/EXAMINE mailbox (QRESYNC (uidvalidity modseq [known-uids
//     [seq-match]])): after HIGHESTMODSEQ, "* VANISHED (EARLIER)" of the
//     known UIDs expunged since modseq, and a FETCH (MODSEQ UID FLAGS) of
//     each known message changed since, if uidvalidity is the mailbox's.
//   - "* n EXPUNGE" becomes "* VANISHED uid": a session that enabled
//     QRESYNC opens its mailbox with OpenTracked, whose view keeps the UID
//     of each expunge its tracker queues, in the order imapserver writes
//     them. (A mailbox selected before ENABLE QRESYNC keeps EXPUNGE.)
//   - UID FETCH (CHANGEDSINCE n VANISHED): "* VANISHED (EARLIER)" of the
//     set's UIDs expunged since n, before the FETCH responses.
//
// Where mailbox.json has forgotten old expunges (mailstore's
// VanishedFloor), VANISHED (EARLIER) lists every UID asked about that is
// gone. A command line longer than the layer's input buffer (4 KiB) is
// read whole (up to 64 KiB, as Dovecot's limit) to be looked at, and given
// back to imapserver as it came if it has none of this syntax.
//
//   - STORE (UNCHANGEDSINCE n) is answered by the layer (storeCmd), and
//     so is SEARCH with a MODSEQ key (searchCmd).

// condCommands are the commands condCommand looks at.
var condCommands = map[string]bool{
	"ENABLE": true, "SELECT": true, "EXAMINE": true, "STATUS": true, "FETCH": true, "UID FETCH": true,
	"STORE": true, "UID STORE": true, "SEARCH": true, "UID SEARCH": true,
}

// condHook is what to do to the output of the command in progress.
type condHook struct {
	tag  string // "" for none
	kind hookKind
	mb   *mailstore.Mailbox // hookStatus
	// hookEnable: what the command asked for.
	cond, qres bool
	// hookSelect: SELECT (QRESYNC ...)'s parameters, if any.
	qr *qresyncParams
}

// qresyncParams are SELECT's QRESYNC parameters (RFC 7162 3.2.5).
type qresyncParams struct {
	uidValidity uint32
	modSeq      uint64
	known       imap.UIDSet // nil: all
}

type hookKind int

const (
	hookSelect hookKind = iota + 1 // HIGHESTMODSEQ before the tagged OK
	hookEnable                     // CONDSTORE into the ENABLED response
	hookStatus                     // HIGHESTMODSEQ into the STATUS response
)

func (p *proto) setHook(h condHook) {
	p.wmu.Lock()
	p.hook = h
	p.wmu.Unlock()
}

// peekLine returns the next line (with its LF) without consuming it, or nil
// if it does not fit in the input buffer.
func (p *proto) peekLine() []byte {
	n := 1
	for {
		if _, err := p.br.Peek(n); err != nil {
			return nil
		}
		buf, _ := p.br.Peek(p.br.Buffered())
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return buf[:i+1]
		}
		if len(buf) >= p.br.Size() {
			return nil
		}
		n = len(buf) + 1
	}
}

// condCommand rewrites or answers a command that carries CONDSTORE syntax
// (handled), or sets the hooks for one that does not and leaves it to
// imapserver.
func (p *proto) condCommand(tag, name string) (handled bool, err error) {
	line := p.peekLine()
	long := line == nil // longer than the input buffer: read whole to see
	if !long {
		relevant := condRelevant(name, line)
		if _, _, lit := literalAnnounced(bytes.TrimRight(line, "\r\n")); lit && (name == "SELECT" || name == "EXAMINE" || name == "STATUS" || name == "SEARCH" || name == "UID SEARCH") {
			relevant = true // the rest is after the literal
		}
		if !relevant {
			if (name == "SELECT" || name == "EXAMINE") && p.cond.Load() {
				p.setHook(condHook{tag: tag, kind: hookSelect})
			}
			return false, nil
		}
	}
	cmd, err := p.readCommand(tag, name)
	if err != nil || cmd == nil {
		return true, err
	}
	if long && !condRelevant(name, cmd.args) {
		if (name == "SELECT" || name == "EXAMINE") && p.cond.Load() {
			p.setHook(condHook{tag: tag, kind: hookSelect})
		}
		p.input = cmd.rebuild()
		return true, nil
	}
	switch name {
	case "ENABLE":
		return true, enableCmd(p, cmd)
	case "SELECT", "EXAMINE":
		return true, selectCmd(p, cmd)
	case "STATUS":
		return true, statusCmd(p, cmd)
	case "STORE", "UID STORE":
		return true, storeCmd(p, cmd)
	case "SEARCH", "UID SEARCH":
		return true, searchCmd(p, cmd)
	}
	return true, fetchCmd(p, cmd)
}

// condRelevant reports whether a command's text may carry CONDSTORE or
// QRESYNC syntax.
func condRelevant(name string, text []byte) bool {
	up := string(bytes.ToUpper(text))
	switch name {
	case "ENABLE", "SELECT", "EXAMINE":
		return strings.Contains(up, "CONDSTORE") || strings.Contains(up, "QRESYNC")
	case "STATUS":
		return strings.Contains(up, "HIGHESTMODSEQ")
	case "STORE", "UID STORE":
		// A plain STORE stays imapserver's (its poll at the end of the
		// command delivers pending updates, which the layer's cannot);
		// with CONDSTORE on, Session.Store answers .SILENT with the
		// changed messages' MODSEQ.
		return strings.Contains(up, "UNCHANGEDSINCE")
	case "SEARCH", "UID SEARCH":
		return strings.Contains(up, "MODSEQ")
	}
	return strings.Contains(up, "MODSEQ") || strings.Contains(up, "CHANGEDSINCE") || strings.Contains(up, "VANISHED")
}

// injString writes s for a rewritten command: an atom, a quoted string or
// a non-synchronizing literal.
func injString(s string) string {
	q := astring(s)
	if strings.HasPrefix(q, "{") {
		return "{" + strconv.Itoa(len(s)) + "+}\r\n" + s
	}
	return q
}

// enableCmd takes CONDSTORE out of ENABLE (RFC 5161) and passes the rest
// on; imapserver answers, and its ENABLED response gets CONDSTORE.
func enableCmd(p *proto, cmd *command) error {
	var rest []string
	cond, qres := false, false
	for cmd.sp() {
		c := cmd.atom()
		if c == "" {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want capabilities")
		}
		switch strings.ToUpper(c) {
		case "CONDSTORE":
			cond = true
		case "QRESYNC":
			qres = true
		default:
			rest = append(rest, c)
		}
	}
	if !cmd.end() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error in ENABLE")
	}
	if cond || qres {
		p.setHook(condHook{tag: cmd.tag, kind: hookEnable, cond: cond, qres: qres})
	}
	line := cmd.tag + " ENABLE"
	for _, c := range rest {
		line += " " + c
	}
	p.input = []byte(line + "\r\n")
	return nil
}

// selectCmd takes the (CONDSTORE) parameter out of SELECT and EXAMINE (RFC
// 7162 3.1.8).
func selectCmd(p *proto, cmd *command) error {
	if !cmd.sp() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want a mailbox")
	}
	mbox, ok := cmd.astring()
	if !ok {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want a mailbox")
	}
	cond := false
	var qr *qresyncParams
	if cmd.sp() {
		if cmd.pos >= len(cmd.args) || cmd.args[cmd.pos] != '(' {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want select parameters")
		}
		cmd.pos++
		for cmd.pos < len(cmd.args) && cmd.args[cmd.pos] != ')' {
			switch a := cmd.atom(); strings.ToUpper(a) {
			case "CONDSTORE":
				cond = true
			case "QRESYNC":
				if !p.qres.Load() {
					return p.bad(cmd.tag, "[CLIENTBUG] QRESYNC is not enabled")
				}
				var err error
				if qr, err = cmd.qresyncParams(); err != nil {
					return p.bad(cmd.tag, "[CLIENTBUG] Syntax error in QRESYNC: "+err.Error())
				}
			default:
				return p.bad(cmd.tag, "[CLIENTBUG] Unknown select parameter "+strconv.Quote(a))
			}
			if !cmd.sp() && (cmd.pos >= len(cmd.args) || cmd.args[cmd.pos] != ')') {
				return p.bad(cmd.tag, "[CLIENTBUG] Syntax error in select parameters")
			}
		}
		cmd.pos++
	}
	if !cmd.end() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error in "+cmd.name)
	}
	if sess := p.sess.Load(); cond && sess != nil && sess.user != nil {
		p.cond.Store(true)
	}
	if p.cond.Load() {
		p.setHook(condHook{tag: cmd.tag, kind: hookSelect, qr: qr})
	}
	p.input = []byte(cmd.tag + " " + cmd.name + " " + injString(mbox) + "\r\n")
	return nil
}

// statusCmd answers STATUS HIGHESTMODSEQ (RFC 7162 3.1.10): the item is
// taken out of the command and added to imapserver's response, or answered
// by the layer if it was the only one.
func statusCmd(p *proto, cmd *command) error {
	sess, err := p.authed(cmd)
	if sess == nil {
		return err
	}
	var mbox string
	ok := cmd.sp()
	if ok {
		mbox, ok = cmd.astring()
	}
	if !ok || !cmd.sp() || cmd.pos >= len(cmd.args) || cmd.args[cmd.pos] != '(' {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want a mailbox and status items")
	}
	cmd.pos++
	var items []string
	high := false
	for cmd.pos < len(cmd.args) && cmd.args[cmd.pos] != ')' {
		a := cmd.atom()
		if a == "" {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error in status items")
		}
		if strings.EqualFold(a, "HIGHESTMODSEQ") {
			high = true
		} else {
			items = append(items, a)
		}
		cmd.sp()
	}
	cmd.pos++
	if !cmd.end() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error in STATUS")
	}
	if !high {
		p.input = []byte(cmd.tag + " STATUS " + injString(mbox) + " (" + strings.Join(items, " ") + ")\r\n")
		return nil
	}
	p.cond.Store(true)
	name, err := p.mailboxName(sess, mbox)
	if err != nil {
		return p.bad(cmd.tag, "[CLIENTBUG] "+err.Error())
	}
	mb, err := sess.user.Mailbox(name)
	if err != nil {
		return p.respond(cmd.tag, "NO [NONEXISTENT] No such mailbox")
	}
	if len(items) == 0 {
		return p.writeOut([]byte("* STATUS " + astring(mbox) + " (HIGHESTMODSEQ " +
			strconv.FormatUint(mb.HighestModSeq(), 10) + ")\r\n" + cmd.tag + " OK STATUS completed\r\n"))
	}
	p.setHook(condHook{tag: cmd.tag, kind: hookStatus, mb: mb})
	p.input = []byte(cmd.tag + " STATUS " + injString(mbox) + " (" + strings.Join(items, " ") + ")\r\n")
	return nil
}

// fetchAtts splits a FETCH attribute list (without its parentheses) at its
// top-level spaces.
func fetchAtts(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[', '(', '<':
			depth++
		case ']', ')', '>':
			depth--
		case ' ':
			if depth == 0 {
				if i > start {
					out = append(out, s[start:i])
				}
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// setArg reads " SET " (a sequence set, "$" included).
func (c *command) setArg() (string, bool) {
	if !c.sp() {
		return "", false
	}
	start := c.pos
	for c.pos < len(c.args) && c.args[c.pos] != ' ' {
		c.pos++
	}
	set := string(c.args[start:c.pos])
	return set, set != "" && c.sp()
}

// numSet parses a sequence set: sequence numbers, or UIDs, or "$".
func numSet(set string, uid bool) (imap.NumSet, error) {
	if set == "$" {
		return imap.SearchRes(), nil
	}
	if uid {
		var us imap.UIDSet
		err := parseNumSet(set, func(a, b uint32) { us.AddRange(imap.UID(a), imap.UID(b)) })
		return us, err
	}
	var ss imap.SeqSet
	err := parseNumSet(set, func(a, b uint32) { ss.AddRange(a, b) })
	return ss, err
}

// balanced reads a parenthesized list at cmd.pos and returns what is
// inside.
func (c *command) balanced() (string, bool) {
	if c.pos >= len(c.args) || c.args[c.pos] != '(' {
		return "", false
	}
	depth := 0
	for i := c.pos; i < len(c.args); i++ {
		switch c.args[i] {
		case '(', '[':
			depth++
		case ')', ']':
			depth--
			if depth == 0 {
				s := string(c.args[c.pos+1 : i])
				c.pos = i + 1
				return s, true
			}
		case 0:
			return "", false // a literal: not in FETCH
		}
	}
	return "", false
}

// fetchCmd rewrites FETCH and UID FETCH with the MODSEQ item or the
// CHANGEDSINCE modifier (RFC 7162 3.1.4, 3.1.5).
func fetchCmd(p *proto, cmd *command) error {
	sess, err := p.selected(cmd)
	if sess == nil {
		return err
	}
	uid := cmd.name == "UID FETCH"
	set, ok := cmd.setArg()
	if !ok {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want a set and items")
	}
	var atts []string
	if cmd.pos < len(cmd.args) && cmd.args[cmd.pos] == '(' {
		s, ok := cmd.balanced()
		if !ok {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error in fetch items")
		}
		atts = fetchAtts(s)
	} else {
		start := cmd.pos
		depth := 0
		for cmd.pos < len(cmd.args) && (depth > 0 || cmd.args[cmd.pos] != ' ') {
			switch cmd.args[cmd.pos] {
			case '[', '<':
				depth++
			case ']', '>':
				depth--
			}
			cmd.pos++
		}
		atts = []string{string(cmd.args[start:cmd.pos])}
	}
	var changedSince uint64
	hasCS, vanished := false, false
	if cmd.sp() {
		mods, ok := cmd.balanced()
		if !ok {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want fetch modifiers")
		}
		f := strings.Fields(mods)
		for i := 0; i < len(f); i++ {
			switch strings.ToUpper(f[i]) {
			case "CHANGEDSINCE":
				if i+1 >= len(f) {
					return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: CHANGEDSINCE wants a mod-sequence")
				}
				n, err := strconv.ParseUint(f[i+1], 10, 63)
				if err != nil {
					return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: bad CHANGEDSINCE mod-sequence "+strconv.Quote(f[i+1]))
				}
				changedSince, hasCS = n, true
				i++
			case "VANISHED":
				vanished = true
			default:
				return p.bad(cmd.tag, "[CLIENTBUG] Unknown fetch modifier "+strconv.Quote(f[i]))
			}
		}
	}
	if !cmd.end() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error in "+cmd.name)
	}
	if vanished && (!uid || !hasCS || !p.qres.Load()) {
		// RFC 7162 3.2.6.
		return p.bad(cmd.tag, "[CLIENTBUG] VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled")
	}
	if hasCS || slices.ContainsFunc(atts, func(a string) bool { return strings.EqualFold(a, "MODSEQ") }) {
		if err := p.condOn(sess); err != nil {
			return err
		}
	}
	if vanished {
		ns, err := numSet(set, true)
		if err != nil {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: "+err.Error())
		}
		if gone := vanishedSince(sess.view.Mailbox(), changedSince, ns.(imap.UIDSet)); len(gone) > 0 {
			if err := p.writeOut([]byte("* VANISHED (EARLIER) " + gone.String() + "\r\n")); err != nil {
				return err
			}
		}
	}
	var out []string
	hasFlags := false
	for _, a := range atts {
		switch strings.ToUpper(a) {
		case "MODSEQ":
			continue // added to every FETCH response (condLine)
		case "FLAGS", "ALL", "FAST", "FULL":
			hasFlags = true
		}
		out = append(out, a)
	}
	if hasCS && !hasFlags {
		out = append(out, "FLAGS")
	}
	if hasCS {
		ns, err := numSet(set, uid)
		if err != nil {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: "+err.Error())
		}
		if !anyChangedSince(sess.view, ns, changedSince) {
			return p.respond(cmd.tag, "OK "+cmd.name+" completed")
		}
		// The set stays as the client sent it and Session.Fetch
		// leaves out the messages not changed since: a set narrowed
		// here, written into the command, could be longer than
		// imapserver reads (every other message of a large mailbox
		// changed: NO [SERVERBUG], and the rest of the line read as a
		// command).
		p.changedSince = changedSince
	}
	if len(out) == 0 {
		// MODSEQ alone: answered here, as imapserver has no item to
		// fetch.
		ns, err := numSet(set, uid)
		if err != nil {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: "+err.Error())
		}
		var b bytes.Buffer
		for _, it := range sess.view.Items(ns) {
			if it.Seq == 0 {
				continue
			}
			b.WriteString("* " + strconv.FormatUint(uint64(it.Seq), 10) + " FETCH (MODSEQ (" + strconv.FormatUint(it.ModSeq, 10) + ")")
			if uid {
				b.WriteString(" UID " + strconv.FormatUint(uint64(it.Msg.UID), 10))
			}
			b.WriteString(")\r\n")
		}
		b.WriteString(cmd.tag + " OK " + cmd.name + " completed\r\n")
		return p.writeOut(b.Bytes())
	}
	p.input = []byte(cmd.tag + " " + cmd.name + " " + set + " (" + strings.Join(out, " ") + ")\r\n")
	return nil
}

// anyChangedSince reports whether a message of ns that the client knows has
// a MODSEQ above since.
func anyChangedSince(v *mailstore.View, ns imap.NumSet, since uint64) bool {
	found := false
	v.ItemsWindows(ns, fetchWindow, func(items []mailstore.Item) error {
		for _, it := range items {
			if it.Seq != 0 && it.ModSeq > since {
				found = true
				return errFound
			}
		}
		return nil
	})
	return found
}

var errFound = errors.New("imapd: found")

// condHead looks at the start of a line imapserver writes: more if it may be
// one that condLine changes but is too short to say, hold if it is one that
// condHeld changes (held to its end). The caller holds wmu.
func (p *proto) condHead(head []byte) (more, hold bool) {
	h := p.hook
	if h.tag == "" && !p.cond.Load() && !p.fix.Load() {
		return false, false
	}
	if _, match, partial := fetchHead(head); partial && !match {
		return true, false
	}
	if p.qres.Load() {
		if _, _, partial := expungeHead(head); partial {
			return true, false
		}
	}
	if h.tag != "" {
		for _, pre := range []string{h.tag + " ", "* ENABLED", "* STATUS "} {
			if len(head) < len(pre) && strings.HasPrefix(pre, string(head)) {
				return true, false
			}
		}
		if h.kind == hookStatus && bytes.HasPrefix(head, []byte("* STATUS ")) {
			return false, true
		}
	}
	return false, false
}

// fetchHead matches "* N FETCH (" at a line's start: match with N, or
// partial if the line is too short to say.
func fetchHead(head []byte) (seq uint32, match, partial bool) {
	return seqHead(head, " FETCH (")
}

// seqHead matches "* N" followed by rest at a line's start: match with N,
// or partial if the line is too short to say.
func seqHead(head []byte, rest string) (seq uint32, match, partial bool) {
	const pre = "* "
	if len(head) < len(pre) {
		return 0, false, strings.HasPrefix(pre, string(head))
	}
	if string(head[:2]) != pre {
		return 0, false, false
	}
	i := 2
	for i < len(head) && head[i] >= '0' && head[i] <= '9' {
		i++
	}
	if i == 2 {
		return 0, false, i == len(head)
	}
	tail := string(head[i:])
	if len(tail) < len(rest) {
		return 0, false, strings.HasPrefix(rest, tail)
	}
	if tail[:len(rest)] != rest {
		return 0, false, false
	}
	n, err := strconv.ParseUint(string(head[2:i]), 10, 32)
	if err != nil {
		return 0, false, false
	}
	return uint32(n), true, false
}

// condOn turns CONDSTORE on for the session (a CONDSTORE-enabling
// command: FETCH MODSEQ or CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH
// MODSEQ) and, the first time, with the mailbox selected, tells the client
// its HIGHESTMODSEQ in an untagged OK before the command's answers (RFC
// 7162 3.1; Dovecot does the same).
func (p *proto) condOn(sess *Session) error {
	if p.cond.Swap(true) || sess == nil || sess.view == nil {
		return nil
	}
	return p.writeOut([]byte("* OK [HIGHESTMODSEQ " + strconv.FormatUint(max(sess.view.Mailbox().HighestModSeq(), 1), 10) + "] Highest\r\n"))
}

// condLine changes the start of a line imapserver writes, or writes lines
// before it (into o.obuf). The caller holds wmu.
func (p *proto) condLine(o *outScan, head []byte) []byte {
	h := p.hook
	if h.tag == "" && !p.cond.Load() {
		return head
	}
	if h.tag != "" && bytes.HasPrefix(head, []byte(h.tag+" ")) {
		p.hook = condHook{}
		rest := head[len(h.tag)+1:]
		if h.kind == hookSelect && len(rest) >= 2 && strings.EqualFold(string(rest[:2]), "OK") {
			if sess := p.sess.Load(); sess != nil {
				o.obuf = append(o.obuf, "* OK [HIGHESTMODSEQ "+strconv.FormatUint(max(sess.selectModSeq, 1), 10)+"] Highest\r\n"...)
				if h.qr != nil && sess.view != nil {
					o.obuf = qresyncSelect(o.obuf, sess.view, h.qr)
				}
			}
		}
		return head
	}
	if h.kind == hookEnable && bytes.HasPrefix(head, []byte("* ENABLED")) {
		out := []byte("* ENABLED")
		if h.cond && !p.cond.Swap(true) {
			out = append(out, " CONDSTORE"...)
		}
		if h.qres && !p.qres.Swap(true) {
			// QRESYNC implies CONDSTORE (RFC 7162 3.2.3).
			p.cond.Store(true)
			out = append(out, " QRESYNC"...)
		}
		return append(out, head[len("* ENABLED"):]...)
	}
	if !p.cond.Load() {
		return head
	}
	if p.qres.Load() {
		if _, match, _ := expungeHead(head); match {
			// RFC 7162 3.2.10: VANISHED instead of EXPUNGE.
			if sess := p.sess.Load(); sess != nil && sess.view != nil {
				if uid, ok := sess.view.PopExpunged(); ok {
					return []byte("* VANISHED " + strconv.FormatUint(uint64(uid), 10) + "\r\n")
				}
			}
			return head
		}
	}
	seq, match, _ := fetchHead(head)
	if !match {
		return head
	}
	sess := p.sess.Load()
	if sess == nil || sess.view == nil {
		return head
	}
	ms := sess.view.ModSeqOfSeq(seq)
	if ms == 0 {
		// A flag update of a message expunged since, its EXPUNGE
		// still to come: its MODSEQ is gone, and the mailbox's
		// HIGHESTMODSEQ is at least as high.
		ms = sess.view.Mailbox().HighestModSeq()
	}
	at := bytes.IndexByte(head, '(') + 1
	out := append([]byte(nil), head[:at]...)
	out = append(out, "MODSEQ ("+strconv.FormatUint(ms, 10)+")"...)
	if at < len(head) && head[at] != ')' {
		out = append(out, ' ')
	}
	return append(out, head[at:]...)
}

// condHeld changes a whole line held for it (STATUS). The caller holds wmu.
func (p *proto) condHeld(line []byte) []byte {
	h := p.hook
	at := bytes.LastIndexByte(line, ')')
	if h.kind != hookStatus || h.mb == nil || at < 0 {
		return line
	}
	out := append([]byte(nil), line[:at]...)
	if line[at-1] != '(' {
		out = append(out, ' ')
	}
	out = append(out, "HIGHESTMODSEQ "+strconv.FormatUint(h.mb.HighestModSeq(), 10)...)
	return append(out, line[at:]...)
}

// storeCmd answers STORE and UID STORE with the UNCHANGEDSINCE modifier
// (RFC 7162 3.1.3): in one mailstore commit, each message whose MODSEQ is
// above the given one is left alone (and listed in the tagged OK's
// [MODIFIED set]), the others are changed. A message whose flags the STORE
// does not change keeps its MODSEQ. The FETCH responses carry MODSEQ; with
// .SILENT, those of the messages changed carry MODSEQ alone (with UID for
// UID STORE), so that the client learns their new MODSEQ.
func storeCmd(p *proto, cmd *command) error {
	sess, err := p.selected(cmd)
	if sess == nil {
		return err
	}
	uid := cmd.name == "UID STORE"
	set, ok := cmd.setArg()
	if !ok {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want a set")
	}
	ns, err := numSet(set, uid)
	if err != nil {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: "+err.Error())
	}
	mods, ok := cmd.balanced()
	f := strings.Fields(mods)
	if !ok || len(f) != 2 || !strings.EqualFold(f[0], "UNCHANGEDSINCE") || !cmd.sp() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want (UNCHANGEDSINCE mod-sequence)")
	}
	since, err := strconv.ParseUint(f[1], 10, 63)
	if err != nil {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: bad UNCHANGEDSINCE mod-sequence "+strconv.Quote(f[1]))
	}
	item := strings.ToUpper(cmd.atom())
	sf := &imap.StoreFlags{}
	if strings.HasSuffix(item, ".SILENT") {
		sf.Silent = true
		item = strings.TrimSuffix(item, ".SILENT")
	}
	switch item {
	case "FLAGS":
		sf.Op = imap.StoreFlagsSet
	case "+FLAGS":
		sf.Op = imap.StoreFlagsAdd
	case "-FLAGS":
		sf.Op = imap.StoreFlagsDel
	default:
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want FLAGS, +FLAGS or -FLAGS")
	}
	if !cmd.sp() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want flags")
	}
	rest := string(cmd.args[cmd.pos:])
	if strings.HasPrefix(rest, "(") {
		if !strings.HasSuffix(rest, ")") {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error in the flag list")
		}
		rest = rest[1 : len(rest)-1]
	}
	for _, fl := range strings.Fields(rest) {
		name := strings.TrimPrefix(fl, `\`)
		if name == "" || strings.ContainsAny(name, `\()[]{"%*`) || bytes.IndexByte([]byte(name), 0) >= 0 {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: bad flag "+strconv.Quote(fl))
		}
		sf.Flags = append(sf.Flags, imap.Flag(fl))
	}
	if err := p.condOn(sess); err != nil {
		return err
	}
	v := sess.view
	if v.ReadOnly() {
		return p.respond(cmd.tag, "NO Mailbox is read-only")
	}
	if err := checkKeywords(sf.Flags); err != nil {
		return p.respond(cmd.tag, "NO [CANNOT] "+err.(*imap.Error).Text)
	}
	items := v.Items(ns)
	if !uid {
		k := 0
		for _, it := range items {
			if it.Seq != 0 {
				items[k] = it
				k++
			}
		}
		items = items[:k]
	}
	mb := v.Mailbox()
	var modified imap.SeqSet
	changed := map[int]bool{}
	err = sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: flags in "+mb.Name(), func(w *mailstore.Writer) error {
		modified, changed = nil, map[int]bool{} // it may run twice
		for i, it := range items {
			if w.ModSeq(mb, it.Msg) > since {
				if uid {
					modified.AddNum(uint32(it.Msg.UID))
				} else {
					modified.AddNum(it.Seq)
				}
				continue
			}
			cur := w.Flags(mb, it.Msg)
			nf := applyStore(cur, sf)
			if sameFlags(nf, cur) {
				continue
			}
			if err := w.SetFlags(mb, it.Msg, nf, echoSource(v, nf)); err != nil {
				return err
			}
			changed[i] = true
		}
		return nil
	})
	if err != nil {
		return p.respond(cmd.tag, "NO "+err.Error())
	}
	var b bytes.Buffer
	skip := map[uint32]bool{}
	if n, ok := modified.Nums(); ok {
		for _, x := range n {
			skip[x] = true
		}
	}
	for i, it := range items {
		if it.Seq == 0 || (sf.Silent && !changed[i]) {
			continue
		}
		if uid && skip[uint32(it.Msg.UID)] || !uid && skip[it.Seq] {
			continue
		}
		flags, ms := mb.FlagsModSeq(it.Msg)
		b.WriteString("* " + strconv.FormatUint(uint64(it.Seq), 10) + " FETCH (MODSEQ (" + strconv.FormatUint(ms, 10) + ")")
		if uid {
			b.WriteString(" UID " + strconv.FormatUint(uint64(it.Msg.UID), 10))
		}
		if !sf.Silent {
			if hasFlag(it.Flags, `\Recent`) {
				flags = append(flags, `\Recent`)
			}
			var fs []string
			for _, fl := range v.Visible(flags) {
				fs = append(fs, string(fl))
			}
			b.WriteString(" FLAGS (" + strings.Join(fs, " ") + ")")
		}
		b.WriteString(")\r\n")
	}
	if len(modified) > 0 {
		b.WriteString(cmd.tag + " OK [MODIFIED " + modified.String() + "] Conditional " + cmd.name + " failed\r\n")
	} else {
		b.WriteString(cmd.tag + " OK " + cmd.name + " completed\r\n")
	}
	return p.writeOut(b.Bytes())
}

// rebuild writes the command back as the client sent it, its literals
// non-synchronizing, for imapserver.
func (c *command) rebuild() []byte {
	out := []byte(c.tag + " " + c.name)
	for i := 0; i < len(c.args); i++ {
		if c.args[i] == 0 && i+2 < len(c.args) {
			lit := c.lits[int(c.args[i+1])<<8|int(c.args[i+2])]
			out = append(out, "{"+strconv.Itoa(len(lit))+"+}\r\n"...)
			out = append(out, lit...)
			i += 2
			continue
		}
		out = append(out, c.args[i])
	}
	return append(out, "\r\n"...)
}

// searchCmd answers SEARCH and UID SEARCH with a MODSEQ key (RFC 7162
// 3.1.5): the matches, and the highest MODSEQ among them, as "(MODSEQ n)"
// at the end of the SEARCH response or as ESEARCH's MODSEQ (RFC 4731, with
// RETURN). A SEARCH without MODSEQ (seen only once its literals were read)
// goes to imapserver as it came.
func searchCmd(p *proto, cmd *command) error {
	if !bytes.Contains(bytes.ToUpper(cmd.args), []byte("MODSEQ")) {
		p.input = cmd.rebuild()
		return nil
	}
	sess, err := p.selected(cmd)
	if sess == nil {
		return err
	}
	uid := cmd.name == "UID SEARCH"
	if !cmd.sp() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want search keys")
	}
	var want map[string]bool
	esearch := false
	if save := cmd.pos; strings.EqualFold(cmd.atom(), "RETURN") {
		esearch = true
		var bad string
		if want, bad = cmd.returnOptions(); bad != "" {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: "+bad)
		}
		if !cmd.sp() {
			return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: want search keys")
		}
	} else {
		cmd.pos = save
	}
	if save := cmd.pos; strings.EqualFold(cmd.atom(), "CHARSET") {
		if ok, err := p.charset(cmd); !ok {
			return err
		}
	} else {
		cmd.pos = save
	}
	start := cmd.pos
	crit, err := cmd.searchProgram()
	if err != nil {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: "+err.Error())
	}
	cmd.pos = start
	items, ok, err := p.matches(sess, cmd, uid)
	if !ok {
		return err
	}
	if err := p.condOn(sess); err != nil {
		return err
	}
	var high uint64
	for _, it := range items {
		high = max(high, it.ModSeq)
	}
	withModSeq := hasModSeq(crit) && len(items) > 0
	var b bytes.Buffer
	if esearch {
		if ret := returned(sess, want, items); len(ret) > 0 {
			writeESort(&b, cmd.tag, items, ret, uid)
			if withModSeq {
				b.Truncate(b.Len() - 2)
				b.WriteString(" MODSEQ " + strconv.FormatUint(high, 10) + "\r\n")
			}
		}
	} else {
		b.WriteString("* SEARCH")
		for _, it := range items {
			n := uint64(it.Seq)
			if uid {
				n = uint64(it.Msg.UID)
			}
			b.WriteString(" " + strconv.FormatUint(n, 10))
		}
		if withModSeq {
			b.WriteString(" (MODSEQ " + strconv.FormatUint(high, 10) + ")")
		}
		b.WriteString("\r\n")
	}
	b.WriteString(cmd.tag + " OK " + cmd.name + " completed\r\n")
	return p.writeOut(b.Bytes())
}

// returnOptions reads RETURN's options of ESEARCH and ESORT, "(MIN MAX
// COUNT ALL SAVE)" in any order and case (RFC 4731 3.1, RFC 5267 3.2, RFC
// 5182 2): none means ALL. bad is the syntax error to answer, if any.
func (c *command) returnOptions() (want map[string]bool, bad string) {
	if !c.sp() {
		return nil, "want RETURN options"
	}
	opts, ok := c.balanced()
	if !ok {
		return nil, "want RETURN options"
	}
	want = map[string]bool{}
	for _, o := range strings.Fields(strings.ToUpper(opts)) {
		switch o {
		case "MIN", "MAX", "COUNT", "ALL", "SAVE":
			want[o] = true
		default:
			return nil, "unknown RETURN option " + strconv.Quote(o)
		}
	}
	if len(want) == 0 {
		want["ALL"] = true
	}
	return want, ""
}

// returned saves the result for SEARCHRES if want asks (RFC 5182 2.1, in
// SORT too by RFC 5267 3.2: with MIN or MAX alone, only those), and lists
// the options the ESEARCH answer holds, in Dovecot's order. items are in
// the order MIN and MAX refer to: UIDs for SEARCH, the sort for SORT.
func returned(sess *Session, want map[string]bool, items []mailstore.Item) (ret []string) {
	for _, o := range []string{"MIN", "MAX", "ALL", "COUNT"} {
		if want[o] {
			ret = append(ret, o)
		}
	}
	if want["SAVE"] {
		saved := items
		if !want["ALL"] && !want["COUNT"] && (want["MIN"] || want["MAX"]) && len(items) > 0 {
			saved = nil
			if want["MIN"] {
				saved = append(saved, items[0])
			}
			if want["MAX"] {
				saved = append(saved, items[len(items)-1])
			}
		}
		var set imap.UIDSet
		for _, it := range saved {
			set.AddNum(it.Msg.UID)
		}
		sess.view.SearchRes = set
	}
	return ret
}

// qresyncParams reads QRESYNC's "(uidvalidity modseq [known-uids
// [(seq-match)]])" (the sequence match data is read and not used: it only
// helps a server that cannot tell expunged UIDs apart, RFC 7162 3.2.5.2).
func (c *command) qresyncParams() (*qresyncParams, error) {
	if !c.sp() {
		return nil, errors.New("want parameters")
	}
	s, ok := c.balanced()
	if !ok {
		return nil, errors.New("want a parenthesized list")
	}
	seqMatch := ""
	if i := strings.IndexByte(s, '('); i >= 0 {
		if !strings.HasSuffix(s, ")") {
			return nil, errors.New("bad sequence match data")
		}
		s, seqMatch = strings.TrimSpace(s[:i]), s[i:]
		if len(strings.Fields(strings.Trim(seqMatch, "()"))) != 2 {
			return nil, errors.New("bad sequence match data")
		}
	}
	f := strings.Fields(s)
	if len(f) < 2 || len(f) > 3 || (seqMatch != "" && len(f) != 3) {
		return nil, errors.New("want uidvalidity, mod-sequence and known UIDs")
	}
	uv, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil || uv == 0 {
		return nil, fmt.Errorf("bad uidvalidity %q", f[0])
	}
	ms, err := strconv.ParseUint(f[1], 10, 63)
	if err != nil || ms == 0 {
		return nil, fmt.Errorf("bad mod-sequence %q", f[1])
	}
	qr := &qresyncParams{uidValidity: uint32(uv), modSeq: ms}
	if len(f) == 3 {
		if strings.Contains(f[2], "*") {
			return nil, fmt.Errorf("bad known UIDs %q", f[2])
		}
		if err := parseNumSet(f[2], func(a, b uint32) { qr.known.AddRange(imap.UID(a), imap.UID(b)) }); err != nil {
			return nil, err
		}
	}
	return qr, nil
}

// vanishedSince is what VANISHED (EARLIER) reports of the UIDs in set (nil:
// all) expunged after modseq: those the mailbox remembers, or, where it
// has forgotten some, every UID of set below UIDNEXT that is not in it.
func vanishedSince(mb *mailstore.Mailbox, modseq uint64, set imap.UIDSet) imap.UIDSet {
	gone, complete := mb.VanishedSince(modseq)
	var out imap.UIDSet
	if complete {
		nums, _ := gone.Nums()
		for _, u := range nums {
			if set == nil || set.Contains(u) {
				out.AddNum(u)
			}
		}
		return out
	}
	uidNext := mb.Info().UIDNext
	present := map[imap.UID]bool{}
	for _, u := range mb.UIDs() {
		present[u] = true
	}
	for u := imap.UID(1); u < uidNext; u++ {
		if !present[u] && (set == nil || set.Contains(u)) {
			out.AddNum(u)
		}
	}
	return out
}

// qresyncSelect appends SELECT (QRESYNC)'s responses (RFC 7162 3.2.5.1) to
// b: if the UIDVALIDITY is the mailbox's, VANISHED (EARLIER) for the known
// UIDs expunged since the client's mod-sequence, then a FETCH of each
// known message changed since.
func qresyncSelect(b []byte, v *mailstore.View, qr *qresyncParams) []byte {
	mb := v.Mailbox()
	if mb.Info().UIDValidity != qr.uidValidity {
		return b
	}
	var known imap.UIDSet
	if len(qr.known) > 0 {
		known = qr.known
	}
	if gone := vanishedSince(mb, qr.modSeq, known); len(gone) > 0 {
		b = append(b, "* VANISHED (EARLIER) "+gone.String()+"\r\n"...)
	}
	for _, it := range v.Items(nil) {
		if it.Seq == 0 || it.ModSeq <= qr.modSeq || (known != nil && !known.Contains(it.Msg.UID)) {
			continue
		}
		var fs []string
		for _, f := range v.Visible(it.Flags) {
			fs = append(fs, string(f))
		}
		b = append(b, "* "+strconv.FormatUint(uint64(it.Seq), 10)+" FETCH (MODSEQ ("+strconv.FormatUint(it.ModSeq, 10)+
			") UID "+strconv.FormatUint(uint64(it.Msg.UID), 10)+" FLAGS ("+strings.Join(fs, " ")+"))\r\n"...)
	}
	return b
}

// expungeHead matches "* N EXPUNGE" (a whole line): match, or partial if
// the line is too short to say.
func expungeHead(head []byte) (seq uint32, match, partial bool) {
	return seqHead(head, " EXPUNGE\r\n")
}
