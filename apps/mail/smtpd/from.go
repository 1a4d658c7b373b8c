package smtpd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// CheckFrom checks, on submission, that the message whose header r starts
// with is from user: every address of its From: field must be user's
// (user@DOMAIN for one of the local domains). It says what is wrong, in
// words a person sending the message can act on. Only the header is read.
func CheckFrom(r io.Reader, user string, domains []string) error {
	h, err := textproto.ReadHeader(bufio.NewReader(r))
	if err != nil {
		return fmt.Errorf("the message header cannot be read: %v", err)
	}
	mh := mail.Header{Header: gomessage.Header{Header: h}}
	if !mh.Has("From") {
		return errors.New("the message has no From: header")
	}
	addrs, err := mh.AddressList("From")
	if err != nil {
		return fmt.Errorf("the From: header is not a valid address list: %v", err)
	}
	if len(addrs) == 0 {
		return errors.New("the From: header names no address")
	}
	for _, a := range addrs {
		if !ownAddress(a.Address, user, domains) {
			return fmt.Errorf("the From: address %q is not one of %s's addresses (%s)", a.Address, user, ownAddresses(user, domains))
		}
	}
	return nil
}

// ownAddress reports whether addr is user@DOMAIN for a local domain
// (letter case aside; no subaddress).
func ownAddress(addr, user string, domains []string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || user == "" {
		return false
	}
	if !strings.EqualFold(addr[:at], user) {
		return false
	}
	for _, d := range domains {
		if strings.EqualFold(addr[at+1:], d) {
			return true
		}
	}
	return false
}

func ownAddresses(user string, domains []string) string {
	out := make([]string, len(domains))
	for i, d := range domains {
		out[i] = user + "@" + d
	}
	return strings.Join(out, ", ")
}

// parseRecipient splits a RCPT TO address into its local part (lower case,
// without a +subaddress) and domain; ok is false for an address that is
// not local@domain.
func parseRecipient(to string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(to, '@')
	if at <= 0 || at == len(to)-1 {
		return "", "", false
	}
	local, domain = strings.ToLower(to[:at]), to[at+1:]
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	return local, domain, true
}
