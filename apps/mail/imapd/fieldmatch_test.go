package imapd

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nymote/nymote/apps/mail/mailstore"
)

// TestFieldContainsASCII: where simpleMatch allows it, the line scan gives
// the answer of parsing the header (mailstore.HeaderFieldValues) for
// random headers: fields folded or not, names that start like the key,
// white space before the colon, values in any case.
func TestFieldContainsASCII(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"zebra", "Zebra", "ZEBRA", "zeb", "ra", "lunch", "x:y", "subject", "Subject:", "a@b.org", "<id@x>"}
	names := []string{"Subject", "subject", "SUBJECT", "Subject-Extra", "X-Subject", "From", "To", "Subject ", "Subject\t"}
	checked := 0
	for n := 0; n < 20000; n++ {
		var b strings.Builder
		for f := r.IntN(5) + 1; f > 0; f-- {
			b.WriteString(names[r.IntN(len(names))] + ":")
			for w := r.IntN(4); w >= 0; w-- {
				if r.IntN(4) == 0 {
					b.WriteString("\r\n\t")
				} else {
					b.WriteString(" ")
				}
				b.WriteString(words[r.IntN(len(words))])
			}
			b.WriteString("\r\n")
		}
		b.WriteString("\r\n")
		hdr := b.String()
		pattern := strings.ToLower(words[r.IntN(len(words))])
		for _, key := range []string{"subject", "from"} {
			if !simpleMatch(hdr, pattern) {
				continue
			}
			checked++
			want := matchValues(mailstore.HeaderFieldValues(hdr, key), pattern)
			if got := fieldContainsASCII(hdr, key, pattern); got != want {
				t.Fatalf("field %s, pattern %q, header %q: line scan %v, parsed %v", key, pattern, hdr, got, want)
			}
		}
	}
	if checked < 10000 {
		t.Fatalf("only %d cases checked", checked)
	}
}
