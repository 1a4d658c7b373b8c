package imapd

import (
	"mime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// The fast path of FETCH (see the package doc): a FETCH whose items are
// among FLAGS, UID, INTERNALDATE, RFC822.SIZE and ENVELOPE (MODSEQ and
// CHANGEDSINCE are taken out by the layer before imapserver reads the
// command, condstore.go) asks for nothing but what the index and the
// summaries hold. It is the resync that clients send most and at the
// largest scale ("UID FETCH 1:* (FLAGS)" of a whole mailbox), and the
// listing of a mailbox's messages ("FETCH 1:* (FLAGS UID RFC822.SIZE
// ENVELOPE)", or ALL). imapserver writes each FETCH response through a
// FetchResponseWriter of its own (an encoder made, a lock taken, the write
// deadline set and cleared, each item encoded field by field, a flush
// through the layer, which follows and may rewrite every line): about
// 0.9 µs a message for flags, 3.6 µs with an envelope, twice what Dovecot
// spends. Here the responses are appended to one buffer, straight from the
// view's windows of items and the messages' summaries (never a message
// parsed again), and written to the client's connection 64 KiB at a time,
// beneath imapserver but in its place: imapserver still parses the command
// (its BAD and NO answers, sequence and UID sets, "*", "$" and empty
// mailboxes are its own as before), calls Session.Fetch, then writes the
// updates the session owes (Poll, after the responses, as for every FETCH)
// and the tagged OK. Nothing imapserver writes is buffered at that point:
// each of its responses is flushed whole.
//
// The bytes are those imapserver and the layer write for the same items
// (fetchflags_test.go compares the two paths over random mailboxes):
// "* n FETCH (" then, once CONDSTORE is on, "MODSEQ (m) " (condLine's),
// "UID u" (Session.fetchOne writes the UID always), then as asked
// " FLAGS (...)", " INTERNALDATE "...", " RFC822.SIZE n", " ENVELOPE
// (...)" in that order (fetchOne's), ")". The flags are View.Visible's (a
// keyword the session has not announced in FLAGS reaches it later through
// its queue, after the FLAGS, RFC 3501 7.2.6), \Recent included. MODSEQ
// is the one read with the flags (Item.ModSeq) where condLine reads the
// message's MODSEQ again as the line goes by: the same value unless another
// session changes the message meanwhile, and then the flag update that
// follows in the session's queue brings the new flags and MODSEQ together.
// The envelope is written as imapserver's encoder writes it (appendEnvelope:
// names and subject Q-encoded, quoted strings, or literals for long ones,
// CR, LF, NUL, and 8-bit bytes unless IMAP4rev2 or UTF8=ACCEPT is
// enabled), with the layer's fix of address lists (fetchfix.go: no space
// between two addresses). A message whose flags imapserver's encoder would
// refuse (not an atom) is written by the general path, which fails the
// command as before.

// indexOnly reports whether a FETCH asks for nothing but FLAGS, UID,
// INTERNALDATE, RFC822.SIZE and ENVELOPE.
func indexOnly(o *imap.FetchOptions) bool {
	return o.BodyStructure == nil &&
		len(o.BodySection) == 0 && len(o.BinarySection) == 0 && len(o.BinarySectionSize) == 0 &&
		!o.ModSeq && o.ChangedSince == 0
}

const (
	// flagsWindow is how many messages the fast path takes from the
	// mailbox at a time (48 bytes of items each).
	flagsWindow = 1024
	// flagsFlush is how much of the responses the fast path holds
	// before it writes them: at least corkMax, so that corkConn passes
	// the write on without copying it.
	flagsFlush = corkMax
)

var flagsBufs = sync.Pool{New: func() any { b := make([]byte, 0, flagsFlush+1024); return &b }}

// fetchIndexed writes the FETCH responses of an indexOnly FETCH (see
// above), of the messages changed since since (CHANGEDSINCE; 0 for all). It
// runs corked.
func (sess *Session) fetchIndexed(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions, since uint64) error {
	p, v := sess.p, sess.view
	cond := p.cond.Load()
	utf8, envelopes := false, int64(0)
	if options.Envelope {
		caps := sess.conn.EnabledCaps()
		utf8 = caps.Has(imap.CapIMAP4rev2) || caps.Has(imap.CapUTF8Accept)
	}
	bp := flagsBufs.Get().(*[]byte)
	b := (*bp)[:0]
	defer func() {
		if cap(b) <= 4*flagsFlush {
			*bp = b[:0]
			flagsBufs.Put(bp)
		}
	}()
	flush := func() error {
		if len(b) == 0 {
			return nil
		}
		err := p.writeOut(b)
		b = b[:0]
		return err
	}
	// The flag list of the last message written, as it came from the
	// index and as written: consecutive messages mostly have the same
	// flags, and what Visible leaves of them cannot change during the
	// command (only a Poll, after it, announces flags).
	var last []imap.Flag
	var enc []byte
	valid, haveLast := true, false
	err := v.ItemsWindows(numSet, flagsWindow, func(items []mailstore.Item) error {
		for _, it := range items {
			if it.Seq == 0 || (since != 0 && it.ModSeq <= since) {
				continue // not announced to this client yet, or not changed
			}
			if options.Flags && (!haveLast || !slices.Equal(it.Flags, last)) {
				last, haveLast = it.Flags, true
				enc, valid = appendFlagList(enc[:0], v.Visible(it.Flags))
			}
			if !valid {
				// imapserver's encoder fails the command here: the
				// general path, for the same answer.
				if err := flush(); err != nil {
					return err
				}
				if err := sess.fetchOne(w, nil, it, options); err != nil {
					return err
				}
				continue
			}
			b = append(b, "* "...)
			b = strconv.AppendUint(b, uint64(it.Seq), 10)
			b = append(b, " FETCH ("...)
			if cond {
				ms := it.ModSeq
				if ms == 0 {
					ms = v.Mailbox().HighestModSeq()
				}
				b = append(b, "MODSEQ ("...)
				b = strconv.AppendUint(b, ms, 10)
				b = append(b, ") "...)
			}
			b = append(b, "UID "...)
			b = strconv.AppendUint(b, uint64(it.Msg.UID), 10)
			if options.Flags {
				b = append(b, " FLAGS ("...)
				b = append(b, enc...)
				b = append(b, ')')
			}
			m := it.Msg
			if options.InternalDate {
				b = append(b, ` INTERNALDATE "`...)
				b = m.Date.AppendFormat(b, internalDateLayout)
				b = append(b, '"')
			}
			if options.RFC822Size {
				b = append(b, " RFC822.SIZE "...)
				b = strconv.AppendInt(b, m.Size, 10)
			}
			if options.Envelope {
				env := &emptyEnvelope
				if sum := m.Summary(); sum != nil && sum.Envelope != nil {
					env = sum.Envelope
				}
				b = append(b, " ENVELOPE "...)
				b = appendEnvelope(b, env, utf8)
				envelopes++
			}
			b = append(b, ")\r\n"...)
			if len(b) >= flagsFlush {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if envelopes > 0 {
		sess.s.fastEnvelopes.Add(envelopes)
	}
	if err != nil {
		return err
	}
	return flush()
}

// appendFlagList appends flags separated by spaces, as imapserver's encoder
// writes them; ok is false if it would refuse one.
func appendFlagList(b []byte, flags []imap.Flag) ([]byte, bool) {
	for i, f := range flags {
		if !validFlag(string(f)) {
			return b, false
		}
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f...)
	}
	return b, true
}

// validFlag is the test of imapserver's encoder (go-imap's imapwire): a
// flag is an atom with at most a leading backslash, or \*.
func validFlag(s string) bool {
	if s == `\*` {
		return true
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == '\\' {
			if i != 0 {
				return false
			}
			continue
		}
		switch ch {
		case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
			return false
		}
		if unicode.IsControl(rune(ch)) {
			return false
		}
	}
	return len(s) > 0
}

// internalDateLayout is imapserver's INTERNALDATE (go-imap's
// internal.DateTimeLayout); envelopeDateLayout its envelope's date.
const (
	internalDateLayout = "_2-Jan-2006 15:04:05 -0700"
	envelopeDateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"
)

// appendEnvelope appends env as imapserver's encoder writes an ENVELOPE
// (its writeEnvelope), address lists as the layer rewrites them
// (fetchfix.go); utf8 is whether quoted strings may hold 8-bit bytes
// (IMAP4rev2 or UTF8=ACCEPT enabled).
func appendEnvelope(b []byte, env *imap.Envelope, utf8 bool) []byte {
	b = append(b, '(')
	if env.Date.IsZero() {
		b = append(b, "NIL"...)
	} else {
		b = append(b, '"')
		b = env.Date.AppendFormat(b, envelopeDateLayout)
		b = append(b, '"')
	}
	b = append(b, ' ')
	b = appendNString(b, mime.QEncoding.Encode("utf-8", env.Subject), utf8)
	sender, replyTo := env.Sender, env.ReplyTo
	if sender == nil {
		sender = env.From
	}
	if replyTo == nil {
		replyTo = env.From
	}
	for _, l := range [...][]imap.Address{env.From, sender, replyTo, env.To, env.Cc, env.Bcc} {
		b = append(b, ' ')
		b = appendAddressList(b, l, utf8)
	}
	b = append(b, ' ')
	if len(env.InReplyTo) > 0 {
		b = appendIString(b, "<"+strings.Join(env.InReplyTo, "> <")+">", utf8)
	} else {
		b = append(b, "NIL"...)
	}
	b = append(b, ' ')
	if env.MessageID != "" {
		b = appendIString(b, "<"+env.MessageID+">", utf8)
	} else {
		b = append(b, "NIL"...)
	}
	return append(b, ')')
}

// appendAddressList appends an envelope's address list: NIL if empty,
// else the addresses in parentheses, with no space between them (the
// layer's fix of imapserver's list, fetchfix.go).
func appendAddressList(b []byte, l []imap.Address, utf8 bool) []byte {
	if len(l) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for _, a := range l {
		b = append(b, '(')
		b = appendNString(b, mime.QEncoding.Encode("utf-8", a.Name), utf8)
		b = append(b, " NIL "...)
		b = appendNString(b, a.Mailbox, utf8)
		b = append(b, ' ')
		b = appendNString(b, a.Host, utf8)
		b = append(b, ')')
	}
	return append(b, ')')
}

// appendNString appends s as a string, or NIL if it is empty.
func appendNString(b []byte, s string, utf8 bool) []byte {
	if s == "" {
		return append(b, "NIL"...)
	}
	return appendIString(b, s, utf8)
}

// appendIString appends s as imapserver's encoder writes a string: quoted
// (with '"' and '\\' escaped) if it can be, else a literal. A quoted
// string is at most 4096 bytes, without NUL, CR or LF, and without 8-bit
// bytes unless utf8.
func appendIString(b []byte, s string, utf8 bool) []byte {
	quoted := len(s) <= 4096
	for i := 0; i < len(s) && quoted; i++ {
		switch ch := s[i]; {
		case ch == 0 || ch == '\r' || ch == '\n':
			quoted = false
		case ch > unicode.MaxASCII && !utf8:
			quoted = false
		}
	}
	if !quoted {
		b = append(b, '{')
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, "}\r\n"...)
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if ch := s[i]; ch == '"' || ch == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
