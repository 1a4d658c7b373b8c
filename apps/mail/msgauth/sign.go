package msgauth

import (
	"bufio"
	"bytes"
	"fmt"
	"net/mail"
	"net/textproto"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// signedHeaders are the header fields a signature covers when present
// (RFC 6376 5.4.1); oversigned ones are covered once more than they occur,
// so that none can be added after signing (RFC 6376 8.15).
var signedHeaders = []struct {
	name     string
	oversign bool
}{
	{"From", true}, {"Reply-To", true}, {"Subject", true}, {"Date", true}, {"To", true}, {"Cc", true},
	{"Message-ID", true}, {"In-Reply-To", false}, {"References", false}, {"MIME-Version", true},
	{"Content-Type", true}, {"Content-Transfer-Encoding", true}, {"List-Unsubscribe", false},
	{"List-Unsubscribe-Post", false},
}

// FromDomain returns the domain of the message's From: header: the one
// address of its one From: field, lower case. It fails for a message
// without one, with several, or with several addresses in it.
func FromDomain(header textproto.MIMEHeader) (string, error) {
	from := header.Values("From")
	if len(from) != 1 {
		return "", fmt.Errorf("%d From: fields, want one", len(from))
	}
	as, err := mail.ParseAddressList(from[0])
	if err != nil {
		return "", fmt.Errorf("From: %w", err)
	}
	if len(as) != 1 {
		return "", fmt.Errorf("%d addresses in From:, want one", len(as))
	}
	at := strings.LastIndexByte(as[0].Address, '@')
	if at < 0 {
		return "", fmt.Errorf("From: %q has no domain", as[0].Address)
	}
	return strings.ToLower(strings.TrimSuffix(as[0].Address[at+1:], ".")), nil
}

// readHeader parses the header of raw.
func readHeader(raw []byte) (textproto.MIMEHeader, error) {
	return textproto.NewReader(bufio.NewReader(bytes.NewReader(raw))).ReadMIMEHeader()
}

// Sign returns the DKIM-Signature fields to put in front of raw (a
// message as sent), one per signing key of the domain of its From:
// header, or nothing when that domain is not one of domains. Keys are
// made on first use.
func (kr *Keyring) Sign(raw []byte, domains []string) ([]byte, error) {
	h, err := readHeader(raw)
	if err != nil {
		return nil, fmt.Errorf("dkim: reading the header: %w", err)
	}
	domain, err := FromDomain(h)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	ours := false
	for _, d := range domains {
		ours = ours || strings.EqualFold(d, domain)
	}
	if !ours {
		return nil, nil
	}
	keys, err := kr.Signing(domain)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, sh := range signedHeaders {
		n := len(h.Values(sh.name))
		if sh.oversign {
			n++
		}
		for range n {
			names = append(names, sh.name)
		}
	}
	var out bytes.Buffer
	for _, k := range keys {
		s, err := dkim.NewSigner(&dkim.SignOptions{Domain: domain, Selector: k.Selector, Signer: k.signer,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
			HeaderKeys: names})
		if err != nil {
			return nil, err
		}
		if _, err := s.Write(raw); err != nil {
			s.Close()
			return nil, fmt.Errorf("dkim: signing: %w", err)
		}
		if err := s.Close(); err != nil {
			return nil, fmt.Errorf("dkim: signing: %w", err)
		}
		out.WriteString(s.Signature())
	}
	return out.Bytes(), nil
}
