// Package imapd serves a mailstore over IMAP (IMAP4rev1 and IMAP4rev2, with
// go-imap's imapserver doing the protocol): one Session per connection, auth
// against the store's users, IDLE pushed by the mailstore's trackers.
//
// A Server serves any net.Listener it is handed (Serve, or ServeTLS for
// implicit TLS on port 993); it never opens sockets itself.
//
// Conformance: conformance_test.go is the checklist of RFC rules, each run
// over a real connection against this server and a private Dovecot. Where
// imapserver (go-imap v2.0.0-beta.9) writes what the grammar does not have,
// the layer below rewrites its output as it streams by (fetchfix.go): the
// origin octet of a partial BINARY (BINARY[1]<0>), and no space between
// the addresses of an ENVELOPE's address list; groups (RFC 5322 3.4),
// which its envelope parser drops, are put back by the mailstore's parser.
// A LIST pattern that is not modified UTF-7, which imapserver answers
// NO [SERVERBUG], is answered BAD by the layer first (listcheck.go).
//
// Extensions beyond imapserver: a protocol layer of our own (proto.go).
// imapserver's command dispatch is closed (an unknown command is answered
// BAD, or BYE before login) and it has no hook for new commands, command
// modifiers or response codes, so what go-imap's public API does not reach
// is done by a layer between the client's connection and imapserver rather
// than by a fork: it frames the client's input (lines and literals, passed
// on as they stream, never held whole), answers the commands it implements
// itself while imapserver is idle between commands (so pipelined
// responses stay in order), passes every other byte on unchanged, and adds
// the capabilities it implements to imapserver's capability lists. It owns
// TLS: implicit TLS beneath it, and STARTTLS, after which the connection
// is handed to a second imapserver.Server whose connections count as
// secure. What imapserver writes is followed too (its continuation
// requests say when the client's next bytes belong to the command in
// progress: a literal, an AUTHENTICATE response, IDLE's DONE). The
// connection guard and imapserver's own limits and timeouts still apply:
// the layer reads through the guarded connection, under imapserver's
// deadlines, and bounds what it reads of its own commands (64 KiB).
//
// Quotas (RFC 9208): each user's STORAGE and MESSAGE limits (nymote user
// quota) are enforced by the mailstore inside the commit of every APPEND,
// COPY and MOVE, answered NO [OVERQUOTA] (RFC 9208 4.3, RFC 5530) with
// nothing written (quota_test.go). The layer answers GETQUOTAROOT and
// GETQUOTA (one quota root per user, named ""; only the resources with a
// limit are listed; STORAGE in KiB) and SETQUOTA NO [NOPERM] (limits are
// the administrator's; QUOTASET is not announced); STATUS has DELETED and
// DELETED-STORAGE. QUOTA, QUOTA=RES-STORAGE and QUOTA=RES-MESSAGE are
// announced after login (layer_test.go).
//
// SORT with ESORT's RETURN options (RFC 5256, RFC 5267 3.2) and THREAD with
// ORDEREDSUBJECT and REFERENCES (RFC 5256) are the layer's too (sort.go):
// the search program is parsed by the layer (searchkey.go) and evaluated
// by Session.Search, the keys read from the parse cache. sort_test.go
// checks every answer against Dovecot's.
//
// CONDSTORE (RFC 7162 3) is the layer's too (condstore.go), over the
// MODSEQ per message and HIGHESTMODSEQ per mailbox that the mailstore keeps
// (durable, monotonic, kept across replica merges): ENABLE, SELECT/EXAMINE
// (CONDSTORE) and HIGHESTMODSEQ, STATUS HIGHESTMODSEQ, FETCH MODSEQ and
// CHANGEDSINCE, MODSEQ in every FETCH response once enabled, STORE
// UNCHANGEDSINCE with [MODIFIED] (check and change in one commit), SEARCH
// MODSEQ. QRESYNC (RFC 7162 3.2) too, over the expunged UIDs that
// mailbox.json keeps with their MODSEQ: ENABLE QRESYNC, SELECT/EXAMINE
// (QRESYNC (...)) with VANISHED (EARLIER) and the changed messages' FETCH,
// VANISHED instead of EXPUNGE, UID FETCH (CHANGEDSINCE n VANISHED).
// condstore_test.go and qresync_test.go check them per RFC section, and
// against Dovecot.
//
// A FETCH of what the index and the summaries hold (FLAGS, UID,
// INTERNALDATE, RFC822.SIZE and ENVELOPE, with MODSEQ and CHANGEDSINCE once
// the layer has taken them out: the flag resync of every client, "UID
// FETCH 1:* (FLAGS)", and the listing "FETCH 1:* (FLAGS UID RFC822.SIZE
// ENVELOPE)") is written by a fast path (fetchflags.go): the responses go
// from the view's windows of items and the summaries into one buffer, written
// to the connection 64 KiB at a time, instead of one imapserver
// FetchResponseWriter a message (about 0.9 µs each, through the layer's
// output scan: half of Dovecot's speed at 100,000 messages). It sits in
// Session.Fetch, after imapserver has parsed the command, rather than in
// the layer as a command of its own: the command's syntax, its BAD and NO
// answers, the sequence and UID sets ("*", "$", empty mailboxes), the
// updates the session is owed after it (FLAGS before a new keyword,
// EXISTS, flag FETCHes; EXPUNGE waits, as for every FETCH) and the tagged
// OK all stay imapserver's, byte for byte; only the writing of the
// responses themselves is ours. fetchflags_test.go plays random scripts
// with the fast path off and on and compares every byte the client gets.
//
// SEARCH answers have a fast path of the same kind (searchwrite.go): the
// untagged SEARCH or ESEARCH line ("* SEARCH" and 80,000 numbers for a
// UID SEARCH UNSEEN of 100,000 messages, which imapserver's encoder writes
// number by number, half the server's time) is not imapserver's:
// Session.Search hands it an empty result, and the layer writes the
// answer in place of the empty response imapserver writes for it,
// rendered from the set's ranges 64 KiB at a time. Parsing, BAD and NO
// answers, the updates after the answer and the tagged OK stay
// imapserver's; searchwrite_test.go compares the two paths byte for byte.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/mail/mailauth"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// Options configure a Server.
type Options struct {
	// Mail is the mailstore to serve (required).
	Mail *mailstore.Store
	// Domains are the mail domains: "alice@DOMAIN" logs in as "alice".
	Domains []string
	// TLSConfig enables STARTTLS; nil disables it.
	TLSConfig *tls.Config
	// InsecureAuth allows LOGIN and AUTHENTICATE without TLS (loopback
	// tests only).
	InsecureAuth bool
	// AppendLimit is the largest message APPEND accepts; zero means 50 MiB.
	AppendLimit uint32
	// Auth rate-limits logins per remote host and per account (shared with
	// SMTP AUTH and the other services of the process); nil means one of
	// its own with guard's defaults.
	Auth *guard.Auth
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// BodySearches is how many SEARCHes that read whole messages (TEXT,
	// BODY) run at once, HeaderSearches how many that read headers
	// (header fields, sent dates); others wait their turn (search.go).
	// Zero means one per 16 MiB of the Go memory limit, from one to
	// GOMAXPROCS (GOMAXPROCS if there is no limit), and one per 4 MiB, at
	// least two (64 if there is no limit).
	BodySearches, HeaderSearches int
}

