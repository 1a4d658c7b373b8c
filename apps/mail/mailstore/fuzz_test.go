package mailstore

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// FuzzParse feeds messages to the parse path that every APPEND and SMTP
// delivery takes: it must not panic, its cache must survive the JSON
// round trip, and the body structure must be one imapserver can write (a
// multipart has parts, extension data is there).
//
// make test runs it for 30000 inputs past its seeds (fuzz-short: 30000x).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"Subject: hi\r\n\r\nbody",
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\na\r\n--x--\r\n",
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nno end",
		"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body",
		"Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: \xff <a@b>\r\n\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c := Parse(raw)
		// The streaming extraction gives what imapserver's (which holds
		// every part) gives, below the nesting bound.
		if lib, ok := libraryBodyStructure(raw); ok && bytes.Count(bytes.ToLower(raw), []byte("content-type")) < maxNesting {
			if want := bodyToJSON(lib); !reflect.DeepEqual(c.Body, want) {
				got, _ := json.Marshal(c.Body)
				wantJSON, _ := json.Marshal(want)
				t.Fatalf("body structure:\n got %s\nwant %s", got, wantJSON)
			}
		}
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var c2 Summary
		if err := json.Unmarshal(data, &c2); err != nil {
			t.Fatal(err)
		}
		var check func(bs imap.BodyStructure)
		check = func(bs imap.BodyStructure) {
			switch bs := bs.(type) {
			case *imap.BodyStructureMultiPart:
				if len(bs.Children) == 0 || bs.Extended == nil {
					t.Fatalf("multipart without parts or extension data")
				}
				for _, c := range bs.Children {
					check(c)
				}
			case *imap.BodyStructureSinglePart:
				if bs.Extended == nil || bs.Type == "" {
					t.Fatalf("single part without type or extension data")
				}
				if bs.MessageRFC822 != nil {
					if bs.MessageRFC822.Envelope == nil {
						t.Fatal("message/rfc822 without envelope")
					}
					check(bs.MessageRFC822.BodyStructure)
				}
			default:
				t.Fatalf("body structure %T", bs)
			}
		}
		check(c2.Body.Structure())
		if c2.Header != "" { // as Message.HeaderField does
			c2.headerField("subject")
		}
		imapserver.ExtractBodySection(bytes.NewReader(raw), &imap.FetchItemBodySection{Part: []int{1}})
	})
}

// libraryBodyStructure is imapserver's extraction; ok is false if it
// panicked.
func libraryBodyStructure(raw []byte) (bs imap.BodyStructure, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return imapserver.ExtractBodyStructure(bytes.NewReader(raw)), true
}
