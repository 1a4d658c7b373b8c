package mailstore

import (
	"bufio"
	"bytes"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/nymote/nymote/internal/charset"
)

// go-message decodes UTF-8 and US-ASCII alone unless it is given a
// charset reader (and Go's mime package ISO-8859-1 besides): text in the
// single-byte sets that much mail still comes in (Windows-1252, KOI8-R,
// ISO-8859-2, ...) was searched as raw bytes, and encoded words in them
// kept undecoded. The program's mail parsing (SEARCH, header fields, the
// envelope's decoded names) decodes them through package charset.
func init() { gomessage.CharsetReader = charset.Reader }

// Summary is what parsing a message once gives: the envelope, the body
// structure and the header, kept beside the message in the store so that
// FETCH and SEARCH never parse a message again.
type Summary struct {
	Envelope *imap.Envelope `json:"env,omitempty"`
	Body     *BodyJSON      `json:"body,omitempty"`
	// Header is the raw header block (the search fields: SEARCH FROM,
	// SUBJECT and HEADER read it instead of the message).
	Header string `json:"hdr,omitempty"`

	hdrOnce sync.Once
	hdr     map[string][]string // HeaderField's index, built on first use
}

// maxCachedHeader bounds the header kept in a cache; longer headers are
// searched in the message itself.
const maxCachedHeader = 64 << 10

// Parse parses raw once. It never fails: a message that go-message cannot
// read gets an empty envelope and a text/plain body structure, as IMAP
// servers do for broken MIME.
func Parse(raw []byte) *Summary {
	c := &Summary{}
	br := bufio.NewReader(bytes.NewReader(raw))
	h, err := textproto.ReadHeader(br)
	hdr := raw[:headerLen(raw)]
	if err != nil && len(hdr) == len(raw) {
		// A message that is all header, without the blank line.
		hdr = append(append([]byte(nil), bytes.TrimRight(raw, "\r\n")...), "\r\n\r\n"...)
		h, err = textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
	}
	if err == nil {
		c.Envelope = imapserver.ExtractEnvelope(h)
		if c.Envelope != nil {
			addGroups(h, c.Envelope)
		}
		if len(hdr) <= maxCachedHeader {
			c.Header = string(hdr)
		}
	}
	if c.Envelope == nil {
		c.Envelope = &imap.Envelope{}
	}
	c.Body = bodyToJSON(safeBodyStructure(bytes.NewReader(raw), int64(len(raw))))
	return c
}

// headerLen is the length of the header block of raw, blank line included.
func headerLen(raw []byte) int {
	if bytes.HasPrefix(raw, []byte("\r\n")) {
		return 2
	}
	if bytes.HasPrefix(raw, []byte("\n")) {
		return 1
	}
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		if j := bytes.Index(raw, []byte("\n\n")); j >= 0 && j < i {
			return j + 2
		}
		return i + 4
	}
	if j := bytes.Index(raw, []byte("\n\n")); j >= 0 {
		return j + 2
	}
	return len(raw)
}

// HeaderValues returns the decoded values of the header field key in the
// cached header (or in raw, if the header was too long to cache).
func (c *Summary) HeaderValues(key string, raw func() []byte) []string {
	var hdr []byte
	if c.Header != "" {
		hdr = []byte(c.Header)
	} else if raw != nil {
		b := raw()
		hdr = b[:headerLen(b)]
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
	if err != nil {
		return nil
	}
	mh := gomessage.Header{Header: h}
	fields := mh.FieldsByKey(key)
	var out []string
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		out = append(out, v)
	}
	return out
}

// BodyJSON is imap.BodyStructure in a form that encoding/json can keep
// (BodyStructure is an interface).
type BodyJSON struct {
	Multi bool `json:"multi,omitempty"`

	Type        string                           `json:"type,omitempty"`
	Subtype     string                           `json:"subtype,omitempty"`
	Params      map[string]string                `json:"params,omitempty"`
	ID          string                           `json:"id,omitempty"`
	Description string                           `json:"desc,omitempty"`
	Encoding    string                           `json:"enc,omitempty"`
	Size        uint32                           `json:"size,omitempty"`
	Text        *imap.BodyStructureText          `json:"text,omitempty"`
	MsgEnvelope *imap.Envelope                   `json:"msgenv,omitempty"`
	MsgBody     *BodyJSON                        `json:"msgbody,omitempty"`
	MsgLines    int64                            `json:"msglines,omitempty"`
	IsMsg       bool                             `json:"ismsg,omitempty"`
	Ext         *imap.BodyStructureSinglePartExt `json:"ext,omitempty"`

	Children []*BodyJSON                     `json:"children,omitempty"`
	MultiExt *imap.BodyStructureMultiPartExt `json:"mext,omitempty"`
}