// Server is an IMAP server.
type Server struct {
	opts Options
	log  *slog.Logger
	// srv serves connections in clear text (before STARTTLS), secure
	// those under TLS (implicit, or after STARTTLS): see proto.go.
	srv, secure       *imapserver.Server
	plainLn, secureLn *connListener

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	closed    bool
	// Turns for SEARCHes that read messages (search.go).
	bodySearches, headerSearches *turns
	// ctx ends with Close, for logins waiting on the rate limit.
	ctx    context.Context
	cancel context.CancelFunc
	// generalFetch turns the fast path of FETCH off (fetchflags.go),
	// for tests that compare it with imapserver's.
	generalFetch atomic.Bool
	// generalSearch turns the fast path of SEARCH answers off
	// (searchwrite.go), for tests that compare it with imapserver's.
	generalSearch atomic.Bool
	// fastSearches counts the SEARCH answers the fast path wrote (for
	// tests).
	fastSearches atomic.Int64
	// fastEnvelopes counts the ENVELOPEs the fast path of FETCH wrote
	// (for tests).
	fastEnvelopes atomic.Int64
}

// Caps are the capabilities advertised beyond those that imapserver adds by
// itself (IDLE, UNSELECT, ENABLE, SASL-IR, LITERAL-, STARTTLS, AUTH=PLAIN).
var Caps = imap.CapSet{
	imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
	imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapESearch: {}, imap.CapSearchRes: {},
	imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapMove: {}, imap.CapStatusSize: {},
	imap.CapBinary: {}, imap.CapChildren: {}, imap.CapSpecialUse: {}, imap.CapCreateSpecialUse: {},
	imap.CapLiteralPlus: {}, imap.CapUnauthenticate: {},
}

