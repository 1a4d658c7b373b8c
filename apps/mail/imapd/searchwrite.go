package imapd

import (
	"bytes"
	"strconv"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// The fast path of a SEARCH's answer (see the package doc). imapserver
// writes a SEARCH response ("* SEARCH 1 2 3", IMAP4rev1 without RETURN)
// number by number through its encoder, each number a string and two
// buffered writes, and then the layer's output scan copies the line: for
// "UID SEARCH UNSEEN" of 100,000 messages (80,000 numbers, a line of 550
// KB) that was half the server's time. ESEARCH's "ALL" set is one string,
// but a copy more, and scanned too. Here Session.Search keeps what the
// answer needs (searchSub: the set, MIN, MAX, COUNT) and returns
// imapserver an empty result: imapserver still parses the command (its
// BAD and NO answers, CHARSET, the state, RETURN's options) and, after
// Search, writes an empty response, in place of which the layer renders
// the answer, straight from the set's ranges into a buffer written to the
// client's connection 64 KiB at a time (as fetchflags.go does, beneath
// imapserver, under its write deadline); then imapserver writes the
// updates the session is owed (Poll; no EXPUNGE after a SEARCH) and the
// tagged OK, as before. The replacement is exact: the layer expects the
// very bytes imapserver writes for the empty result (one write: each of
// imapserver's responses is flushed whole, in one write when shorter
// than its 4 KiB buffer, and nothing of it is buffered when Search
// returns), and lets anything else by untouched; an answer not written by
// the command's end is forgotten.
//
// Which form imapserver writes, SEARCH or ESEARCH, depends on the command
// (RETURN) and on IMAP4rev2 being enabled; what the layer saw of the
// command line (searchForm, set as the command goes to imapserver) says
// the first, Conn.EnabledCaps the second. The bytes are imapserver's
// (searchwrite_test.go plays random scripts with the fast path off and on
// and compares every byte the client gets, and answers of several writes): "* SEARCH" and " n" for each
// number of the set in order; "* ESEARCH (TAG "tag")", " UID" for UID
// SEARCH, " ALL set" if asked and not empty, " MIN n" and " MAX n" if
// asked and not empty, " COUNT n" if asked. RETURN (SAVE) still saves
// the matches ($, RFC 5182), Session.Search doing it on both paths.
// SEARCH with a MODSEQ key is the layer's (condstore.go), and the
// SEARCHes that SORT and THREAD run (sort.go) are the layer's calls, not
// imapserver's: neither is seen here. A tag the layer would not copy
// exactly as imapserver quotes it (see searchFormOf) takes the general
// path.

// searchForm is what the layer saw of the SEARCH command it hands to
// imapserver: ok if the fast path may answer it, ext if it has RETURN
// options (an ESEARCH answer).
type searchForm struct {
	ok  bool
	ext bool
	tag string
}

// maxFastTag bounds the tag of a SEARCH answered by the fast path, so that
// imapserver's empty ESEARCH response (which quotes the tag) is written
// in one write.
const maxFastTag = 256

// searchFormOf reads a SEARCH or UID SEARCH command's start (head, as
// peekHead returns it; name as cmdName's): whether RETURN follows the
// name, if head says.
func searchFormOf(head []byte, tag, name string) searchForm {
	if len(tag) == 0 || len(tag) > maxFastTag {
		return searchForm{}
	}
	for i := 0; i < len(tag); i++ {
		// imapserver reads the tag as an atom and quotes it in
		// ESEARCH: printable ASCII, no quote or backslash (which an
		// atom cannot hold anyway) copies as it is.
		if c := tag[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return searchForm{}
		}
	}
	at := len(tag) + 1 + len(name)
	if len(head) <= at || head[at] != ' ' {
		return searchForm{}
	}
	rest := head[at+1:]
	complete := false
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		rest, complete = rest[:i], true
	}
	const ret = "RETURN "
	switch {
	case len(rest) >= len(ret):
		return searchForm{ok: true, ext: bytes.EqualFold(rest[:len(ret)], []byte(ret)), tag: tag}
	case complete:
		return searchForm{ok: true, tag: tag}
	}
	return searchForm{} // too long a tag to see what follows
}

// searchSub is an untagged SEARCH answer waiting for the empty one that
// imapserver writes in its place.
type searchSub struct {
	empty []byte // what imapserver writes
	// The answer: head, then the numbers of all (each after a space), or
	// else " ALL" and the set if all is not nil; then tail and CRLF.
	head, tail []byte
	all        imap.NumSet
	nums       bool
}

