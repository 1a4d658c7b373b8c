// Package smtpd serves SMTP with go-smtp in two roles: inbound delivery
// (port 25: mail for the local domains, from anyone, no relaying) and
// submission (ports 587 and 465: users authenticate with AUTH PLAIN over TLS
// and may send anywhere; mail for other domains goes to the queue).
//
// Whatever a server accepts is one durable commit (local deliveries and
// queue entries together) before it answers 250.
//
// Resources are bounded before any login: a message is spooled to the data
// disk as it arrives and stored from there by streaming (store.Spool), so
// that it costs a few buffers of memory whatever its size; at most
// MaxTransfers messages are received at once (a few more wait, the rest
// get 451) and MaxConnections connections are open (the rest get 421).
// When the data disk is down to the store's reserve, mail is refused with
// 452 (insufficient storage) until space is freed. On submission the
// header From: must be one of the user's own addresses (550 5.7.1).
//
// A local recipient over quota (the user's STORAGE and MESSAGE limits) is
// refused with 552 5.2.2: at RCPT, that recipient alone, when the message
// would not fit by its announced SIZE (or no message would); else at
// DATA, when it is the only recipient. When others would get it, DATA
// answers 452 4.2.2 for all (SMTP has one answer to DATA), see quotaError.
package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/apps/mail/mailauth"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/msgauth"
	"github.com/nymote/nymote/apps/mail/queue"
	"github.com/nymote/nymote/store"
)

// Options configure a Server.
type Options struct {
	// Mail is the mailstore (required).
	Mail *mailstore.Store
	// Domains are the local mail domains (required).
	Domains []string
	// Hostname is the server's name in the greeting and Received headers;
	// "" means Domains[0].
	Hostname string
	// Submission makes a submission server (AUTH required, relaying to the
	// queue); otherwise an inbound one.
	Submission bool
	// Queue takes mail for other domains (submission only); nil refuses it.
	Queue *queue.Queue
	// TLSConfig enables STARTTLS; nil disables it.
	TLSConfig *tls.Config
	// InsecureAuth allows AUTH without TLS (loopback tests only).
	InsecureAuth bool
	// MaxMessageBytes limits a message; zero means 50 MiB.
	MaxMessageBytes int64
	// MaxRecipients limits the recipients of one message; zero means 100.
	MaxRecipients int
	// MaxConnections caps the open connections; beyond it a client is
	// answered 421 and closed. Zero means 100.
	MaxConnections int
	// MaxTransfers caps the messages being received at once (DATA);
	// further ones wait, up to MaxTransfers more of them, for a free slot
	// (at most TransferWait), else get 451. Zero means 8.
	MaxTransfers int
	// TransferWait bounds the wait for a transfer slot; zero means one
	// minute.
	TransferWait time.Duration
	// Auth rate-limits AUTH per remote host and per account (share the
	// one IMAP uses, so that guesses add up); nil means one of its own.
	Auth *guard.Auth
	// Check, if set, checks inbound mail (SPF, DKIM, DMARC): the message
	// gets its Authentication-Results header, and is refused (550 5.7.1),
	// filed to Junk or delivered as the verdict says. Inbound only.
	Check *msgauth.Checker
	// DKIM, if set, signs mail for remote recipients with the keys of the
	// domain of its From: header. Submission only.
	DKIM *msgauth.Keyring
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

// Server is an SMTP server.
type Server struct {
	opts      Options
	log       *slog.Logger
	srv       *smtp.Server
	conns     chan struct{} // one token per open connection
	transfers *slots
	// ctx ends with Close, for logins waiting on the rate limit.
	ctx    context.Context
	cancel context.CancelFunc
}

// New makes a server.
func New(opts Options) *Server {
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = 50 << 20
	}
	if opts.MaxRecipients == 0 {
		opts.MaxRecipients = 100
	}
	if opts.MaxConnections == 0 {
		opts.MaxConnections = 100
	}
	if opts.MaxTransfers == 0 {
		opts.MaxTransfers = 8
	}
	if opts.TransferWait == 0 {
		opts.TransferWait = time.Minute
	}
	if opts.Hostname == "" && len(opts.Domains) > 0 {
		opts.Hostname = opts.Domains[0]
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Auth == nil {
		opts.Auth = guard.NewAuth(guard.AuthOptions{})
	}
	s := &Server{opts: opts, log: log, conns: make(chan struct{}, opts.MaxConnections),
		transfers: newSlots(opts.MaxTransfers, opts.MaxTransfers, opts.TransferWait)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		ctx, cancel := context.WithCancel(s.ctx)
		return &session{s: s, conn: c, ctx: ctx, cancel: cancel}, nil
	}))
	srv.Domain = opts.Hostname
	srv.TLSConfig = opts.TLSConfig
	srv.AllowInsecureAuth = opts.InsecureAuth
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.MaxRecipients = opts.MaxRecipients
	srv.MaxLineLength = 4000
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = 5 * time.Minute
	srv.ErrorLog = printfLogger{log}
	s.srv = srv
	return s
}