// New makes a server.
func New(opts Options) *Server {
	if opts.AppendLimit == 0 {
		opts.AppendLimit = 50 << 20
	}
	if opts.Auth == nil {
		opts.Auth = guard.NewAuth(guard.AuthOptions{})
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, listeners: map[net.Listener]struct{}{}}
	s.bodySearches = newTurns(opts.BodySearches, 16<<20, 1, runtime.GOMAXPROCS(0), runtime.GOMAXPROCS(0))
	s.headerSearches = newTurns(opts.HeaderSearches, 4<<20, 2, math.MaxInt, 64)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	newSession := func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
		sess := &Session{s: s, conn: c}
		if in, ok := c.NetConn().(*innerConn); ok {
			sess.p = in.p
			sess.cork = corkOf(in.p.outer)
			in.p.sess.Store(sess)
		} else {
			sess.cork = corkOf(c.NetConn())
		}
		return sess, nil, nil
	}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession:   newSession,
		Caps:         Caps,
		Logger:       slogPrintf{log},
		TLSConfig:    opts.TLSConfig,
		InsecureAuth: opts.InsecureAuth,
	})
	// The connections of secure are under TLS that the layer did: they
	// may log in, and have no STARTTLS.
	s.secure = imapserver.New(&imapserver.Options{
		NewSession:   newSession,
		Caps:         Caps,
		Logger:       slogPrintf{log},
		InsecureAuth: true,
	})
	s.plainLn, s.secureLn = newConnListener(), newConnListener()
	go s.srv.Serve(s.plainLn)
	go s.secure.Serve(s.secureLn)
	// imapserver's Close must not run before its Serve began.
	<-s.plainLn.started
	<-s.secureLn.started
	return s
}

// Serve accepts connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, nil) }

// ServeTLS accepts connections on ln with implicit TLS (port 993) until
// Close.
func (s *Server) ServeTLS(ln net.Listener, config *tls.Config) error {
	return s.serve(ln, config)
}

func (s *Server) serve(ln net.Listener, config *tls.Config) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			// A transient failure (as imapserver's own loop did).
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("imap: accept", "err", err, "retry", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return nil
			}
			continue
		}
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("imap: accept: %w", err)
		}
		delay = 0
		cc := &corkConn{Conn: c, track: cmdTracker{tls: config != nil}}
		var outer net.Conn = cc
		if config != nil {
			outer = tls.Server(cc, config)
		}
		s.serveConn(cc, outer, config != nil)
	}
}

// Close stops the server and closes its connections.
func (s *Server) Close() error {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	var err error
	for ln := range s.listeners {
		if cerr := ln.Close(); err == nil {
			err = cerr
		}
	}
	s.mu.Unlock()
	s.plainLn.Close()
	s.secureLn.Close()
	if cerr := s.srv.Close(); err == nil {
		err = cerr
	}
	if cerr := s.secure.Close(); err == nil {
		err = cerr
	}
	return err
}

