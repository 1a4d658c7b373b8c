// Package queue is the outbound mail queue: messages for other domains wait
// in the store (queue/xx/yy/ID.json and ID.eml, written in the same commit
// as the SMTP 250 that accepted them) until a worker has delivered them to
// the recipients' MX hosts, retrying with backoff, and bouncing to the sender
// what fails for good or for longer than the retry window.
//
// Create a Queue with New, give it the writes of accepted messages with
// Enqueue (inside a mailstore commit) and Kick, and run it with Run until its
// context ends.
package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/mtasts"
	"github.com/nymote/nymote/store"
)

// Prefix is the store folder of the queue.
const Prefix = "queue"

// Resolver finds mail exchangers. *net.Resolver is one; tests hand one whose
// Dial points at a test DNS server.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Options configure a Queue.
type Options struct {
	// Mail is the mailstore (bounces to local senders go to their INBOX).
	Mail *mailstore.Store
	// Domains are the local mail domains; Domains[0] signs bounces.
	Domains []string
	// Hostname is sent in EHLO; "" means Domains[0].
	Hostname string
	// Resolver looks up MX records; nil means net.DefaultResolver.
	Resolver Resolver
	// Port is the SMTP port of remote hosts; "" means "25".
	Port string
	// Dial connects to remote hosts; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is used for opportunistic STARTTLS; nil means one that
	// does not verify (as MTAs do without DANE or MTA-STS).
	TLSConfig *tls.Config
	// STS, if set, finds the recipient domain's MTA-STS policy
	// (mtasts.Fetcher.Policy). Under an enforce policy mail goes only to
	// the MX hosts it names, over STARTTLS with a certificate valid for
	// the host (verified against STSRootCAs), else it waits in the queue:
	// never in the clear. A policy that cannot be found is no policy (RFC
	// 8461 5.1), logged.
	STS func(ctx context.Context, domain string) (*mtasts.Policy, error)
	// STSRootCAs verify MX certificates under enforce; nil: the system's.
	STSRootCAs *x509.CertPool
	// Backoff is the wait after each failed attempt (the last repeats);
	// nil means 1m, 5m, 15m, 30m, 1h, 2h, 4h.
	Backoff []time.Duration
	// RetryWindow is how long a message is retried before it bounces;
	// zero means 5 days.
	RetryWindow time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

// Entry is a queued message's state, as its .json item holds it.
type Entry struct {
	ID       string      `json:"-"`
	From     string      `json:"from"`
	Rcpts    []Recipient `json:"rcpts"`
	Created  time.Time   `json:"created"`
	Next     time.Time   `json:"next"`
	Attempts int         `json:"attempts"`
}

// Recipient is one recipient of a queued message.
type Recipient struct {
	Addr string `json:"addr"`
	// Done: delivered. Failed: failed for good (bounced).
	Done   bool   `json:"done,omitempty"`
	Failed bool   `json:"failed,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Queue delivers queued messages.
type Queue struct {
	opts Options
	st   *store.Store
	log  *slog.Logger
	kick chan struct{}

	mu       sync.Mutex
	inFlight map[string]bool
}

// New makes a queue over opts.Mail's store.
func New(opts Options) *Queue {
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.Port == "" {
		opts.Port = "25"
	}
	if opts.Dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second}
		opts.Dial = d.DialContext
	}
	if opts.TLSConfig == nil {
		opts.TLSConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	}
	if opts.Backoff == nil {
		opts.Backoff = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour}
	}
	if opts.RetryWindow == 0 {
		opts.RetryWindow = 5 * 24 * time.Hour
	}
	if opts.Hostname == "" && len(opts.Domains) > 0 {
		opts.Hostname = opts.Domains[0]
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Queue{opts: opts, st: opts.Mail.Backing(), log: log, kick: make(chan struct{}, 1), inFlight: map[string]bool{}}
}

func itemBase(id string) string { return Prefix + "/" + path.Dir(store.Shard(id)) + "/" + id }

// Enqueue writes a message for remote recipients into the transaction of
// an accepting commit. Call Kick after the commit.
func Enqueue(tx *store.Tx, from string, rcpts []string, raw []byte) (string, error) {
	var b [10]byte
	rand.Read(b[:])
	id := time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
	e := Entry{From: from, Created: time.Now().UTC()}
	for _, r := range rcpts {
		e.Rcpts = append(e.Rcpts, Recipient{Addr: r})
	}
	data, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	base := itemBase(id)
	if err := tx.Put(base+".eml", raw); err != nil {
		return "", err
	}
	return id, tx.Put(base+".json", data)
}

// Kick makes the worker look at the queue now.
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Entries lists the queue.
func (q *Queue) Entries() ([]Entry, error) { return List(q.st, q.log) }

// List lists the queue of a store.
func List(st *store.Store, log *slog.Logger) ([]Entry, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sn, err := st.Snapshot("")
	if err != nil {
		return nil, err
	}
	items, err := sn.List(Prefix)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, it := range items {
		if !strings.HasSuffix(it.Path, ".json") {
			continue
		}
		data, err := sn.Read(it.Path)
		if err != nil {
			return nil, err
		}
		var e Entry
		if err := json.Unmarshal(data, &e); err != nil {
			log.Warn("mail queue: skipping a damaged entry", "path", it.Path, "err", err)
			continue
		}
		e.ID = strings.TrimSuffix(path.Base(it.Path), ".json")
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Run delivers due messages until ctx ends.
func (q *Queue) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-q.kick:
		}
		entries, err := q.Entries()
		if err != nil {
			q.log.Warn("mail queue: listing", "err", err)
		}
		next := time.Now().Add(time.Minute)
		for _, e := range entries {
			if e.Next.After(time.Now()) {
				if e.Next.Before(next) {
					next = e.Next
				}
				continue
			}
			q.mu.Lock()
			busy := q.inFlight[e.ID]
			q.inFlight[e.ID] = true
			q.mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			go func(e Entry) {
				defer wg.Done()
				q.attempt(ctx, e)
				q.mu.Lock()
				delete(q.inFlight, e.ID)
				q.mu.Unlock()
				q.Kick()
			}(e)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(next))
	}
}

// attempt tries every pending recipient of e once and records the outcome.
func (q *Queue) attempt(ctx context.Context, e Entry) {
	base := itemBase(e.ID)
	raw, err := q.st.Read("", base+".eml")
	if err != nil {
		q.log.Warn("mail queue: reading a message", "id", e.ID, "err", err)
		return
	}
	byDomain := map[string][]int{}
	for i, r := range e.Rcpts {
		if r.Done || r.Failed {
			continue
		}
		byDomain[domainOf(r.Addr)] = append(byDomain[domainOf(r.Addr)], i)
	}
	for dom, idx := range byDomain {
		var addrs []string
		for _, i := range idx {
			addrs = append(addrs, e.Rcpts[i].Addr)
		}
		results := q.deliverDomain(ctx, dom, e.From, addrs, raw)
		for k, i := range idx {
			res := results[k]
			switch {
			case res == nil:
				e.Rcpts[i].Done = true
				e.Rcpts[i].Error = ""
				q.log.Info("mail queue: delivered", "id", e.ID, "domain", dom)
			case isPermanent(res):
				e.Rcpts[i].Failed = true
				e.Rcpts[i].Error = res.Error()
				q.log.Info("mail queue: failed for good", "id", e.ID, "domain", dom, "err", res)
			default:
				e.Rcpts[i].Error = res.Error()
				q.log.Info("mail queue: will retry", "id", e.ID, "domain", dom, "err", res)
			}
		}
	}
	e.Attempts++
	expired := time.Since(e.Created) > q.opts.RetryWindow
	var bounce []Recipient
	pending := 0
	for i := range e.Rcpts {
		r := &e.Rcpts[i]
		if !r.Done && !r.Failed && expired {
			r.Failed = true
			if r.Error == "" {
				r.Error = "retry window passed"
			}
		}
		if r.Failed && !r.Done {
			bounce = append(bounce, *r)
		}
		if !r.Done && !r.Failed {
			pending++
		}
	}
	b := q.opts.Backoff[min(e.Attempts-1, len(q.opts.Backoff)-1)]
	e.Next = time.Now().Add(b)
	// A local sender's mailbox is looked up before the commit: User may
	// need the mailstore's write lock, which Update holds.
	var sender *mailstore.User
	if len(bounce) > 0 && q.isLocal(e.From) {
		name := strings.ToLower(e.From[:strings.LastIndexByte(e.From, '@')])
		if sender, err = q.opts.Mail.User(ctx, name); err != nil {
			q.log.Warn("mail queue: bounce to an unknown local sender dropped", "id", e.ID)
		}
	}
	err = q.opts.Mail.Update(ctx, "", "mail queue: attempt "+e.ID, func(w *mailstore.Writer) error {
		tx := w.Tx()
		if ok, err := tx.Exists(base + ".json"); err != nil || !ok {
			return err // gone meanwhile
		}
		if len(bounce) > 0 && e.From != "" {
			if err := q.bounce(w, e, sender, bounce, raw); err != nil {
				return err
			}
		}
		if pending == 0 {
			if err := tx.Delete(base + ".json"); err != nil {
				return err
			}
			return tx.Delete(base + ".eml")
		}
		// Bounced recipients are done with: drop them.
		var keep []Recipient
		for _, r := range e.Rcpts {
			if !r.Failed {
				keep = append(keep, r)
			}
		}
		e.Rcpts = keep
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return tx.Put(base+".json", data)
	})
	if err != nil {
		q.log.Warn("mail queue: recording an attempt", "id", e.ID, "err", err)
	}
}

func (q *Queue) isLocal(addr string) bool {
	for _, d := range q.opts.Domains {
		if strings.EqualFold(domainOf(addr), d) {
			return true
		}
	}
	return false
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

type permanentError struct{ error }

func isPermanent(err error) bool {
	var pe permanentError
	if errors.As(err, &pe) {
		return true
	}
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}

// deliverDomain delivers to the recipients of one domain through its MX
// hosts (or the domain itself when it has none), returning one result per
// recipient.
func (q *Queue) deliverDomain(ctx context.Context, domain, from string, rcpts []string, raw []byte) []error {
	results := make([]error, len(rcpts))
	fill := func(err error) []error {
		for i := range results {
			results[i] = err
		}
		return results
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	mxs, err := q.opts.Resolver.LookupMX(lctx, domain)
	cancel()
	var hosts []string
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			hosts = []string{domain} // no MX: the domain itself (RFC 5321 5.1)
		} else {
			return fill(fmt.Errorf("MX lookup for %s: %w", domain, err))
		}
	}
	sort.Slice(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	for _, mx := range mxs {
		h := strings.TrimSuffix(mx.Host, ".")
		if h == "" {
			// Null MX (RFC 7505): the domain takes no mail.
			return fill(permanentError{fmt.Errorf("%s accepts no mail (null MX)", domain)})
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		hosts = []string{domain}
	}
	enforce := false
	if q.opts.STS != nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		p, err := q.opts.STS(pctx, domain)
		cancel()
		if err != nil {
			q.log.Info("mail queue: no MTA-STS policy to go by", "domain", domain, "err", err)
		}
		if p != nil && p.Mode == mtasts.Enforce {
			enforce = true
			var ok []string
			for _, h := range hosts {
				if p.Matches(h) {
					ok = append(ok, h)
				}
			}
			if len(ok) == 0 {
				return fill(fmt.Errorf("no MX host of %s (%s) is in its MTA-STS policy (%s)", domain, strings.Join(hosts, ", "), strings.Join(p.MX, ", ")))
			}
			hosts = ok
		}
	}
	var lastErr error
	for _, h := range hosts {
		res, err := q.deliverHost(ctx, h, from, rcpts, raw, enforce)
		if err == nil {
			return res
		}
		lastErr = err
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			return fill(err) // a permanent refusal of the whole message
		}
	}
	return fill(lastErr)
}

// deliverHost makes one SMTP transaction. err is for the whole message
// (connection, MAIL, DATA); per-recipient refusals are in res.
//
// With requireTLS (an MTA-STS enforce policy) the transaction happens over
// STARTTLS with a certificate valid for host, or not at all.
func (q *Queue) deliverHost(ctx context.Context, host, from string, rcpts []string, raw []byte, requireTLS bool) (res []error, err error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ips, err := q.opts.Resolver.LookupHost(dctx, host)
	if err != nil {
		return nil, fmt.Errorf("address of %s: %w", host, err)
	}
	dial := func() (conn net.Conn, err error) {
		for _, ip := range ips {
			conn, err = q.opts.Dial(dctx, "tcp", net.JoinHostPort(ip, q.opts.Port))
			if err == nil {
				break
			}
		}
		if err != nil {
			return nil, err
		}
		if dl, ok := dctx.Deadline(); ok {
			conn.SetDeadline(dl)
		}
		return conn, nil
	}
	// Opportunistic TLS: STARTTLS when offered, else (or if it fails) the
	// same transaction in the clear, as MTAs do without DANE or MTA-STS.
	conn, err := dial()
	if err != nil {
		return nil, err
	}
	cfg := q.opts.TLSConfig.Clone()
	cfg.ServerName = host
	if requireTLS {
		cfg = &tls.Config{ServerName: host, RootCAs: q.opts.STSRootCAs, MinVersion: tls.VersionTLS12}
	}
	c, err := smtp.NewClientStartTLS(conn, cfg)
	if err == nil {
		err = c.Hello(q.opts.Hostname)
	} else if requireTLS {
		conn.Close()
		q.log.Info("mail queue: MTA-STS enforce: no valid TLS, not sending in the clear", "host", host, "err", err)
		return nil, fmt.Errorf("%s offers no valid TLS, which its domain's MTA-STS policy requires: %w", host, err)
	} else {
		q.log.Debug("mail queue: no TLS", "host", host, "err", err)
		if conn, err = dial(); err != nil {
			return nil, err
		}
		c = smtp.NewClient(conn)
		err = c.Hello(q.opts.Hostname)
	}
	defer c.Close()
	if err != nil {
		return nil, err
	}
	if err := c.Mail(from, nil); err != nil {
		return nil, err
	}
	res = make([]error, len(rcpts))
	accepted := 0
	for i, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			res[i] = err
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return res, nil
	}
	wc, err := c.Data()
	if err != nil {
		return nil, err
	}
	if _, err := wc.Write(raw); err != nil {
		return nil, err
	}
	if err := wc.Close(); err != nil {
		return nil, err
	}
	c.Quit()
	return res, nil
}

// bounce tells the sender which recipients failed, in the same commit that
// drops them: into the sender's INBOX when the sender is local, else as a
// new queued message with an empty sender (which never bounces again).
func (q *Queue) bounce(w *mailstore.Writer, e Entry, sender *mailstore.User, failed []Recipient, raw []byte) error {
	dom := "localhost"
	if len(q.opts.Domains) > 0 {
		dom = q.opts.Domains[0]
	}
	var b bytes.Buffer
	boundary := "bounce-" + e.ID
	fmt.Fprintf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", dom)
	fmt.Fprintf(&b, "To: <%s>\r\n", e.From)
	fmt.Fprintf(&b, "Subject: Undelivered Mail Returned to Sender\r\n")
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Auto-Submitted: auto-replied\r\n")
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=delivery-status; boundary=%q\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", boundary)
	fmt.Fprintf(&b, "Your message could not be delivered to these recipients:\r\n\r\n")
	for _, r := range failed {
		fmt.Fprintf(&b, "  <%s>: %s\r\n", r.Addr, strings.ReplaceAll(r.Error, "\n", " "))
	}
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary)
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\r\n", q.opts.Hostname)
	for _, r := range failed {
		fmt.Fprintf(&b, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: 5.0.0\r\n", r.Addr)
	}
	hdr := raw
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		hdr = raw[:i+2]
	} else if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		hdr = raw[:i+1]
	}
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary)
	b.Write(hdr)
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)

	if q.isLocal(e.From) {
		if sender == nil {
			return nil
		}
		inbox, err := sender.Mailbox("INBOX")
		if err != nil {
			return err
		}
		_, err = w.AppendNotice(inbox, b.Bytes()) // even over the sender's quota
		return err
	}
	_, err := Enqueue(w.Tx(), "", []string{e.From}, b.Bytes())
	return err
}