type printfLogger struct{ log *slog.Logger }

func (l printfLogger) Printf(format string, v ...any) {
	l.log.Warn("smtp: " + fmt.Sprintf(format, v...))
}
func (l printfLogger) Println(v ...any) { l.log.Warn("smtp: " + fmt.Sprint(v...)) }

// Serve accepts connections on ln until Close, at most MaxConnections at
// once. A listener that hands out TLS connections (implicit TLS, as the
// connection guard does for port 465) is served without this cap: go-smtp
// must see *tls.Conn, and the guard caps those connections itself.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(&capListener{Listener: ln, conns: s.conns, log: s.log})
}

// Close stops the server.
func (s *Server) Close() error {
	s.cancel()
	return s.srv.Close()
}

func (s *Server) isLocal(domain string) bool {
	for _, d := range s.opts.Domains {
		if strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}

type session struct {
	s    *Server
	conn *smtp.Conn
	user string // authenticated user, submission only
	// ctx ends when the connection does (Logout) or the server closes:
	// a login's wait and a delivery's commit stop with it.
	ctx    context.Context
	cancel context.CancelFunc

	from   string
	size   int64    // the size MAIL FROM announced (SIZE=), or 0
	local  []string // local user names, deduplicated
	remote []string // addresses for the queue
}

var _ smtp.AuthSession = (*session)(nil)

func errorf(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

func remoteHost(c *smtp.Conn) string {
	h, _, err := net.SplitHostPort(c.Conn().RemoteAddr().String())
	if err != nil {
		return c.Conn().RemoteAddr().String()
	}
	return h
}

// AuthMechanisms offers PLAIN on submission only (inbound takes no AUTH).
func (se *session) AuthMechanisms() []string {
	if !se.s.opts.Submission {
		return nil
	}
	return []string{sasl.Plain}
}

// Auth checks PLAIN credentials against the store's users through the rate
// limit of Options.Auth (mailauth.Login): a refusal unchecked is 454
// 4.7.0, a wrong password 535.
func (se *session) Auth(mech string) (sasl.Server, error) {
	if !se.s.opts.Submission || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return smtp.ErrAuthFailed
		}
		remote := se.conn.Conn().RemoteAddr().String()
		name, account, err := mailauth.Login(se.ctx, se.s.opts.Auth, se.s.opts.Mail.Backing(), se.s.opts.Domains, remote, username, password)
		switch {
		case errors.Is(err, guard.ErrBusy):
			se.s.log.Warn("smtp: login refused: too many attempts in flight", "user", account, "remote", remote)
			return errorf(454, smtp.EnhancedCode{4, 7, 0}, "Too many login attempts in progress; try again later")
		case errors.Is(err, store.ErrAuthFailed):
			se.s.log.Info("smtp: login failed", "user", account, "remote", remote)
			return smtp.ErrAuthFailed
		case err != nil:
			se.s.log.Error("smtp: login", "user", account, "remote", remote, "err", err)
			return errorf(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure")
		}
		se.user = name
		guard.LoggedIn(se.conn.Conn())
		return nil
	}), nil
}

