package capability

import (
	"testing"
	"time"
)

// FuzzVerify: any token text is verified or refused with ErrRefused; never
// a panic, and nothing but a token minted with this node's key verifies.
// (fuzz-short: 2000x)
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	tok, err := Mint(dir, "/alice/work/", Read, time.Now().Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(TokenPrefix)
	f.Add(TokenPrefix + "AgEGbnltb3Rl")
	f.Fuzz(func(t *testing.T, s string) {
		g, err := Verify(dir, s, time.Now())
		if err != nil {
			return
		}
		if len(g.Collections) == 0 || g.Rights == 0 && s != tok {
			t.Fatalf("verified %q: %+v", s, g)
		}
	})
}
