package mailstore

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Parsing streams: imapserver.ExtractBodyStructure reads every leaf part
// whole into memory (io.ReadAll) to count its bytes and lines; the
// extraction below gives the same structure while counting as it reads,
// so that a 45 MB attachment costs a 4 KiB buffer, not 45 MB.

// parseInMemory: messages up to this size are parsed from memory (Parse);
// larger ones from their file, streaming.
const parseInMemory = 1 << 20

// maxNesting bounds the depth of nested multiparts and messages that are
// parsed; deeper parts are counted as opaque leaves (each level costs a
// reader's buffer, and a hostile message can nest thousands).
const maxNesting = 32

// ParseReader parses a message of size bytes read through r once, as Parse
// does, without holding it: only its header (when small enough to cache)
// is kept.
func ParseReader(r io.ReaderAt, size int64) *Summary {
	if size <= parseInMemory {
		raw := make([]byte, size)
		n, _ := r.ReadAt(raw, 0)
		return Parse(raw[:n])
	}
	c := &Summary{}
	// The header block, if it is small enough to keep.
	prefix := make([]byte, min(size, maxCachedHeader+4))
	n, _ := r.ReadAt(prefix, 0)
	prefix = prefix[:n]
	if hl := headerLen(prefix); hl < len(prefix) && hl <= maxCachedHeader {
		c.Header = string(prefix[:hl])
	}
	br := bufio.NewReader(io.NewSectionReader(r, 0, size))
	if h, err := textproto.ReadHeader(br); err == nil {
		c.Envelope = imapserver.ExtractEnvelope(h)
	} else {
		c.Header = ""
	}
	if c.Envelope == nil {
		c.Envelope = &imap.Envelope{}
	}
	c.Body = bodyToJSON(safeBodyStructure(io.NewSectionReader(r, 0, size), size))
	return c
}

func safeBodyStructure(r io.Reader, size int64) (bs imap.BodyStructure) {
	defer func() {
		if recover() != nil {
			bs = &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain", Size: uint32(size), Text: &imap.BodyStructureText{}}
		}
	}()
	br := bufio.NewReader(r)
	header, _ := textproto.ReadHeader(br)
	return extractBodyStructure(header, br, 0)
}

// extractBodyStructure maps a part's MIME header onto IMAP's BODYSTRUCTURE
// fields (RFC 3501 7.4.2) while counting the part's bytes and lines as it
// reads them. It must give what imapserver.ExtractBodyStructure gives for
// the same message (FuzzParse compares them); it differs only in reading
// each part once, through a counter, instead of whole into memory.
func extractBodyStructure(rawHeader textproto.Header, r io.Reader, depth int) imap.BodyStructure {
	header := gomessage.Header{Header: rawHeader}
	mediaType, typeParams, _ := header.ContentType()
	primaryType, subType, _ := strings.Cut(mediaType, "/")
	if primaryType == "multipart" && depth < maxNesting {
		bs := &imap.BodyStructureMultiPart{Subtype: subType}
		mr := textproto.NewMultipartReader(r, typeParams["boundary"])
		for {
			part, _ := mr.NextPart()
			if part == nil {
				break
			}
			bs.Children = append(bs.Children, extractBodyStructure(part.Header, part, depth+1))
		}
		bs.Extended = &imap.BodyStructureMultiPartExt{
			Params:      typeParams,
			Disposition: contentDisposition(header),
			Language:    contentLanguage(header),
			Location:    header.Get("Content-Location"),
		}
		return bs
	}
	bs := &imap.BodyStructureSinglePart{
		Type:        primaryType,
		Subtype:     subType,
		Params:      typeParams,
		ID:          header.Get("Content-Id"),
		Description: header.Get("Content-Description"),
		Encoding:    header.Get("Content-Transfer-Encoding"),
	}
	lc := &lineCounter{}
	if (mediaType == "message/rfc822" || mediaType == "message/global") && depth < maxNesting {
		br := bufio.NewReader(io.TeeReader(r, lc))
		childHeader, _ := textproto.ReadHeader(br)
		child := extractBodyStructure(childHeader, br, depth+1)
		io.Copy(io.Discard, br)
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      imapserver.ExtractEnvelope(childHeader),
			BodyStructure: child,
			NumLines:      lc.lines,
		}
	} else {
		b := countBufs.Get().(*[16 << 10]byte)
		io.CopyBuffer(lc, r, b[:])
		countBufs.Put(b)
	}
	bs.Size = uint32(lc.n)
	if primaryType == "text" {
		bs.Text = &imap.BodyStructureText{NumLines: lc.lines}
	}
	bs.Extended = &imap.BodyStructureSinglePartExt{
		Disposition: contentDisposition(header),
		Language:    contentLanguage(header),
		Location:    header.Get("Content-Location"),
	}
	return bs
}

// lineCounter counts the bytes and newlines written to it.
type lineCounter struct {
	n, lines int64
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	c.lines += int64(bytes.Count(p, []byte("\n")))
	return len(p), nil
}

func contentDisposition(header gomessage.Header) *imap.BodyStructureDisposition {
	disp, dispParams, _ := header.ContentDisposition()
	if disp == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: disp, Params: dispParams}
}

func contentLanguage(header gomessage.Header) []string {
	v := header.Get("Content-Language")
	if v == "" {
		return nil
	}
	l := strings.Split(v, ",")
	for i, lang := range l {
		l[i] = strings.TrimSpace(lang)
	}
	return l
}

// countBufs are the buffers parts are counted through: io.Copy made one
// of 32 KiB for each part of each message appended.
var countBufs = sync.Pool{New: func() any { return new([16 << 10]byte) }}