type slogPrintf struct{ log *slog.Logger }

func (l slogPrintf) Printf(format string, args ...any) {
	l.log.Warn("imap: " + fmt.Sprintf(format, args...))
}

// Session is one IMAP connection.
type Session struct {
	s    *Server
	conn *imapserver.Conn
	cork *corkConn // nil if the connection is not one of ours
	p    *proto    // the protocol layer beneath (proto.go)
	user *mailstore.User
	view *mailstore.View
	// selectModSeq is the selected mailbox's HIGHESTMODSEQ, read before
	// it was opened (condstore.go).
	selectModSeq uint64
}

// corked runs fn with the connection's writes held back (see corkConn), for
// commands that write many responses.
func (sess *Session) corked(fn func() error) error {
	if sess.cork == nil {
		return fn()
	}
	sess.cork.cork()
	err := fn()
	if uerr := sess.cork.uncork(); err == nil {
		err = uerr
	}
	return err
}

var (
	_ imapserver.SessionIMAP4rev2      = (*Session)(nil)
	_ imapserver.SessionAppendLimit    = (*Session)(nil)
	_ imapserver.SessionUnauthenticate = (*Session)(nil)
)

func noMailbox(name string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox: " + name}
}

func tryCreate(name string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox: " + name}
}

// mapErr turns mailstore errors into IMAP responses.
func mapErr(err error) error {
	var ie *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return err
	case errors.Is(err, mailstore.ErrNoMailbox):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: err.Error()}
	case errors.Is(err, mailstore.ErrMailboxExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: err.Error()}
	case errors.Is(err, mailstore.ErrBadName):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: err.Error()}
	}
	return err
}

func (sess *Session) ctx() context.Context { return context.Background() }

// Close ends the session.
func (sess *Session) Close() error {
	if sess.view != nil {
		sess.view.Close()
		sess.view = nil
	}
	return nil
}

// Login checks a user's password against the store's users, through the
// rate limit of Options.Auth (mailauth.Login): an attempt waits the delay
// that recent failures from its host and against its account earn, and one
// over the limit of attempts in flight is refused unchecked with
// [UNAVAILABLE].
func (sess *Session) Login(username, password string) error {
	nc := sess.conn.NetConn()
	remote := nc.RemoteAddr().String()
	name, account, err := mailauth.Login(sess.s.ctx, sess.s.opts.Auth, sess.s.opts.Mail.Backing(), sess.s.opts.Domains, remote, username, password)
	switch {
	case errors.Is(err, guard.ErrBusy):
		sess.s.log.Warn("imap: login refused: too many attempts in flight", "user", account, "remote", remote)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Too many login attempts in progress; try again later"}
	case errors.Is(err, store.ErrAuthFailed):
		sess.s.log.Info("imap: login failed", "user", account, "remote", remote)
		return imapserver.ErrAuthFailed
	case err != nil:
		sess.s.log.Error("imap: login", "user", account, "remote", remote, "err", err)
		return err
	}
	// Logged in for the guard (its login timeout stops) once the
	// password is right, before the user's index loads: that takes
	// minutes for a large mailbox on a slow machine (50,000 messages
	// under TCG), and the eight clients that waited for it were cut off
	// at the two-minute login timeout.
	guard.LoggedIn(nc)
	u, err := sess.s.opts.Mail.User(sess.ctx(), name)
	if err != nil {
		return err
	}
	sess.user = u
	sess.s.log.Debug("imap: login", "user", name, "remote", remote)
	return nil
}

// NetConn returns the connection beneath, for guard.LoggedIn.
func (c *corkConn) NetConn() net.Conn { return c.Conn }

// Unauthenticate ends the login (RFC 8437) without closing the connection.
func (sess *Session) Unauthenticate() error {
	sess.Close()
	sess.user = nil
	return nil
}

