package smtpd

import (
	"net/mail"
	"strings"
	"testing"
)

// FuzzEnvelope fuzzes the envelope and header checks this package owns:
// RCPT TO address splitting (parseRecipient) and the submission From:
// check (CheckFrom). Seeds are in testdata/fuzz/FuzzEnvelope.
//
// Invariants: nothing panics; a recipient that parses has a non-empty
// local part without a subaddress and a domain without '@'; a From:
// header that CheckFrom accepts names only the user's own addresses, as
// net/mail reads them too when it can.
//
// make test runs it for 25000 inputs past its seeds (fuzz-short: 25000x).
func FuzzEnvelope(f *testing.F) {
	f.Add("alice+tag@example.org", "From: Alice <alice@example.org>\r\n\r\nbody", "alice")
	f.Add("@example.org", "From: =?utf-8?q?Al=C3=AEce?= <ALICE@EXAMPLE.ORG>\r\n\r\n", "alice")
	f.Add("bob@", "From: alice@example.org, bob@example.org\r\n\r\n", "alice")
	f.Add("a@b@example.org", "From: \"alice@example.org\" <bob@example.org>\r\n\r\n", "alice")
	f.Fuzz(func(t *testing.T, rcpt, header, user string) {
		if local, dom, ok := parseRecipient(rcpt); ok {
			if local == "" || dom == "" || strings.Contains(dom, "@") || strings.IndexByte(local, '+') > 0 {
				t.Fatalf("parseRecipient(%q) = %q, %q", rcpt, local, dom)
			}
		}
		domains := []string{"example.org", "example.net"}
		if CheckFrom(strings.NewReader(header), user, domains) != nil {
			return
		}
		if user == "" {
			t.Fatalf("CheckFrom accepted %q for no user", header)
		}
		msg, err := mail.ReadMessage(strings.NewReader(header))
		if err != nil {
			return
		}
		addrs, err := msg.Header.AddressList("From")
		if err != nil {
			return
		}
		for _, a := range addrs {
			if !ownAddress(a.Address, user, domains) {
				t.Fatalf("CheckFrom accepted %q for %s, whose From: net/mail reads as %q", header, user, a.Address)
			}
		}
	})
}
