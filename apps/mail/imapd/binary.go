package imapd

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// binarySection extracts a BINARY[part] section (RFC 3516): the part's
// body with its Content-Transfer-Encoding undone, and nothing else (no
// charset conversion: BINARY gives the bytes the sender encoded). We do it
// rather than imapserver.ExtractBinarySection, which goes through
// go-message's entity reader and so returns nothing for a text part in a
// charset go-message cannot convert (iso-8859-1 without a charset reader).
// A part in an encoding we do not know is refused with UNKNOWN-CTE.
func binarySection(raw []byte, bs *imap.FetchItemBinarySection) ([]byte, error) {
	if len(bs.Part) == 0 {
		// The whole message: its header as is, its body decoded if it is
		// not multipart.
		hdr := imapserver.ExtractBodySection(bytes.NewReader(raw), &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader})
		body := imapserver.ExtractBodySection(bytes.NewReader(raw), &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText})
		dec, err := decodePart(hdr, body)
		if err != nil {
			return nil, err
		}
		return partial(append(hdr, dec...), bs.Partial), nil
	}
	var mimeHdr []byte
	if len(bs.Part) == 1 && !isMultipart(raw) {
		// Part 1 of a message that is not multipart is its body, and its
		// MIME header is the message's header (RFC 3501 6.4.5).
		mimeHdr = imapserver.ExtractBodySection(bytes.NewReader(raw), &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader})
	} else {
		mimeHdr = imapserver.ExtractBodySection(bytes.NewReader(raw), &imap.FetchItemBodySection{Part: bs.Part, Specifier: imap.PartSpecifierMIME})
	}
	body := imapserver.ExtractBodySection(bytes.NewReader(raw), &imap.FetchItemBodySection{Part: bs.Part})
	dec, err := decodePart(mimeHdr, body)
	if err != nil {
		return nil, err
	}
	return partial(dec, bs.Partial), nil
}

func isMultipart(raw []byte) bool {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return false
	}
	t, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return strings.HasPrefix(t, "multipart/")
}

// decodePart undoes the transfer encoding that hdr names on body.
// Multipart and message parts are not encoded (RFC 2045 6.4).
func decodePart(hdr, body []byte) ([]byte, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
	if err != nil {
		return body, nil // no header to speak of: nothing to undo
	}
	t, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if strings.HasPrefix(t, "multipart/") || strings.HasPrefix(t, "message/") {
		return body, nil
	}
	var r io.Reader
	switch enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); enc {
	case "", "7bit", "8bit", "binary":
		return body, nil
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &skipSpace{r: bytes.NewReader(body)})
	case "quoted-printable":
		r = quotedprintable.NewReader(bytes.NewReader(body))
	default:
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnknownCTE, Text: "Unknown Content-Transfer-Encoding: " + enc}
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnknownCTE, Text: "The part cannot be decoded: " + err.Error()}
	}
	return out, nil
}

// skipSpace drops the line breaks and spaces of base64 text.
type skipSpace struct{ r io.Reader }

func (s *skipSpace) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				p[k] = c
				k++
			}
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}

// partial applies <offset.size>.
func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset >= int64(len(b)) {
		return nil
	}
	b = b[p.Offset:]
	if p.Size >= 0 && p.Size < int64(len(b)) {
		b = b[:p.Size]
	}
	return b
}