// fastSearch makes ready the answer to a SEARCH (data, as Session.Search
// found it), for the layer to write in place of imapserver's empty one,
// and returns the empty result for imapserver. ok is false if the fast
// path does not apply (the layer's own SEARCHes, or off for tests).
func (sess *Session) fastSearch(kind imapserver.NumKind, options *imap.SearchOptions, data *imap.SearchData) (*imap.SearchData, bool) {
	p := sess.p
	if p == nil || options == nil {
		return nil, false
	}
	form := p.search
	p.search = searchForm{} // one Search per command
	if !form.ok || sess.s.generalSearch.Load() {
		return nil, false
	}
	empty := imap.SearchData{All: imap.SeqSet(nil)}
	if kind == imapserver.NumKindUID {
		empty.All = imap.UIDSet(nil)
	}
	sub := &searchSub{}
	if !form.ext && !sess.conn.EnabledCaps().Has(imap.CapIMAP4rev2) {
		sub.head = []byte("* SEARCH")
		sub.all, sub.nums = data.All, true
		sub.empty = []byte("* SEARCH\r\n")
	} else {
		h := append([]byte(`* ESEARCH (TAG "`), form.tag...)
		h = append(h, `")`...)
		if kind == imapserver.NumKindUID {
			h = append(h, " UID"...)
		}
		sub.head = h
		if options.ReturnAll && numRanges(data.All) > 0 {
			sub.all = data.All
		}
		var t []byte
		if options.ReturnMin && data.Min > 0 {
			t = strconv.AppendUint(append(t, " MIN "...), uint64(data.Min), 10)
		}
		if options.ReturnMax && data.Max > 0 {
			t = strconv.AppendUint(append(t, " MAX "...), uint64(data.Max), 10)
		}
		e := append([]byte(nil), h...)
		if options.ReturnCount {
			t = strconv.AppendUint(append(t, " COUNT "...), uint64(data.Count), 10)
			e = append(e, " COUNT 0"...)
		}
		sub.tail, sub.empty = t, append(e, "\r\n"...)
	}
	p.wmu.Lock()
	p.searchSub = sub
	p.wmu.Unlock()
	return &empty, true
}

// numRanges is the number of ranges of a SeqSet or UIDSet.
func numRanges(s imap.NumSet) int {
	switch s := s.(type) {
	case imap.SeqSet:
		return len(s)
	case imap.UIDSet:
		return len(s)
	}
	return 0
}

// forRanges calls fn with each range of a SeqSet or UIDSet, in order.
func forRanges(s imap.NumSet, fn func(start, stop uint32)) {
	switch s := s.(type) {
	case imap.SeqSet:
		for _, r := range s {
			fn(r.Start, r.Stop)
		}
	case imap.UIDSet:
		for _, r := range s {
			fn(uint32(r.Start), uint32(r.Stop))
		}
	}
}

// substSearch writes the answer of the fast path of SEARCH in place of
// b, if b is the empty answer that imapserver writes for it (handled): the
// line rendered into a buffer written every searchFlush bytes. The caller
// holds wmu.
func (p *proto) substSearch(b []byte) (handled bool, err error) {
	sub := p.searchSub
	o := &p.out
	if sub == nil || !bytes.Equal(b, sub.empty) || o.mid || o.lit > 0 || len(o.head) > 0 {
		return false, nil
	}
	p.searchSub = nil
	p.s.fastSearches.Add(1)
	bp := flagsBufs.Get().(*[]byte)
	buf := append((*bp)[:0], sub.head...)
	defer func() {
		*bp = buf[:0]
		flagsBufs.Put(bp)
	}()
	flush := func() {
		if err == nil && len(buf) >= flagsFlush {
			_, err = p.outer.Write(buf)
			buf = buf[:0]
		}
	}
	if sub.nums {
		// " n" for each number, as Nums lists them (the sets of
		// Session.Search have neither "*" nor "$").
		forRanges(sub.all, func(start, stop uint32) {
			for n := uint64(start); n <= uint64(stop) && err == nil; n++ {
				buf = strconv.AppendUint(append(buf, ' '), n, 10)
				flush()
			}
		})
	} else if sub.all != nil {
		// " ALL " and the set, as its String method writes it.
		buf = append(buf, " ALL "...)
		first := true
		forRanges(sub.all, func(start, stop uint32) {
			if !first {
				buf = append(buf, ',')
			}
			first = false
			buf = strconv.AppendUint(buf, uint64(start), 10)
			if start != stop {
				buf = strconv.AppendUint(append(buf, ':'), uint64(stop), 10)
			}
			flush()
		})
	}
	if err != nil {
		return true, err
	}
	buf = append(append(buf, sub.tail...), "\r\n"...)
	_, err = p.outer.Write(buf)
	return true, err
}

// dropSearch forgets an answer that was not written (imapserver failed to
// write the command's answers), so that it cannot stand for a later one.
func (p *proto) dropSearch() {
	p.wmu.Lock()
	p.searchSub = nil
	p.wmu.Unlock()
}
