package imapd

import (
	"bufio"
	"bytes"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

func readOnlyErr() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Mailbox is read-only"}
}

// Expunge removes the messages flagged \Deleted (within uids, for UID
// EXPUNGE). The EXPUNGE responses go out through the session's queue.
func (sess *Session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	v := sess.view
	if v.ReadOnly() {
		return readOnlyErr()
	}
	var ns imap.NumSet
	if uids != nil {
		ns = *uids
	}
	var gone []mailstore.Item
	for _, it := range v.Items(ns) {
		for _, f := range it.Flags {
			if f == imap.FlagDeleted {
				gone = append(gone, it)
				break
			}
		}
	}
	if len(gone) == 0 {
		return nil
	}
	mb := v.Mailbox()
	return sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: expunge from "+mb.Name(), func(w *mailstore.Writer) error {
		for _, it := range gone {
			if err := w.Expunge(mb, it.Msg); err != nil {
				return err
			}
		}
		return nil
	})
}

// Fetch writes the asked items, from the parse cache where it can; fetching
// a body section without PEEK sets \Seen (one commit for the command).
func (sess *Session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	v := sess.view
	markSeen := false
	if !v.ReadOnly() {
		for _, bs := range options.BodySection {
			if !bs.Peek {
				markSeen = true
			}
		}
		for _, bs := range options.BinarySection {
			if !bs.Peek {
				markSeen = true
			}
		}
	}
	// CHANGEDSINCE (condstore.go): only the messages changed since.
	var since uint64
	if p := sess.p; p != nil {
		p.partials.reset() // what an earlier FETCH left, if it failed
		if !p.fix.Load() && needsFix(options) {
			p.fix.Store(true)
		}
		since, p.changedSince = p.changedSince, 0
	}
	if !markSeen && sess.p != nil && !sess.s.generalFetch.Load() && indexOnly(options) {
		// Items from the index and the summaries alone: written here
		// rather than through imapserver's FetchWriter (fetchflags.go).
		return sess.corked(func() error { return sess.fetchIndexed(w, numSet, options, since) })
	}
	if !markSeen {
		// Windows of messages, not one item per message of the set held
		// for the whole response (FETCH 1:* of a large mailbox by many
		// sessions at once ran a 64 MiB appliance out of memory).
		return sess.corked(func() error {
			return v.ItemsWindows(numSet, fetchWindow, func(items []mailstore.Item) error {
				return sess.fetchItems(w, changedSince(items, since), options)
			})
		})
	}
	items := v.Items(numSet)
	if since != 0 {
		items = changedSince(items, since)
	}
	var unseen []int
	for i, it := range items {
		if !hasFlag(it.Flags, imap.FlagSeen) {
			unseen = append(unseen, i)
		}
	}
	if len(unseen) > 0 {
		mb := v.Mailbox()
		// \Seen is added to the flags as they are when the commit
		// writes them, not as Items read them (see Store).
		seen := make([][]imap.Flag, len(unseen))
		err := sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: seen in "+mb.Name(), func(w *mailstore.Writer) error {
			for k, i := range unseen {
				cur := w.Flags(mb, items[i].Msg)
				if hasFlag(items[i].Flags, `\Recent`) {
					cur = append(cur, `\Recent`)
				}
				if !hasFlag(cur, imap.FlagSeen) {
					cur = append(cur, imap.FlagSeen)
				}
				seen[k] = cur
				if err := w.SetFlags(mb, items[i].Msg, cur, echoSource(v, cur)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for k, i := range unseen {
			items[i].Flags = seen[k]
		}
		options.Flags = true
	}
	return sess.corked(func() error { return sess.fetchItems(w, items, options) })
}

// changedSince keeps the items the client knows whose MODSEQ is above
// since (all of them if since is 0), in place.
func changedSince(items []mailstore.Item, since uint64) []mailstore.Item {
	if since == 0 {
		return items
	}
	k := 0
	for _, it := range items {
		if it.Seq != 0 && it.ModSeq > since {
			items[k] = it
			k++
		}
	}
	return items[:k]
}

// fetchWindow is how many messages a FETCH takes from the mailbox at a
// time (View.ItemsWindows).
const fetchWindow = 256

// fetchItems writes the FETCH responses of items (those the client knows;
// the others are skipped), reading bodies ahead when asked for. It runs
// corked.
func (sess *Session) fetchItems(w *imapserver.FetchWriter, items []mailstore.Item, options *imap.FetchOptions) error {
	k := 0
	for _, it := range items {
		if it.Seq != 0 { // else not announced to this client yet
			items[k] = it
			k++
		}
	}
	items = items[:k]
	var ra *mailstore.ReadAhead
	if needsBody(options) && len(items) > 0 {
		rd := sess.s.opts.Mail.NewReader()
		if len(items) > scanItems {
			rd = sess.s.opts.Mail.NewScanReader()
		}
		msgs := make([]*mailstore.Message, len(items))
		for i, it := range items {
			msgs[i] = it.Msg
		}
		ra = rd.ReadAhead(sess.view.Mailbox(), msgs)
		defer ra.Close()
	}
	for _, it := range items {
		if err := sess.fetchOne(w, ra, it, options); err != nil {
			return err
		}
	}
	return nil
}

// needsBody reports whether a FETCH asks for anything read from the raw
// message.
func needsBody(options *imap.FetchOptions) bool {
	return len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
}

// scanItems is the number of messages above which a FETCH of bodies reads
// them as a scan (see mailstore.NewScanReader).
const scanItems = 64

// fetchOne writes one message's items; ra has its raw bytes next if a body
// section is asked for.
func (sess *Session) fetchOne(w *imapserver.FetchWriter, ra *mailstore.ReadAhead, it mailstore.Item, options *imap.FetchOptions) error {
	// The body is read, and BINARY decoded, before the response starts, so
	// that a part that cannot be decoded is a tagged NO [UNKNOWN-CTE]
	// rather than half a FETCH response.
	var raw []byte
	var bins [][]byte
	var binSizes []uint32
	if needsBody(options) {
		var err error
		if raw, err = ra.Next(); err != nil {
			return err
		}
		for _, bs := range options.BinarySection {
			b, err := binarySection(raw, bs)
			if err != nil {
				return err
			}
			bins = append(bins, b)
		}
		for _, bss := range options.BinarySectionSize {
			b, err := binarySection(raw, &imap.FetchItemBinarySection{Part: bss.Part})
			if err != nil {
				return err
			}
			binSizes = append(binSizes, uint32(len(b)))
		}
	}
	rw := w.CreateMessage(it.Seq)
	m := it.Msg
	rw.WriteUID(m.UID)
	if options.Flags {
		rw.WriteFlags(sess.view.Visible(it.Flags))
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.Date)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	var sum *mailstore.Summary // read once for both
	if options.Envelope || options.BodyStructure != nil {
		sum = m.Summary()
	}
	if options.Envelope {
		env := sum.Envelope
		if env == nil {
			env = &emptyEnvelope
		}
		rw.WriteEnvelope(env)
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(sum.Body.Structure())
	}
	if needsBody(options) {
		for _, bs := range options.BodySection {
			var buf []byte
			if bs.Specifier == imap.PartSpecifierNone && len(bs.Part) == 0 && bs.Partial == nil {
				buf = raw // BODY[]: the message as it is, without a copy
			} else {
				buf = imapserver.ExtractBodySection(bytes.NewReader(raw), bs)
			}
			wc := rw.WriteBodySection(bs, int64(len(buf)))
			_, werr := wc.Write(buf)
			cerr := wc.Close()
			if werr != nil {
				return werr
			}
			if cerr != nil {
				return cerr
			}
		}
		for i, bs := range options.BinarySection {
			buf := bins[i]
			if bs.Partial != nil && sess.p != nil {
				sess.p.partials.push(partName(bs.Part), bs.Partial.Offset)
			}
			wc := rw.WriteBinarySection(bs, int64(len(buf)))
			_, werr := wc.Write(buf)
			cerr := wc.Close()
			if werr != nil {
				return werr
			}
			if cerr != nil {
				return cerr
			}
		}
		for i, bss := range options.BinarySectionSize {
			rw.WriteBinarySectionSize(bss, binSizes[i])
		}
	}
	return rw.Close()
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// Store changes flags in one commit; unless .SILENT, the new flags are
// written back.
func (sess *Session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	v := sess.view
	if v.ReadOnly() {
		return readOnlyErr()
	}
	if err := checkKeywords(flags.Flags); err != nil {
		return err
	}
	items := v.Items(numSet)
	mb := v.Mailbox()
	type change struct {
		i     int
		flags []imap.Flag
	}
	var changes []change
	for i, it := range items {
		nf := applyStore(it.Flags, flags)
		if !sameFlags(nf, it.Flags) {
			changes = append(changes, change{i, nf})
		}
	}
	if len(changes) > 0 {
		// The flags are applied again to the flags as they are when the
		// commit writes them: another session's change since Items must
		// not be undone (a lost update of +FLAGS, found by
		// TestModelConcurrentSessions).
		err := sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: flags in "+mb.Name(), func(w *mailstore.Writer) error {
			for k, c := range changes {
				it := items[c.i]
				cur := w.Flags(mb, it.Msg)
				if hasFlag(it.Flags, `\Recent`) {
					cur = append(cur, `\Recent`)
				}
				changes[k].flags = applyStore(cur, flags)
				if err := w.SetFlags(mb, it.Msg, changes[k].flags, echoSource(v, changes[k].flags)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range changes {
			items[c.i].Flags = c.flags
		}
	}
	answered := items
	if flags.Silent {
		// RFC 7162 3.1.3: once CONDSTORE is on, each message a STORE
		// changed gets a FETCH with its new MODSEQ even with .SILENT (the
		// layer puts MODSEQ in every FETCH response; the UID is there to
		// have an item to put it beside).
		if sess.p == nil || !sess.p.cond.Load() || len(changes) == 0 {
			return nil
		}
		answered = make([]mailstore.Item, len(changes))
		for k, c := range changes {
			answered[k] = items[c.i]
		}
	}
	return sess.corked(func() error {
		for _, it := range answered {
			if it.Seq == 0 {
				continue
			}
			rw := w.CreateMessage(it.Seq)
			rw.WriteUID(it.Msg.UID)
			if !flags.Silent {
				rw.WriteFlags(v.Visible(it.Flags))
			}
			if err := rw.Close(); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkKeywords refuses the keyword NIL (in any case). RFC 3501's
// flag-keyword is an atom, and NIL is one, but in a flag list a client
// reads it as nil: a FLAGS (NIL) response is misread, so we never store it.
// (Dovecot stores it and writes FLAGS (NIL).)
func checkKeywords(flags []imap.Flag) error {
	for _, f := range flags {
		if strings.EqualFold(string(f), "NIL") {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "The keyword NIL is not allowed: clients read it as nil"}
		}
	}
	return nil
}

// echoSource is the source to give SetFlags for a change the session
// itself writes a FETCH for: v (its queue does not echo it back), unless
// the new flags hold a keyword v has not announced. Then the FETCH written
// directly leaves that keyword out (View.Visible) and the queue brings
// the whole flags after the FLAGS that announces it.
func echoSource(v *mailstore.View, flags []imap.Flag) *mailstore.View {
	if v.Announced(flags) {
		return v
	}
	return nil
}

// applyStore computes the flags after a STORE (\Recent is kept as it was:
// clients cannot set it).
func applyStore(cur []imap.Flag, sf *imap.StoreFlags) []imap.Flag {
	set := map[imap.Flag]bool{}
	recent := false
	for _, f := range cur {
		if f == `\Recent` {
			recent = true
			continue
		}
		set[f] = true
	}
	switch sf.Op {
	case imap.StoreFlagsSet:
		set = map[imap.Flag]bool{}
		fallthrough
	case imap.StoreFlagsAdd:
		for _, f := range sf.Flags {
			set[mailstore.CanonicalFlag(f)] = true
		}
	case imap.StoreFlagsDel:
		for _, f := range sf.Flags {
			delete(set, mailstore.CanonicalFlag(f))
		}
	}
	delete(set, `\Recent`)
	var out []imap.Flag
	for f := range set {
		out = append(out, f)
	}
	if recent {
		out = append(out, `\Recent`)
	}
	return out
}

func sameFlags(a, b []imap.Flag) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[imap.Flag]bool{}
	for _, f := range a {
		m[f] = true
	}
	for _, f := range b {
		if !m[f] {
			return false
		}
	}
	return true
}

// Copy copies messages to another mailbox in one commit (UIDPLUS COPYUID).
func (sess *Session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	data, _, err := sess.copyOrMove(numSet, dest, false)
	return data, err
}

// Move moves messages in one commit; the EXPUNGEs follow through the
// queue when the command ends.
func (sess *Session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	data, n, err := sess.copyOrMove(numSet, dest, true)
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return w.WriteCopyData(data)
}

func (sess *Session) copyOrMove(numSet imap.NumSet, dest string, move bool) (*imap.CopyData, int, error) {
	v := sess.view
	if move && v.ReadOnly() {
		return nil, 0, readOnlyErr()
	}
	dst, err := sess.user.Mailbox(dest)
	if err != nil {
		return nil, 0, tryCreate(dest)
	}
	// The destination may be the source (RFC 6851 3.1, RFC 3501 6.4.7):
	// the copies get new UIDs, and a MOVE expunges the originals.
	src := v.Mailbox()
	items := v.Items(numSet)
	if len(items) == 0 {
		return nil, 0, nil // OK, without COPYUID (RFC 4315 3)
	}
	var srcUIDs, dstUIDs imap.UIDSet
	verb := "copy"
	if move {
		verb = "move"
	}
	err = sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: "+verb+" from "+src.Name()+" to "+dst.Name(), func(w *mailstore.Writer) error {
		srcUIDs, dstUIDs = nil, nil // this may run twice (group commit)
		for _, it := range items {
			// A MOVE expunges the original (first, in the same
			// commit, so that the copy fits in the quota the
			// original used: mailstore's quota.go) and keeps its
			// identity across replicas (Writer.Move).
			var uid imap.UID
			var err error
			if move {
				uid, err = w.Move(src, it.Msg, dst)
			} else {
				uid, err = w.Copy(src, it.Msg, dst)
			}
			if err != nil {
				return err
			}
			srcUIDs.AddNum(it.Msg.UID)
			dstUIDs.AddNum(uid)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return &imap.CopyData{UIDValidity: dst.Info().UIDValidity, SourceUIDs: srcUIDs, DestUIDs: dstUIDs}, len(items), nil
}

// Search runs SEARCH with every criterion of RFC 3501 and RFC 9051,
// matching envelope and header fields from the parse cache and reading
// message bodies only for BODY and TEXT.
func (sess *Session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	v := sess.view
	n, max := v.Bounds()
	sc := &searchCtx{sess: sess, rd: sess.s.opts.Mail.NewReader(), mb: v.Mailbox(), numMessages: n, maxUID: max, searchRes: v.SearchRes}
	criteria = canonCriteria(criteria)
	if t := sess.s.searchTurns(criteria); t != nil {
		if !t.acquire(sess.s.ctx.Done()) {
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "The server is closing"}
		}
		defer t.release()
	}
	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	// In windows, as FETCH (ItemsWindows): eight sessions searching a
	// 50,000-message mailbox at once held 19 MB of items otherwise.
	err := v.ItemsWindows(nil, searchWindow, func(win []mailstore.Item) error {
		for _, it := range win {
			if !sc.match(it, criteria) {
				continue
			}
			uids = appendUID(uids, it.Msg.UID)
			var n uint32
			if kind == imapserver.NumKindSeq {
				if it.Seq == 0 {
					continue
				}
				seqs = appendSeq(seqs, it.Seq)
				n = it.Seq
			} else {
				n = uint32(it.Msg.UID)
			}
			if data.Min == 0 || n < data.Min {
				data.Min = n
			}
			if n > data.Max {
				data.Max = n
			}
			data.Count++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqs
	} else {
		data.All = uids
	}
	if o := options; o != nil && o.ReturnSave {
		v.SearchRes = uids
		// RFC 5182 2.4: with MIN and/or MAX and no other result
		// option, only those are saved (as SORT does, sort.go).
		if (o.ReturnMin || o.ReturnMax) && !o.ReturnAll && !o.ReturnCount && len(uids) > 0 {
			var saved imap.UIDSet
			if o.ReturnMin {
				saved.AddNum(uids[0].Start)
			}
			if o.ReturnMax {
				saved.AddNum(uids[len(uids)-1].Stop)
			}
			v.SearchRes = saved
		}
	}
	if empty, ok := sess.fastSearch(kind, options, data); ok {
		// The answer is rendered: the layer writes it in place of
		// imapserver's, which is empty (searchwrite.go).
		return empty, nil
	}
	return data, nil
}

// appendUID adds n to s: at the end, as a new range or by extending the
// last, when n is above all of s (SEARCH finds the messages in UID order),
// else through AddNum. AddNum's search and insert per number were a third
// of a SEARCH UNSEEN of a large mailbox.
func appendUID(s imap.UIDSet, n imap.UID) imap.UIDSet {
	if k := len(s); k > 0 && s[k-1].Stop != 0 && n <= s[k-1].Stop {
		s.AddNum(n)
		return s
	} else if k > 0 && s[k-1].Stop+1 == n {
		s[k-1].Stop = n
		return s
	}
	return append(s, imap.UIDRange{Start: n, Stop: n})
}

// appendSeq is appendUID for sequence numbers.
func appendSeq(s imap.SeqSet, n uint32) imap.SeqSet {
	if k := len(s); k > 0 && s[k-1].Stop != 0 && n <= s[k-1].Stop {
		s.AddNum(n)
		return s
	} else if k > 0 && s[k-1].Stop+1 == n {
		s[k-1].Stop = n
		return s
	}
	return append(s, imap.SeqRange{Start: n, Stop: n})
}

// searchWindow is how many messages SEARCH takes from the mailbox at a
// time.
const searchWindow = 1024

type searchCtx struct {
	sess        *Session
	rd          *mailstore.Reader
	br          *bufio.Reader // TEXT and BODY: reused for every message
	text        []byte        // TEXT and BODY: a part's decoded text
	mb          *mailstore.Mailbox
	numMessages uint32
	maxUID      imap.UID
	searchRes   imap.UIDSet
}

func (sc *searchCtx) raw(m *mailstore.Message) []byte {
	b, err := sc.rd.ReadRaw(sc.mb, m)
	if err != nil {
		return nil
	}
	return b
}

func (sc *searchCtx) match(it mailstore.Item, c *imap.SearchCriteria) bool {
	m := it.Msg
	// RFC 7162 3.1.5: the message's MODSEQ is at least the key's (entry
	// names are not told apart: every flag change sets the one MODSEQ).
	if c.ModSeq != nil && it.ModSeq < c.ModSeq.ModSeq {
		return false
	}
	for _, ss := range c.SeqNum {
		if imap.IsSearchRes(ss) {
			if !sc.searchRes.Contains(m.UID) {
				return false
			}
			continue
		}
		if it.Seq == 0 || !containsSeq(ss, it.Seq, sc.numMessages) {
			return false
		}
	}
	for _, us := range c.UID {
		if imap.IsSearchRes(us) {
			if !sc.searchRes.Contains(m.UID) {
				return false
			}
			continue
		}
		if !containsUID(us, m.UID, sc.maxUID) {
			return false
		}
	}
	if (!c.Since.IsZero() || !c.Before.IsZero()) && !matchDate(m.Date, c.Since, c.Before) {
		return false
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		if env := m.Summary().Envelope; env == nil || env.Date.IsZero() || !matchDate(env.Date, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, f := range c.Flag {
		if !hasFlag(it.Flags, f) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if hasFlag(it.Flags, f) {
			return false
		}
	}
	if c.Larger != 0 && m.Size <= c.Larger {
		return false
	}
	if c.Smaller != 0 && m.Size >= c.Smaller {
		return false
	}
	for _, h := range c.Header {
		if !sc.matchHeader(m, h.Key, h.Value) {
			return false
		}
	}
	for _, t := range c.Text {
		if !sc.matchEntity(sc.raw(m), t, true) {
			return false
		}
	}
	for _, t := range c.Body {
		if !sc.matchEntity(sc.raw(m), t, false) {
			return false
		}
	}
	for i := range c.Not {
		if sc.match(it, &c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !sc.match(it, &c.Or[i][0]) && !sc.match(it, &c.Or[i][1]) {
			return false
		}
	}
	return true
}

func containsSeq(ss imap.SeqSet, seq, max uint32) bool {
	for _, r := range ss {
		if inRange(r.Start, r.Stop, seq, max) {
			return true
		}
	}
	return false
}

func containsUID(us imap.UIDSet, uid, max imap.UID) bool {
	for _, r := range us {
		if inRange(r.Start, r.Stop, uid, max) {
			return true
		}
	}
	return false
}

// inRange reports whether v is in the range a:b of a sequence or UID set,
// where 0 (*) stands for max and the ends may come in either order.
func inRange[T ~uint32](a, b, v, max T) bool {
	if a == 0 {
		a = max
	}
	if b == 0 {
		b = max
	}
	if a > b {
		a, b = b, a
	}
	return v >= a && v <= b
}

// canonCriteria is c as match wants it, made once per SEARCH rather than
// once per message: flags in their canonical spelling, header field names
// and values lower-cased. c itself is left as it is.
func canonCriteria(c *imap.SearchCriteria) *imap.SearchCriteria {
	cc := *c
	cc.Flag = canonFlags(c.Flag)
	cc.NotFlag = canonFlags(c.NotFlag)
	if len(c.Header) > 0 {
		cc.Header = make([]imap.SearchCriteriaHeaderField, len(c.Header))
		for i, h := range c.Header {
			cc.Header[i] = imap.SearchCriteriaHeaderField{Key: strings.ToLower(h.Key), Value: strings.ToLower(h.Value)}
		}
	}
	cc.Text = lowerAll(c.Text)
	cc.Body = lowerAll(c.Body)
	if len(c.Not) > 0 {
		cc.Not = make([]imap.SearchCriteria, len(c.Not))
		for i := range c.Not {
			cc.Not[i] = *canonCriteria(&c.Not[i])
		}
	}
	if len(c.Or) > 0 {
		cc.Or = make([][2]imap.SearchCriteria, len(c.Or))
		for i := range c.Or {
			cc.Or[i] = [2]imap.SearchCriteria{*canonCriteria(&c.Or[i][0]), *canonCriteria(&c.Or[i][1])}
		}
	}
	return &cc
}

func canonFlags(in []imap.Flag) []imap.Flag {
	if len(in) == 0 {
		return nil
	}
	out := make([]imap.Flag, len(in))
	for i, f := range in {
		out[i] = mailstore.CanonicalFlag(f)
	}
	return out
}

// matchValues reports whether one of vals (lower-cased) contains pattern
// (lower-cased by canonCriteria).
func matchValues(vals []string, pattern string) bool {
	if pattern == "" {
		return len(vals) > 0
	}
	for _, v := range vals {
		if strings.Contains(v, pattern) {
			return true
		}
	}
	return false
}

func rawHeaderField(raw []byte, key string) []string {
	e, err := gomessage.Read(bytes.NewReader(raw))
	if e == nil {
		_ = err
		return nil
	}
	h := mail.Header{Header: e.Header}
	fields := h.FieldsByKey(key)
	var out []string
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		out = append(out, strings.ToLower(v))
	}
	return out
}

// matchDate compares dates without time of day or zone, as RFC 3501 asks.
func matchDate(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	if !before.IsZero() && !t.Before(before) {
		return false
	}
	return true
}