// Mail takes the envelope sender: on submission the user's own address
// only, after AUTH.
func (se *session) Mail(from string, opts *smtp.MailOptions) error {
	if se.s.opts.Submission {
		if se.user == "" {
			return smtp.ErrAuthRequired
		}
		// A user sends as themselves only.
		if mailauth.UserName(from, se.s.opts.Domains) != se.user {
			return errorf(553, smtp.EnhancedCode{5, 7, 1}, "Sender address %q not owned by %s (send as %s)", from, se.user, ownAddresses(se.user, se.s.opts.Domains))
		}
	} else if from != "" {
		if err := checkPath(from); err != nil {
			return errorf(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address: %v", err)
		}
	}
	if opts != nil && opts.Size > se.s.opts.MaxMessageBytes {
		return errorf(552, smtp.EnhancedCode{5, 3, 4}, "Message too big")
	}
	se.from = from
	if opts != nil {
		se.size = opts.Size
	}
	return nil
}

// Rcpt takes a recipient: a local user (user+tag too), or on submission
// any remote address (for the queue); inbound never relays.
func (se *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	local, dom, ok := parseRecipient(to)
	if !ok {
		return errorf(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address")
	}
	if !se.s.isLocal(dom) {
		if !se.s.opts.Submission || se.s.opts.Queue == nil {
			return errorf(554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied")
		}
		se.remote = append(se.remote, to)
		return nil
	}
	// Subaddresses (alice+tag) go to alice (parseRecipient).
	if store.ValidateUserName(local) != nil {
		return errorf(550, smtp.EnhancedCode{5, 1, 1}, "No such user")
	}
	su, err := se.s.opts.Mail.Backing().LookupUser(local)
	if err != nil {
		return errorf(550, smtp.EnhancedCode{5, 1, 1}, "No such user")
	}
	for _, l := range se.local {
		if l == local {
			return nil
		}
	}
	if su.Quota != (store.Quota{}) {
		// Refused here, this recipient only, when the message would
		// not fit: its announced SIZE, or nothing more at all.
		u, err := se.s.opts.Mail.User(se.ctx, local)
		if err != nil {
			return errorf(451, smtp.EnhancedCode{4, 3, 0}, "Mailbox unavailable")
		}
		// A message has at least one byte: at the STORAGE limit
		// exactly, nothing fits.
		if err := u.CheckQuota(max(se.size, 1)); err != nil {
			return se.quotaError(local, err, true)
		}
	}
	se.local = append(se.local, local)
	return nil
}

// Data stores the message for every local recipient and queues it for the
// remote ones, in one durable commit, before the 250. The message is
// spooled to the data disk as it arrives and stored from there: a message
// costs a few buffers of memory whatever its size (store.Spool).
func (se *session) Data(r io.Reader) error {
	if len(se.local) == 0 && len(se.remote) == 0 {
		return errorf(503, smtp.EnhancedCode{5, 5, 1}, "No valid recipients")
	}
	release, err := se.s.transfers.acquire()
	if err != nil {
		return err
	}
	defer release()
	st := se.s.opts.Mail.Backing()
	sp, err := st.NewSpool()
	if err != nil {
		return se.storeError("spooling a message", err)
	}
	defer sp.Close()
	var hdr bytes.Buffer
	se.received(&hdr)
	check := se.s.opts.Check != nil && !se.s.opts.Submission
	junk := false
	if check {
		// The message first, alone, to be checked; then the headers
		// that say what was found, and the message again.
		body, err := st.NewSpool()
		if err != nil {
			return se.storeError("spooling a message", err)
		}
		defer body.Close()
		if err := se.spool(body, r); err != nil {
			return err
		}
		if body.Size() == 0 {
			return errorf(554, smtp.EnhancedCode{5, 6, 0}, "Empty message")
		}
		v := se.s.opts.Check.Check(se.ctx, msgauth.Input{IP: net.ParseIP(remoteHost(se.conn)), Helo: se.conn.Hostname(),
			MailFrom: se.from, Message: body.Reader})
		se.s.log.Info("smtp: checked", "remote", remoteHost(se.conn), "from", se.from, "spf", v.SPF, "dmarc", v.DMARC, "policy", v.Policy, "action", v.Action, "reason", v.Reason)
		switch v.Action {
		case msgauth.Reject:
			return errorf(550, smtp.EnhancedCode{5, 7, 1}, "%s", v.Reason)
		case msgauth.Junk:
			junk = true
		}
		if _, err := io.WriteString(sp, v.Header); err != nil {
			return se.storeError("spooling a message", err)
		}
		if _, err := sp.Write(hdr.Bytes()); err != nil {
			return se.storeError("spooling a message", err)
		}
		// Authentication-Results fields in the message that claim to be
		// ours are forgeries: removed (RFC 8601 5).
		if err := copyWithoutAR(sp, body.Reader(), se.s.opts.Hostname); err != nil {
			return se.storeError("spooling a message", err)
		}
	} else {
		if _, err := sp.Write(hdr.Bytes()); err != nil {
			return se.storeError("spooling a message", err)
		}
		if err := se.spool(sp, r); err != nil {
			return err
		}
		if sp.Size() == int64(hdr.Len()) {
			return errorf(554, smtp.EnhancedCode{5, 6, 0}, "Empty message")
		}
	}
	if se.s.opts.Submission {
		if err := CheckFrom(io.NewSectionReader(sp, int64(hdr.Len()), sp.Size()-int64(hdr.Len())), se.user, se.s.opts.Domains); err != nil {
			return errorf(550, smtp.EnhancedCode{5, 7, 1}, "%s", err.Error())
		}
	}
	var raw []byte
	if len(se.remote) > 0 {
		// The queue keeps a message as one item from memory
		// (queue.Enqueue); only authenticated users send to remote
		// addresses, within MaxMessageBytes.
		raw = make([]byte, sp.Size())
		if _, err := io.ReadFull(sp.Reader(), raw); err != nil {
			return se.storeError("reading the spooled message", err)
		}
		if se.s.opts.DKIM != nil && se.s.opts.Submission {
			sig, err := se.s.opts.DKIM.Sign(raw, se.s.opts.Domains)
			if err != nil {
				se.s.log.Error("smtp: DKIM signing", "err", err)
				return errorf(451, smtp.EnhancedCode{4, 7, 0}, "Cannot sign the message now; try again later")
			}
			raw = append(sig, raw...)
		}
	}
	ctx := se.ctx
	users := make([]*mailstore.User, 0, len(se.local))
	for _, name := range se.local {
		u, err := se.s.opts.Mail.User(ctx, name)
		if err != nil {
			return errorf(451, smtp.EnhancedCode{4, 3, 0}, "Mailbox unavailable")
		}
		users = append(users, u)
	}
	// A recipient whose quota the message would exceed (the size was not
	// known at RCPT): refused alone when alone; with others, the whole
	// message is refused for now (452), as SMTP has one answer to DATA
	// for all recipients and none may be lost.
	var over []string
	var overErr error
	for _, u := range users {
		if err := u.CheckQuota(sp.Size()); mailstore.IsOverQuota(err) {
			over, overErr = append(over, u.Name), err
		}
	}
	if len(over) > 0 {
		return se.quotaError(strings.Join(over, ", "), overErr, len(over) == len(users) && len(se.remote) == 0)
	}
	author := se.user
	err = se.s.opts.Mail.Update(ctx, author, fmt.Sprintf("mail: deliver to %d local, %d remote", len(users), len(se.remote)), func(w *mailstore.Writer) error {
		for _, u := range users {
			inbox, err := u.Mailbox("INBOX")
			if junk {
				inbox, err = junkBox(w, u)
			}
			if err != nil {
				return err
			}
			if _, err := w.AppendSpool(inbox, sp, nil, time.Time{}); err != nil {
				return err
			}
		}
		if len(se.remote) > 0 {
			if err := st.CheckSpace(int64(len(raw))); err != nil {
				return err
			}
			if _, err := queue.Enqueue(w.Tx(), se.from, se.remote, raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return se.storeError("storing a message", err)
	}
	if len(se.remote) > 0 {
		se.s.opts.Queue.Kick()
	}
	se.s.log.Debug("smtp: accepted", "local", len(users), "remote", len(se.remote), "bytes", sp.Size())
	return nil
}

// spool copies the message r into sp, mapping what the SMTP layer says
// (too big, a bad line) to its answers.
func (se *session) spool(sp *store.Spool, r io.Reader) error {
	if _, err := io.Copy(sp, r); err != nil {
		var se2 *smtp.SMTPError
		if errors.As(err, &se2) {
			return se2
		}
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return errorf(552, smtp.EnhancedCode{5, 3, 4}, "Message too big")
		}
		return se.storeError("spooling a message", err)
	}
	return nil
}

// copyWithoutAR copies the message src to dst without the
// Authentication-Results header fields whose authserv-id is id. It reads
// the header in chunks: a long line costs no more memory than a short one.
func copyWithoutAR(dst io.Writer, src io.Reader, id string) error {
	br := bufio.NewReaderSize(src, 8<<10)
	dropping, lineStart := false, true
	for {
		chunk, err := br.ReadSlice('\n')
		whole := err == nil
		if err != nil && err != bufio.ErrBufferFull && err != io.EOF {
			return err
		}
		if lineStart && len(chunk) > 0 {
			switch {
			case chunk[0] == ' ' || chunk[0] == '\t':
				// A continuation: dropped with its field.
			case len(bytes.TrimRight(chunk, "\r\n")) == 0:
				// The end of the header: the body as it is.
				if _, err := dst.Write(chunk); err != nil {
					return err
				}
				_, err := io.Copy(dst, br)
				return err
			default:
				dropping = isARFor(chunk, id)
			}
		}
		if !dropping {
			if _, err := dst.Write(chunk); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		lineStart = whole
	}
}

// isARFor reports whether a header line is an Authentication-Results
// field of authserv-id id.
func isARFor(line []byte, id string) bool {
	const name = "authentication-results:"
	if len(line) < len(name) || !strings.EqualFold(string(line[:len(name)]), name) {
		return false
	}
	v := strings.TrimLeft(string(line[len(name):]), " \t")
	end := strings.IndexAny(v, "; \t\r\n")
	if end < 0 {
		end = len(v)
	}
	return strings.EqualFold(v[:end], id)
}

// junkBox is u's Junk mailbox, made if it is missing.
func junkBox(w *mailstore.Writer, u *mailstore.User) (*mailstore.Mailbox, error) {
	mb, err := u.Mailbox("Junk")
	if errors.Is(err, mailstore.ErrNoMailbox) {
		return w.Create(u, "Junk", imap.MailboxAttrJunk)
	}
	return mb, err
}

// checkPath checks the syntax of a reverse path (RFC 5321 4.1.2):
// local@domain, with a domain name of letters, digits and hyphens in
// labels (or an address literal), and a local part without controls or
// spaces.
func checkPath(p string) error {
	at := strings.LastIndexByte(p, '@')
	if at <= 0 || at == len(p)-1 {
		return errors.New("not local@domain")
	}
	local, domain := p[:at], p[at+1:]
	if len(local) > 64 || len(domain) > 255 {
		return errors.New("too long")
	}
	for _, r := range local {
		if r <= ' ' || r == 0x7f {
			return errors.New("a space or control in the local part")
		}
	}
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		lit := strings.TrimPrefix(domain[1:len(domain)-1], "IPv6:")
		if net.ParseIP(lit) == nil {
			return fmt.Errorf("bad address literal %q", domain)
		}
		return nil
	}
	for _, l := range strings.Split(strings.TrimSuffix(domain, "."), ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("bad domain %q", domain)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80) {
				return fmt.Errorf("bad domain %q", domain)
			}
		}
	}
	return nil
}

// quotaError answers a message that does not fit in a user's quota
// (mailstore.QuotaError), when each of its recipients it refuses (all) or
// when others would get it (a 452 for the whole message, to try again).
//
// 552 5.2.2 ("mailbox full"): RFC 5321 4.2.2 gives 552 for "exceeded
// storage allocation", a user's own limit, as against 452 "insufficient
// system storage" (the data disk full, which this server answers 452
// 4.3.1); RFC 3463 allows X.2.2 as permanent or transient. Permanent, as
// Dovecot and Postfix answer by default: the sender learns at once that
// the mail did not arrive, rather than after days of retries that only
// the user's deleting mail could end.
func (se *session) quotaError(who string, err error, all bool) error {
	if !mailstore.IsOverQuota(err) {
		return se.storeError("checking a quota", err)
	}
	se.s.log.Info("smtp: over quota", "user", who, "err", err)
	if !all {
		return errorf(452, smtp.EnhancedCode{4, 2, 2}, "Mailbox full: %s over quota; try again later", who)
	}
	return errorf(552, smtp.EnhancedCode{5, 2, 2}, "Mailbox full: %s over quota", who)
}

// storeError answers a failure to store a message: 452 when the data disk
// is full (RFC 3463 4.3.1), else 451.
func (se *session) storeError(what string, err error) error {
	if mailstore.IsOverQuota(err) {
		// Another delivery took the room between the check and the
		// commit: the mailbox may be full, or not, on the next try.
		return errorf(452, smtp.EnhancedCode{4, 2, 2}, "Mailbox full; try again later")
	}
	if errors.Is(err, store.ErrNoSpace) || errors.Is(err, mailstore.ErrDiskFull) || errors.Is(err, syscall.ENOSPC) {
		se.s.log.Warn("smtp: "+what+": the data disk is full", "err", err)
		return errorf(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage; try again later")
	}
	se.s.log.Warn("smtp: "+what, "err", err)
	return errorf(451, smtp.EnhancedCode{4, 3, 0}, "Could not store the message; try again")
}

// received writes the Received header (RFC 5321 4.4).
func (se *session) received(b *bytes.Buffer) {
	proto := "ESMTP"
	if _, ok := se.conn.TLSConnectionState(); ok {
		proto += "S"
	}
	if se.user != "" {
		proto += "A"
	}
	helo := strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' {
			return -1
		}
		return r
	}, se.conn.Hostname())
	fmt.Fprintf(b, "Received: from %s (%s)\r\n\tby %s with %s;\r\n\t%s\r\n",
		helo, remoteHost(se.conn), se.s.opts.Hostname, proto, time.Now().Format(time.RFC1123Z))
}

// Reset forgets the current transaction.
func (se *session) Reset() {
	se.from = ""
	se.size = 0
	se.local = nil
	se.remote = nil
}

// Logout ends the session.
func (se *session) Logout() error {
	se.cancel()
	return nil
}
