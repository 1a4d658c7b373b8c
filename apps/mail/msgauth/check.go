package msgauth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// Action is what to do with an inbound message.
type Action int

const (
	// Deliver to the recipients' inboxes.
	Deliver Action = iota
	// Junk: deliver to the recipients' Junk mailboxes (DMARC
	// p=quarantine failures).
	Junk
	// Reject at SMTP time with a 550 5.7.1 (DMARC p=reject failures,
	// and mail claiming a local domain without passing). A DNS failure
	// finding the policy (dmarc=temperror) delivers: mail is not held
	// hostage to the receiver's DNS.
	Reject
)

// Checker checks inbound mail: SPF of the envelope sender (or HELO name),
// DKIM signatures and the DMARC policy of the From: domain.
type Checker struct {
	// Resolver is the DNS; nil means net.DefaultResolver.
	Resolver Resolver
	// Domains are the local domains: mail whose From: or envelope sender
	// claims one must pass DKIM or SPF aligned with it, whatever DNS says
	// (its DMARC record may not be published yet).
	Domains []string
	// Keyring, if set, answers DKIM key queries for the local domains
	// without DNS.
	Keyring *Keyring
	// Hostname is the authserv-id of the Authentication-Results header.
	Hostname string
	// Timeout bounds all the DNS of one check; zero: 20 seconds.
	Timeout time.Duration
	// MaxSignatures bounds the DKIM signatures verified; zero: 5.
	MaxSignatures int
}

// Input is what Check needs of a message: the client's address, its HELO
// name and envelope sender, and the message itself.
type Input struct {
	IP       net.IP
	Helo     string
	MailFrom string // "" for a bounce
	// Message reads the message from its first byte.
	Message func() io.Reader
}

// Verdict is what Check found.
type Verdict struct {
	Action Action
	// Reason says why, for the SMTP reply and the log.
	Reason string
	// Header is the Authentication-Results field, with its CRLF.
	Header string

	SPF   SPFResult
	DKIM  []DKIMResult
	DMARC string // pass, fail, none, temperror or permerror
	// Policy is the From: domain's DMARC policy ("" without one).
	Policy string
}

// DKIMResult is one signature's result.
type DKIMResult struct {
	Domain, Result, Reason string
}

// isLocal reports whether d is a local domain or under one.
func (c *Checker) isLocal(d string) bool {
	for _, l := range c.Domains {
		if strings.EqualFold(d, l) || strings.HasSuffix(strings.ToLower(d), "."+strings.ToLower(l)) {
			return true
		}
	}
	return false
}

// aligned reports whether a and b are aligned: equal (strict), or with the
// same organizational domain (relaxed; RFC 7489 3.1).
func aligned(a, b string, mode dmarc.AlignmentMode) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == b {
		return true
	}
	if mode == dmarc.AlignmentStrict {
		return false
	}
	return orgDomain(a) == orgDomain(b)
}

// orgDomain is d's organizational domain (RFC 7489 3.2), by the public
// suffix list.
func orgDomain(d string) string {
	o, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return o
}

type ctxResolver struct {
	ctx context.Context
	r   Resolver
	kr  *Keyring
}

func (r ctxResolver) lookupTXT(name string) ([]string, error) {
	if r.kr != nil {
		if txt, ok := r.kr.LookupTXT(name); ok {
			if len(txt) == 0 {
				return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
			}
			return txt, nil
		}
	}
	return r.r.LookupTXT(r.ctx, name)
}