// AppendLimit implements APPENDLIMIT. Before login it is zero: imapserver
// checks the literal's size against it before it sends the continuation
// request, so an APPEND before login is refused (NO [TOOBIG]) without its
// literal being read.
func (sess *Session) AppendLimit() uint32 {
	if sess.user == nil {
		return 0
	}
	return sess.s.opts.AppendLimit
}

// Namespace: one personal namespace.
func (sess *Session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Delim: mailstore.Delim}}}, nil
}

// Select opens a mailbox (EXAMINE: read-only).
func (sess *Session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if sess.view != nil {
		sess.view.Close()
		sess.view = nil
	}
	mb, err := sess.user.Mailbox(name)
	if err != nil {
		return nil, noMailbox(name)
	}
	// Read before the view opens: a change in between is reported again
	// rather than missed.
	sess.selectModSeq = mb.HighestModSeq()
	open := mb.Open
	if sess.p != nil && sess.p.qres.Load() {
		open = mb.OpenTracked // for VANISHED (condstore.go)
	}
	v, si := open(options != nil && options.ReadOnly)
	sess.view = v
	perm := append([]imap.Flag(nil), si.Flags...)
	perm = append(perm, imap.FlagWildcard)
	if v.ReadOnly() {
		perm = nil
	}
	return &imap.SelectData{
		Flags:             si.Flags,
		PermanentFlags:    perm,
		NumMessages:       si.NumMessages,
		FirstUnseenSeqNum: si.FirstUnseen,
		NumRecent:         si.NumRecent,
		UIDNext:           si.Info.UIDNext,
		UIDValidity:       si.Info.UIDValidity,
	}, nil
}

// Unselect closes the selected mailbox without expunging.
func (sess *Session) Unselect() error {
	if sess.view != nil {
		sess.view.Close()
		sess.view = nil
	}
	return nil
}

// Create makes a mailbox (with CREATE-SPECIAL-USE's USE).
func (sess *Session) Create(name string, options *imap.CreateOptions) error {
	var use imap.MailboxAttr
	if options != nil && len(options.SpecialUse) > 0 {
		use = options.SpecialUse[0]
		switch use {
		case imap.MailboxAttrAll, imap.MailboxAttrArchive, imap.MailboxAttrDrafts, imap.MailboxAttrFlagged,
			imap.MailboxAttrJunk, imap.MailboxAttrSent, imap.MailboxAttrTrash:
		default:
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "Unsupported special use"}
		}
	}
	err := sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: create "+name, func(w *mailstore.Writer) error {
		// Superior names that do not exist yet are made too (RFC 3501 6.3.3).
		parts := strings.Split(mailstore.NormName(name), string(mailstore.Delim))
		for i := 1; i < len(parts); i++ {
			parent := strings.Join(parts[:i], string(mailstore.Delim))
			if _, err := sess.user.Mailbox(parent); err == nil || mailstore.ValidName(parent) != nil {
				continue
			}
			if _, err := w.Create(sess.user, parent, ""); err != nil {
				return err
			}
		}
		_, err := w.Create(sess.user, name, use)
		return err
	})
	return mapErr(err)
}

// Delete removes a mailbox and its messages.
func (sess *Session) Delete(name string) error {
	mb, err := sess.user.Mailbox(name)
	if err != nil {
		return noMailbox(name)
	}
	return mapErr(sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: delete "+name, func(w *mailstore.Writer) error {
		return w.Delete(mb)
	}))
}