func bodyToJSON(bs imap.BodyStructure) *BodyJSON {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		j := &BodyJSON{Multi: true, Subtype: bs.Subtype, MultiExt: bs.Extended}
		for _, c := range bs.Children {
			if cj := bodyToJSON(c); cj != nil {
				j.Children = append(j.Children, cj)
			}
		}
		if len(j.Children) == 0 {
			// Broken MIME (no parts found): IMAP needs at least one.
			j.Children = []*BodyJSON{{Type: "text", Subtype: "plain", Text: &imap.BodyStructureText{}}}
		}
		return j
	case *imap.BodyStructureSinglePart:
		j := &BodyJSON{Type: bs.Type, Subtype: bs.Subtype, Params: bs.Params, ID: bs.ID,
			Description: bs.Description, Encoding: bs.Encoding, Size: bs.Size, Text: bs.Text, Ext: bs.Extended}
		if m := bs.MessageRFC822; m != nil {
			j.IsMsg = true
			j.MsgEnvelope = m.Envelope
			j.MsgLines = m.NumLines
			if m.BodyStructure != nil {
				j.MsgBody = bodyToJSON(m.BodyStructure)
			}
		}
		return j
	}
	return nil
}

// Structure turns the kept form back into an imap.BodyStructure.
func (j *BodyJSON) Structure() imap.BodyStructure {
	if j == nil {
		return &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain", Text: &imap.BodyStructureText{}}
	}
	if j.Multi {
		m := &imap.BodyStructureMultiPart{Subtype: j.Subtype, Extended: j.MultiExt}
		if m.Extended == nil {
			m.Extended = &imap.BodyStructureMultiPartExt{}
		}
		for _, c := range j.Children {
			m.Children = append(m.Children, c.Structure())
		}
		if len(m.Children) == 0 {
			m.Children = []imap.BodyStructure{(*BodyJSON)(nil).Structure()}
		}
		return m
	}
	s := &imap.BodyStructureSinglePart{Type: j.Type, Subtype: j.Subtype, Params: j.Params, ID: j.ID,
		Description: j.Description, Encoding: j.Encoding, Size: j.Size, Text: j.Text, Extended: j.Ext}
	// imapserver writes what it is given: never hand it nil where the
	// grammar wants something.
	if s.Extended == nil {
		s.Extended = &imap.BodyStructureSinglePartExt{}
	}
	if s.Type == "" || s.Subtype == "" {
		s.Type, s.Subtype = "text", "plain"
	}
	if j.IsMsg {
		s.MessageRFC822 = &imap.BodyStructureMessageRFC822{Envelope: j.MsgEnvelope, NumLines: j.MsgLines}
		if s.MessageRFC822.Envelope == nil {
			s.MessageRFC822.Envelope = &imap.Envelope{}
		}
		s.MessageRFC822.BodyStructure = j.MsgBody.Structure()
	}
	return s
}

// CanonicalFlag folds the case of system flags (\Seen, \Deleted, ...) so that
// flags compare as IMAP says; keywords keep their case.
func CanonicalFlag(f imap.Flag) imap.Flag {
	if strings.HasPrefix(string(f), `\`) {
		switch strings.ToLower(string(f)) {
		case `\seen`:
			return imap.FlagSeen
		case `\answered`:
			return imap.FlagAnswered
		case `\flagged`:
			return imap.FlagFlagged
		case `\deleted`:
			return imap.FlagDeleted
		case `\draft`:
			return imap.FlagDraft
		case `\recent`:
			return `\Recent`
		}
	}
	return f
}

// HeaderField returns the decoded, lower-cased values of a header field
// of the message, from an index built on first use out of the cached header
// (SEARCH FROM, SUBJECT, HEADER). ok is false when the header was too long
// to cache, and the caller must look in the raw message.
func (m *Message) HeaderField(key string) (values []string, ok bool) {
	c := m.Summary()
	if c == nil || c.Header == "" {
		return nil, false
	}
	return c.headerField(key), true
}

// headerField is HeaderField of the message whose summary is c (c.Header
// not empty).
func (c *Summary) headerField(key string) []string {
	c.hdrOnce.Do(func() {
		c.hdr = map[string][]string{}
		// A buffer the header's size, not bufio's 4 KiB: a SEARCH builds
		// this for every message it looks at.
		h, err := textproto.ReadHeader(bufio.NewReaderSize(strings.NewReader(c.Header), min(len(c.Header)+1, 4096)))
		if err != nil {
			return
		}
		mh := gomessage.Header{Header: h}
		fields := mh.Fields()
		for fields.Next() {
			v, err := fields.Text()
			if err != nil {
				v = fields.Value()
			}
			k := strings.ToLower(fields.Key())
			c.hdr[k] = append(c.hdr[k], strings.ToLower(v))
		}
	})
	return c.hdr[strings.ToLower(key)]
}