// Check checks one message.
func (c *Checker) Check(ctx context.Context, in Input) Verdict {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := c.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	var v Verdict
	var results []authres.Result

	// SPF: of the envelope sender's domain, or of the HELO name for a
	// bounce (RFC 7208 2.4).
	spfDomain, sender := "", in.MailFrom
	if at := strings.LastIndexByte(in.MailFrom, '@'); at >= 0 {
		spfDomain = strings.ToLower(in.MailFrom[at+1:])
	} else {
		spfDomain = strings.ToLower(in.Helo)
		sender = "postmaster@" + spfDomain
	}
	var spfReason string
	if in.IP == nil {
		v.SPF, spfReason = SPFNone, "no client address"
	} else {
		v.SPF, spfReason = CheckSPF(ctx, res, in.IP, spfDomain, sender, in.Helo)
	}
	spfr := &authres.SPFResult{Value: authres.ResultValue(v.SPF), Reason: spfReason}
	if in.MailFrom != "" {
		spfr.From = in.MailFrom
	} else {
		spfr.Helo = in.Helo
	}
	results = append(results, spfr)

	// The From: domain.
	hdr, herr := textproto.NewReader(bufio.NewReader(in.Message())).ReadMIMEHeader()
	var fromDomain string
	var fromErr error
	if herr != nil {
		fromErr = fmt.Errorf("unreadable header: %v", herr)
	} else {
		fromDomain, fromErr = FromDomain(hdr)
	}

	// DKIM.
	max := c.MaxSignatures
	if max == 0 {
		max = 5
	}
	cr := ctxResolver{ctx: ctx, r: res, kr: c.Keyring}
	verifs, err := dkim.VerifyWithOptions(in.Message(), &dkim.VerifyOptions{LookupTXT: cr.lookupTXT, MaxVerifications: max})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		results = append(results, &authres.DKIMResult{Value: authres.ResultPermError, Reason: err.Error()})
		v.DKIM = append(v.DKIM, DKIMResult{Result: "permerror", Reason: err.Error()})
	}
	for _, vf := range verifs {
		r := DKIMResult{Domain: strings.ToLower(vf.Domain), Result: "pass"}
		switch {
		case vf.Err == nil:
		case dkim.IsTempFail(vf.Err):
			r.Result, r.Reason = "temperror", vf.Err.Error()
		case dkim.IsPermFail(vf.Err):
			r.Result, r.Reason = "permerror", vf.Err.Error()
		default:
			r.Result, r.Reason = "fail", vf.Err.Error()
		}
		v.DKIM = append(v.DKIM, r)
		results = append(results, &authres.DKIMResult{Value: authres.ResultValue(r.Result), Reason: r.Reason, Domain: r.Domain})
	}
	if len(verifs) == 0 && err == nil {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}

	// DMARC (RFC 7489 6.6).
	local := fromErr == nil && c.isLocal(fromDomain)
	var rec *dmarc.Record
	v.DMARC = "none"
	switch {
	case fromErr != nil:
		v.DMARC = "permerror"
		results = append(results, &authres.DMARCResult{Value: authres.ResultPermError, Reason: fromErr.Error()})
	default:
		var derr error
		rec, derr = c.lookupDMARC(ctx, res, fromDomain)
		switch {
		case derr != nil && !errors.Is(derr, dmarc.ErrNoPolicy):
			v.DMARC = "temperror"
		case rec != nil:
			v.Policy = string(rec.Policy)
			if !strings.EqualFold(orgDomain(fromDomain), fromDomain) && rec.SubdomainPolicy != "" {
				v.Policy = string(rec.SubdomainPolicy)
			}
		}
		pass := false
		var spfMode, dkimMode dmarc.AlignmentMode = dmarc.AlignmentRelaxed, dmarc.AlignmentRelaxed
		if rec != nil {
			spfMode, dkimMode = rec.SPFAlignment, rec.DKIMAlignment
		}
		if v.SPF == SPFPass && in.MailFrom != "" && aligned(spfDomain, fromDomain, spfMode) {
			pass = true
		}
		for _, d := range v.DKIM {
			if d.Result == "pass" && aligned(d.Domain, fromDomain, dkimMode) {
				pass = true
			}
		}
		switch {
		case pass:
			v.DMARC = "pass"
		case rec != nil:
			v.DMARC = "fail"
		}
		if rec != nil || v.DMARC == "temperror" || local {
			r := &authres.DMARCResult{Value: authres.ResultValue(v.DMARC), From: fromDomain}
			if v.Policy != "" && !pass {
				r.Reason = "p=" + v.Policy
			}
			results = append(results, r)
		}
		switch {
		case pass:
		case local:
			v.Action, v.Reason = Reject, fmt.Sprintf("the message claims to be from %s, a domain of this server, without passing DKIM or SPF", fromDomain)
		case v.DMARC == "temperror":
			// Unknown policy: deliver, but no pass.
		case v.Policy == string(dmarc.PolicyReject) && (rec.Percent == nil || *rec.Percent > 0):
			v.Action, v.Reason = Reject, fmt.Sprintf("DMARC policy of %s is reject, and the message fails it (SPF %s, no aligned DKIM signature)", fromDomain, v.SPF)
		case v.Policy == string(dmarc.PolicyQuarantine):
			v.Action, v.Reason = Junk, fmt.Sprintf("DMARC policy of %s is quarantine, and the message fails it", fromDomain)
		}
	}
	// A bounce or a sender claiming a local domain from outside must pass
	// for that domain too (the From: check covers the header).
	if v.Action == Deliver && spfDomain != "" && in.MailFrom != "" && c.isLocal(spfDomain) {
		ok := v.SPF == SPFPass
		for _, d := range v.DKIM {
			ok = ok || (d.Result == "pass" && aligned(d.Domain, spfDomain, dmarc.AlignmentRelaxed))
		}
		if !ok {
			v.Action, v.Reason = Reject, fmt.Sprintf("the envelope sender claims %s, a domain of this server, without passing DKIM or SPF", spfDomain)
		}
	}
	id := c.Hostname
	if id == "" {
		id = "localhost"
	}
	v.Header = foldHeader("Authentication-Results: " + authres.Format(id, results))
	return v
}

// lookupDMARC finds the DMARC record of the From: domain, or of its
// organizational domain (RFC 7489 6.6.3). A domain with several records
// or one without a valid p= has none (the RFC's "no DMARC processing").
func (c *Checker) lookupDMARC(ctx context.Context, r Resolver, domain string) (*dmarc.Record, error) {
	try := func(d string) (*dmarc.Record, error) {
		txts, err := r.LookupTXT(ctx, "_dmarc."+d)
		if err != nil {
			if isNotFound(err) {
				return nil, dmarc.ErrNoPolicy
			}
			return nil, err
		}
		var recs []string
		for _, t := range txts {
			if strings.HasPrefix(strings.TrimSpace(t), "v=DMARC1") {
				recs = append(recs, t)
			}
		}
		if len(recs) != 1 {
			return nil, dmarc.ErrNoPolicy
		}
		rec, err := dmarc.Parse(recs[0])
		if err != nil {
			return nil, dmarc.ErrNoPolicy
		}
		return rec, nil
	}
	rec, err := try(domain)
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := orgDomain(domain); org != domain {
			return try(org)
		}
	}
	return rec, err
}

// foldHeader folds a header field at "; " to lines under 78 characters
// where it can, and ends it with CRLF.
//
// Controls and non-ASCII bytes (from reasons that quote the message) are
// replaced, so that nothing a sender wrote can end the field or start
// another.
func foldHeader(f string) string {
	f = strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f {
			return '?'
		}
		return r
	}, f)
	parts := strings.Split(f, "; ")
	var b strings.Builder
	line := 0
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if i > 0 {
			if line+len(p)+2 > 76 {
				b.WriteString(";\r\n\t")
				line = 8
			} else {
				b.WriteString("; ")
				line += 2
			}
		}
		b.WriteString(p)
		line += len(p)
	}
	b.WriteString("\r\n")
	return b.String()
}