// Rename renames a mailbox and the mailboxes below it. Renaming INBOX moves
// its messages to a new mailbox and leaves INBOX empty, as RFC 3501 says.
func (sess *Session) Rename(oldName, newName string, options *imap.RenameOptions) error {
	mb, err := sess.user.Mailbox(oldName)
	if err != nil {
		return noMailbox(oldName)
	}
	newName = mailstore.NormName(newName)
	if err := mailstore.ValidName(newName); err != nil {
		return mapErr(err)
	}
	if _, err := sess.user.Mailbox(newName); err == nil {
		return mapErr(mailstore.ErrMailboxExists)
	}
	oldName = mb.Name()
	return mapErr(sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: rename "+oldName+" to "+newName, func(w *mailstore.Writer) error {
		if oldName == "INBOX" {
			dst, err := w.Create(sess.user, newName, "")
			if err != nil {
				return err
			}
			v, _ := mb.Open(true)
			defer v.Close()
			for _, it := range v.Items(nil) {
				// Expunge first: the copy takes the original's
				// place in the quota.
				if err := w.Expunge(mb, it.Msg); err != nil {
					return err
				}
				if _, err := w.Copy(mb, it.Msg, dst); err != nil {
					return err
				}
			}
			return nil
		}
		for _, c := range sess.user.Mailboxes() {
			cn := c.Name()
			if cn == oldName || strings.HasPrefix(cn, oldName+string(mailstore.Delim)) {
				nn := newName + strings.TrimPrefix(cn, oldName)
				if err := w.SetInfo(c, func(i *mailstore.MailboxInfo) { i.Name = nn }); err != nil {
					return err
				}
			}
		}
		return nil
	}))
}

// Subscribe marks a mailbox subscribed.
func (sess *Session) Subscribe(name string) error { return sess.subscribe(name, true) }

// Unsubscribe marks a mailbox unsubscribed.
func (sess *Session) Unsubscribe(name string) error { return sess.subscribe(name, false) }

func (sess *Session) subscribe(name string, on bool) error {
	mb, err := sess.user.Mailbox(name)
	if err != nil {
		// A name that is no mailbox (any more) may still be subscribed:
		// DELETE leaves the subscription (RFC 3501 6.3.6).
		n := mailstore.NormName(name)
		if on || !slices.Contains(sess.user.SubscribedOnly(), n) {
			return noMailbox(name)
		}
		return mapErr(sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: unsubscribe "+n, func(w *mailstore.Writer) error {
			return w.SubscribeName(sess.user, n, false)
		}))
	}
	if mb.Info().Subscribed == on {
		return nil
	}
	return mapErr(sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: subscribe "+name, func(w *mailstore.Writer) error {
		return w.SetInfo(mb, func(i *mailstore.MailboxInfo) { i.Subscribed = on })
	}))
}

