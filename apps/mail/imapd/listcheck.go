package imapd

import (
	"bytes"
)

// listCommand looks at a LIST or LSUB whose text holds "&" before
// imapserver does: imapserver answers a reference or pattern that is not
// modified UTF-7 with NO [SERVERBUG] (go-imap v2.0.0-beta.9 returns its
// decoder's error as is), where it is the client's mistake. Such a command
// is answered BAD here, naming the name and what is wrong with it; any other
// is given back to imapserver as it came (handled reports which).
func (p *proto) listCommand(tag, name string) (handled bool, err error) {
	if line := p.peekLine(); line != nil && bytes.IndexByte(line, '&') < 0 {
		if _, _, lit := literalAnnounced(bytes.TrimRight(line, "\r\n")); !lit {
			return false, nil
		}
	}
	sess := p.sess.Load()
	if sess == nil || sess.user == nil {
		return false, nil // imapserver refuses it before it parses names
	}
	cmd, err := p.readCommand(tag, name)
	if err != nil || cmd == nil {
		return true, err
	}
	for _, n := range cmd.listNames() {
		if _, err := p.mailboxName(sess, n); err != nil {
			return true, p.bad(tag, "[CLIENTBUG] "+err.Error())
		}
	}
	p.input = cmd.rebuild()
	return true, nil
}

// listNames returns the reference and the patterns of a LIST or LSUB
// command (RFC 3501 6.3.8, RFC 5258 selection options), as far as they
// parse: imapserver answers what does not.
func (c *command) listNames() []string {
	c.pos = 0
	if !c.sp() {
		return nil
	}
	if c.pos < len(c.args) && c.args[c.pos] == '(' {
		if _, ok := c.balanced(); !ok || !c.sp() {
			return nil
		}
	}
	ref, ok := c.astring()
	if !ok || !c.sp() {
		return nil
	}
	names := []string{ref}
	if c.pos < len(c.args) && c.args[c.pos] == '(' {
		c.pos++
		for c.pos < len(c.args) && c.args[c.pos] != ')' {
			n, ok := c.listMailbox()
			if !ok {
				return names
			}
			names = append(names, n)
			c.sp()
		}
		return names
	}
	if n, ok := c.listMailbox(); ok {
		names = append(names, n)
	}
	return names
}

// listMailbox reads a list-mailbox: a string, or list-chars (atom
// characters, "%", "*" and "]").
func (c *command) listMailbox() (string, bool) {
	if c.pos >= len(c.args) {
		return "", false
	}
	if ch := c.args[c.pos]; ch == '"' || ch == 0 {
		return c.astring()
	}
	start := c.pos
	for c.pos < len(c.args) && c.args[c.pos] != ' ' && c.args[c.pos] != ')' && c.args[c.pos] != '(' {
		c.pos++
	}
	return string(c.args[start:c.pos]), c.pos > start
}
