package imapd

import (
	"strings"
	"testing"
)

// TestFetchFix feeds FETCH responses as imapserver writes them through the
// rewriter, cut at every byte (outScan hands it lines in any pieces), and
// checks what the client gets.
func TestFetchFix(t *testing.T) {
	env := `("d" "s" (("N" NIL "a" "x.org")) NIL NIL ((NIL NIL "b" "x.org") (NIL NIL "c" "x.org")) NIL NIL NIL NIL)`
	envFixed := `("d" "s" (("N" NIL "a" "x.org")) NIL NIL ((NIL NIL "b" "x.org")(NIL NIL "c" "x.org")) NIL NIL NIL NIL)`
	for _, tc := range []struct {
		name, in, want string
		partials       []binaryPartial
	}{
		{"envelope", `* 1 FETCH (UID 1 ENVELOPE ` + env + `)`, `* 1 FETCH (UID 1 ENVELOPE ` + envFixed + `)`, nil},
		{"quoted parens and escapes left alone",
			`* 2 FETCH (ENVELOPE (NIL "a) (b \" ) (" ((NIL NIL "x" "y") (NIL NIL "z" "w")) NIL NIL NIL NIL NIL NIL NIL) FLAGS (\Seen $a))`,
			`* 2 FETCH (ENVELOPE (NIL "a) (b \" ) (" ((NIL NIL "x" "y")(NIL NIL "z" "w")) NIL NIL NIL NIL NIL NIL NIL) FLAGS (\Seen $a))`, nil},
		{"message/rfc822 part's envelope",
			`* 3 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 1) ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 99 ` + env + ` ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 3 1) 4) "MIXED"))`,
			`* 3 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 1) ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 99 ` + envFixed + ` ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 3 1) 4) "MIXED"))`, nil},
		{"other lists keep their spaces",
			`* 4 FETCH (FLAGS (\Seen \Flagged) BODY[HEADER.FIELDS (FROM TO)] {2}`,
			`* 4 FETCH (FLAGS (\Seen \Flagged) BODY[HEADER.FIELDS (FROM TO)] {2}`, nil},
		{"binary origins, in order",
			`* 5 FETCH (UID 5 BINARY[1] ~{3}`,
			`* 5 FETCH (UID 5 BINARY[1]<7> ~{3}`, []binaryPartial{{"1", 7}}},
		{"binary of another part than asked: untouched",
			`* 6 FETCH (BINARY[2] ~{3}`, `* 6 FETCH (BINARY[2] ~{3}`, []binaryPartial{{"1.2", 7}}},
		{"binary size untouched",
			`* 7 FETCH (BINARY.SIZE[1] 3 BINARY[1.2] ~{1}`, `* 7 FETCH (BINARY.SIZE[1] 3 BINARY[1.2]<0> ~{1}`, []binaryPartial{{"1.2", 0}}},
	} {
		for cut := 1; cut <= len(tc.in); cut++ {
			var f fetchFix
			f.partial = &binaryPartials{}
			for _, p := range tc.partials {
				f.partial.push(p.part, p.off)
			}
			f.start()
			var out []byte
			for s := tc.in; len(s) > 0; {
				n := min(cut, len(s))
				out = f.apply(out, []byte(s[:n]))
				s = s[n:]
			}
			if string(out) != tc.want {
				t.Fatalf("%s, cut every %d bytes:\n got %s\nwant %s", tc.name, cut, out, tc.want)
			}
		}
	}
	// Off, nothing changes.
	var o outScan
	o.plain([]byte(`* 1 FETCH (ENVELOPE ` + env + ")\r\n"))
	if got := string(o.obuf); !strings.Contains(got, `") (NIL`) {
		t.Errorf("rewritten without being on: %s", got)
	}
}
