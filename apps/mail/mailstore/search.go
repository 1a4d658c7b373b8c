package mailstore

import (
	"bufio"
	"encoding/json"
	"strings"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// What SEARCH reads (see imapd's Session.Search). A SEARCH of header
// fields (FROM, SUBJECT, HEADER) looks at every message of the mailbox
// once, so it reads only what it matches and keeps nothing: the header
// block, from the summary cache if the message's summary is there, else
// from the header cache, else from its .meta (the rest of the summary
// left undecoded), kept then in the header cache (a quarter of the
// summary cache's size) rather than the summary cache: a summary costs
// about ten times its header, and a scan of a mailbox larger than the
// summary cache would only push out what FETCH uses. (Eight sessions
// searching 50,000 messages at once decoded and parsed 620 MB of
// summaries that way, most of it garbage that a small appliance's heap
// had to hold between collections.) The header cache is what sessions
// that search at once share: without it, each read every .meta, seven
// times the reads.

// CachedHeaderField is HeaderField if the message's summary is in the
// summary cache, with its index of header fields (built once, kept with
// the summary); ok is false, and nothing is read, if it is not.
func (m *Message) CachedHeaderField(key string) (values []string, ok bool) {
	s := m.s
	if s == nil {
		return m.HeaderField(key)
	}
	c := s.sums.get(m.meta)
	if c == nil || c.Header == "" {
		return nil, false
	}
	return c.headerField(key), true
}

// SearchHeader returns the message's header block (blank line included)
// for SEARCH, reading as little as it can (see above). ok is false when
// the header was too long to keep with the summary, or the summary cannot
// be read: the caller must look in the raw message.
func (m *Message) SearchHeader() (hdr string, ok bool) {
	s := m.s
	if s == nil {
		return "", false // a Message made outside a Store
	}
	if c := s.sums.get(m.meta); c != nil {
		return c.Header, c.Header != ""
	}
	if h, ok := s.hdrs.get(m.meta); ok {
		return h, h != ""
	}
	data, err := s.st.ReadBlob(m.meta)
	var meta struct {
		Summary *struct {
			Header string `json:"hdr"`
		} `json:"cache"`
	}
	if err == nil {
		err = json.Unmarshal(data, &meta)
	}
	if err != nil {
		s.log.Warn("mail: cannot read a message's header", "uid", m.UID, "key", m.Key, "err", err)
		return "", false
	}
	if meta.Summary != nil {
		hdr = meta.Summary.Header
	}
	s.hdrs.put(m.meta, hdr, int64(len(hdr))+hdrEntryBytes, true)
	return hdr, hdr != ""
}

// hdrEntryBytes is what an entry of the header cache costs beside the
// header: its list element, map entry and hash.
const hdrEntryBytes = 160

// HeaderFieldValues returns the decoded, lower-cased values of the header
// field key (lower-case) in hdr, a header block, as HeaderField does.
func HeaderFieldValues(hdr, key string) []string {
	h, err := textproto.ReadHeader(bufio.NewReaderSize(strings.NewReader(hdr), min(len(hdr)+1, 4096)))
	if err != nil {
		return nil
	}
	var out []string
	mh := gomessage.Header{Header: h}
	fields := mh.Fields()
	for fields.Next() {
		if strings.ToLower(fields.Key()) != key {
			continue
		}
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		out = append(out, strings.ToLower(v))
	}
	return out
}
