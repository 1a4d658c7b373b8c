package imapd

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/emersion/go-imap/v2"
)

// intercepted are the commands the layer answers itself (proto.go).
var intercepted = map[string]func(*proto, *command) error{
	"STARTTLS":     startTLS,
	"GETQUOTA":     getQuota,
	"GETQUOTAROOT": getQuotaRoot,
	"SETQUOTA":     setQuota,
	"SORT":         sortCmd,
	"UID SORT":     sortCmd,
	"THREAD":       threadCmd,
	"UID THREAD":   threadCmd,
}

// quotaRoot is the name of each user's one quota root (RFC 9208 3): every
// mailbox of the user is under it.
const quotaRoot = ""

// authed returns the session if it is logged in; if not, it answers the
// command BAD, as imapserver does for its own commands.
func (p *proto) authed(cmd *command) (*Session, error) {
	sess := p.sess.Load()
	if sess == nil || sess.user == nil {
		return nil, p.bad(cmd.tag, "[CLIENTBUG] This command is only valid in the authenticated state")
	}
	return sess, nil
}

// quotaResponse is the QUOTA response of the user's root, or "" if the user
// has no limit (no quota root).
func quotaResponse(sess *Session) (string, error) {
	q, err := sess.user.Quota()
	if err != nil {
		return "", err
	}
	used := sess.user.Usage()
	var res []string
	if q.StorageKiB != 0 {
		res = append(res, fmt.Sprintf("STORAGE %d %d", (used.Bytes+1023)/1024, q.StorageKiB))
	}
	if q.Messages != 0 {
		res = append(res, fmt.Sprintf("MESSAGE %d %d", used.Messages, q.Messages))
	}
	if len(res) == 0 {
		return "", nil
	}
	return "* QUOTA " + quote(quotaRoot) + " (" + strings.Join(res, " ") + ")\r\n", nil
}

// getQuotaRoot answers GETQUOTAROOT (RFC 9208 4.3.2): the mailbox's quota
// roots (the user's one root, if the user has a limit) and their QUOTA.
func getQuotaRoot(p *proto, cmd *command) error {
	sess, err := p.authed(cmd)
	if sess == nil {
		return err
	}
	raw, ok := "", cmd.sp()
	if ok {
		raw, ok = cmd.astring()
	}
	if !ok || !cmd.end() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: GETQUOTAROOT takes a mailbox name")
	}
	name, err := p.mailboxName(sess, raw)
	if err != nil {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: "+err.Error())
	}
	if _, err := sess.user.Mailbox(name); err != nil {
		return p.respond(cmd.tag, "NO [NONEXISTENT] No such mailbox")
	}
	resp, err := quotaResponse(sess)
	if err != nil {
		sess.s.log.Error("imap: quota", "user", sess.user.Name, "err", err)
		return p.respond(cmd.tag, "NO [SERVERBUG] Internal server error")
	}
	out := "* QUOTAROOT " + astring(raw)
	if resp != "" {
		out += " " + quote(quotaRoot)
	}
	out += "\r\n" + resp + cmd.tag + " OK GETQUOTAROOT completed\r\n"
	return p.writeOut([]byte(out))
}

// getQuota answers GETQUOTA (RFC 9208 4.3.1) for the user's root.
func getQuota(p *proto, cmd *command) error {
	sess, err := p.authed(cmd)
	if sess == nil {
		return err
	}
	root, ok := "", cmd.sp()
	if ok {
		root, ok = cmd.astring()
	}
	if !ok || !cmd.end() {
		return p.bad(cmd.tag, "[CLIENTBUG] Syntax error: GETQUOTA takes a quota root")
	}
	resp, err := quotaResponse(sess)
	if err != nil {
		sess.s.log.Error("imap: quota", "user", sess.user.Name, "err", err)
		return p.respond(cmd.tag, "NO [SERVERBUG] Internal server error")
	}
	if root != quotaRoot || resp == "" {
		return p.respond(cmd.tag, "NO [NONEXISTENT] No such quota root")
	}
	return p.writeOut([]byte(resp + cmd.tag + " OK GETQUOTA completed\r\n"))
}

// setQuota answers SETQUOTA NO: limits are the administrator's (nymote user
// quota), and QUOTASET is not announced (RFC 9208 4.3.3).
func setQuota(p *proto, cmd *command) error {
	if sess, err := p.authed(cmd); sess == nil {
		return err
	}
	return p.respond(cmd.tag, "NO [NOPERM] Quotas are set by the administrator")
}

// mailboxName decodes a mailbox name as the client sent it: UTF-8 once
// IMAP4rev2 or UTF8=ACCEPT is enabled, else modified UTF-7 (RFC 3501
// 5.1.3).
func (p *proto) mailboxName(sess *Session, raw string) (string, error) {
	caps := sess.conn.EnabledCaps()
	if caps.Has(imap.CapIMAP4rev2) || caps.Has(imap.CapUTF8Accept) {
		return raw, nil
	}
	return decodeMUTF7(raw)
}

var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// decodeMUTF7 decodes modified UTF-7: printable ASCII as itself ("&-" for
// "&"), other characters as UTF-16 in a modified base64 run between "&" and
// "-".
func decodeMUTF7(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < 0x20 || ch > 0x7e {
			return "", fmt.Errorf("mailbox name %q: byte %#x is not modified UTF-7", s, ch)
		}
		if ch != '&' {
			b.WriteByte(ch)
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", fmt.Errorf("mailbox name %q: unterminated \"&\"", s)
		}
		run := s[i+1 : i+1+end]
		i += 1 + end
		if run == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7.DecodeString(run)
		if err != nil || len(raw)%2 != 0 {
			return "", fmt.Errorf("mailbox name %q: bad modified base64 %q", s, run)
		}
		u := make([]uint16, len(raw)/2)
		for j := range u {
			u[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for _, r := range utf16.Decode(u) {
			if r < 0x80 && r >= 0x20 {
				return "", errors.New("mailbox name: ASCII inside a modified base64 run")
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}