// List lists mailboxes (LIST-EXTENDED, LIST-STATUS, SPECIAL-USE).
func (sess *Session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: mailstore.Delim})
	}
	boxes := sess.user.Mailboxes()
	names := map[string]bool{}
	for _, mb := range boxes {
		names[mb.Name()] = true
	}
	matches := func(name string) bool {
		for _, p := range patterns {
			if imapserver.MatchList(name, mailstore.Delim, ref, p) {
				return true
			}
		}
		return false
	}
	// subscribedBelow: the mailboxes with a subscribed descendant that the
	// patterns do not match (RFC 5258 3.5: RECURSIVEMATCH returns them
	// with CHILDINFO ("SUBSCRIBED"), and LSUB as \Noselect).
	// Names subscribed that are no mailboxes (deleted since).
	var subscribedOnly []string
	if options.SelectSubscribed {
		for _, n := range sess.user.SubscribedOnly() {
			if !names[n] {
				subscribedOnly = append(subscribedOnly, n)
			}
		}
	}
	subscribedBelow := map[string]bool{}
	if options.SelectRecursiveMatch {
		subscribed := slices.Clone(subscribedOnly)
		for _, mb := range boxes {
			if info := mb.Info(); info.Subscribed {
				subscribed = append(subscribed, info.Name)
			}
		}
		for _, name := range subscribed {
			if matches(name) {
				continue
			}
			parts := strings.Split(name, string(mailstore.Delim))
			for i := 1; i < len(parts); i++ {
				subscribedBelow[strings.Join(parts[:i], string(mailstore.Delim))] = true
			}
		}
	}
	for _, mb := range boxes {
		info := mb.Info()
		if !matches(info.Name) {
			continue
		}
		childInfo := subscribedBelow[info.Name]
		if options.SelectSubscribed && !info.Subscribed && !childInfo {
			continue
		}
		if options.SelectSpecialUse && len(info.SpecialUse) == 0 {
			continue
		}
		data := imap.ListData{Mailbox: info.Name, Delim: mailstore.Delim}
		if childInfo {
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if info.Subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		children := false
		for n := range names {
			if strings.HasPrefix(n, info.Name+string(mailstore.Delim)) {
				children = true
				break
			}
		}
		if children {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		// Special use is always returned: clients that did not ask ignore it,
		// and many (mbsync among them) read it from a plain LIST.
		data.Attrs = append(data.Attrs, info.SpecialUse...)
		if options.ReturnStatus != nil {
			data.Status = statusData(mb, options.ReturnStatus)
		}
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}
	for _, n := range subscribedOnly {
		if !matches(n) {
			continue
		}
		data := imap.ListData{Mailbox: n, Delim: mailstore.Delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrNonExistent, imap.MailboxAttrSubscribed}}
		if subscribedBelow[n] {
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}
	return nil
}

func statusData(mb *mailstore.Mailbox, o *imap.StatusOptions) *imap.StatusData {
	info := mb.Info()
	st := mb.Stats()
	d := &imap.StatusData{Mailbox: info.Name}
	if o.NumMessages {
		d.NumMessages = &st.Messages
	}
	if o.UIDNext {
		d.UIDNext = info.UIDNext
	}
	if o.UIDValidity {
		d.UIDValidity = info.UIDValidity
	}
	if o.NumUnseen {
		d.NumUnseen = &st.Unseen
	}
	if o.NumDeleted {
		d.NumDeleted = &st.Deleted
	}
	if o.Size {
		d.Size = &st.Size
	}
	if o.NumRecent {
		d.NumRecent = &st.Recent
	}
	if o.DeletedStorage {
		kib := (st.DeletedSize + 1023) / 1024 // RFC 9208 4.2: in KiB
		d.DeletedStorage = &kib
	}
	return d
}

// Status reports a mailbox's counts.
func (sess *Session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mb, err := sess.user.Mailbox(name)
	if err != nil {
		return nil, noMailbox(name)
	}
	return statusData(mb, options), nil
}

// Append stores a message; the OK goes out only after its commit is durable.
// The literal is spooled to the data disk as it arrives and stored from
// there (mailstore.Writer.AppendSpool), never held in memory.
func (sess *Session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	mb, err := sess.user.Mailbox(name)
	if err != nil {
		return nil, tryCreate(name)
	}
	if r.Size() == 0 {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Empty message"}
	}
	if err := checkKeywords(options.Flags); err != nil {
		return nil, err
	}
	sp, err := sess.s.opts.Mail.Backing().NewSpool()
	if err != nil {
		return nil, mapErr(mailstore.DiskFull(err))
	}
	defer sp.Close()
	if _, err := io.Copy(sp, r); err != nil {
		return nil, mapErr(mailstore.DiskFull(err))
	}
	var uid imap.UID
	err = sess.s.opts.Mail.Update(sess.ctx(), sess.user.Name, "mail: append to "+mb.Name(), func(w *mailstore.Writer) error {
		var err error
		uid, err = w.AppendSpool(mb, sp, options.Flags, options.Time)
		return err
	})
	if err != nil {
		return nil, mapErr(err)
	}
	return &imap.AppendData{UID: uid, UIDValidity: mb.Info().UIDValidity}, nil
}

// Poll writes the selected mailbox's pending updates, in the order they
// were queued: a FLAGS response naming a new keyword is queued before any
// FETCH or EXISTS that brings it (RFC 3501 7.2.6; mailstore/keywords.go).
func (sess *Session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if sess.view == nil {
		return nil
	}
	return sess.view.Poll(w, allowExpunge)
}

// Idle writes updates as they come until stop is closed. It is Poll in a
// loop woken by the mailbox (rather than the tracker's own Idle) so that the
// view notes the flags it announced here too.
func (sess *Session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	v := sess.view
	if v == nil {
		<-stop
		return nil
	}
	for {
		if err := sess.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-v.Wake():
		case <-stop:
			return nil
		}
	}
}
