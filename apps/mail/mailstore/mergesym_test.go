package mailstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestMergeSymmetric: Merge gives the same bytes for (base, ours, theirs)
// and (base, theirs, ours), over random flags chunks, mailbox.json records,
// subscriptions and message records, so that two replicas merging each
// other's heads make the same tree whichever head is theirs. (The store's
// deterministic merges take the heads in hash order anyway; this keeps the
// merge itself from depending on the order.) The clock is fixed: a merge
// that changes a message's flags takes a fresh MODSEQ from it.
func TestMergeSymmetric(t *testing.T) {
	now := time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)
	clock = func() time.Time { return now }
	defer func() { clock = time.Now }()
	rng := rand.New(rand.NewSource(1))
	pick := func(xs ...string) string { return xs[rng.Intn(len(xs))] }
	// maybe returns nil (absent) now and then.
	maybe := func(b []byte) []byte {
		if rng.Intn(6) == 0 {
			return nil
		}
		return b
	}
	chunk := func() []byte {
		var b strings.Builder
		for i, n := 0, rng.Intn(5); i < n; i++ {
			fmt.Fprintf(&b, "%d k%d", 1+rng.Intn(3), rng.Intn(4))
			if rng.Intn(2) == 0 {
				fmt.Fprintf(&b, " %%%d", 1+rng.Intn(5))
			}
			for _, f := range []string{`\Seen`, `\Flagged`, `$a`, `*\Seen`, `*$a`} {
				if rng.Intn(3) == 0 {
					b.WriteString(" " + f)
				}
			}
			b.WriteByte('\n')
		}
		return []byte(b.String())
	}
	info := func() []byte {
		i := MailboxInfo{
			Name:          pick("INBOX", "Archive", "Old"),
			UIDValidity:   uint32(1 + rng.Intn(2)),
			UIDNext:       imap.UID(1 + rng.Intn(9)),
			Subscribed:    rng.Intn(2) == 0,
			RecentFrom:    imap.UID(rng.Intn(9)),
			HighestModSeq: uint64(rng.Intn(9)),
			VanishedFloor: uint64(rng.Intn(3)),
		}
		if rng.Intn(2) == 0 {
			i.SpecialUse = []imap.MailboxAttr{imap.MailboxAttr(pick(`\Archive`, `\Sent`, `\Junk`))}
		}
		for j, n := 0, rng.Intn(4); j < n; j++ {
			lo := imap.UID(1 + rng.Intn(5))
			i.Vanished = append(i.Vanished, VanishedRange{Lo: lo, Hi: lo + imap.UID(rng.Intn(3)), ModSeq: uint64(1 + rng.Intn(4))})
		}
		b, _ := json.Marshal(i)
		return b
	}
	subs := func() []byte {
		var b strings.Builder
		for _, n := range []string{"a", "b", "c", "d"} {
			if rng.Intn(2) == 0 {
				b.WriteString(n + "\n")
			}
		}
		return []byte(b.String())
	}
	meta := func() []byte {
		b, _ := json.Marshal(msgMeta{UID: imap.UID(1 + rng.Intn(3)), Size: int64(rng.Intn(3)), ModSeq: uint64(rng.Intn(3))})
		return b
	}
	kinds := []struct {
		path string
		gen  func() []byte
	}{
		{"mail/u/b1/flags/0/0", chunk},
		{"mail/u/b1/mailbox.json", info},
		{"mail/u/subscriptions", subs},
		{"mail/u/b1/ab/k1.meta", meta},
		{"mail/u/b1/ab/k1.eml", func() []byte { return []byte(pick("x", "y", "z")) }},
	}
	for _, k := range kinds {
		for i := 0; i < 3000; i++ {
			base, ours, theirs := maybe(k.gen()), maybe(k.gen()), maybe(k.gen())
			if bytes.Equal(ours, theirs) && (ours == nil) == (theirs == nil) {
				continue // the store merges only what the two sides changed differently
			}
			if !strings.Contains(k.path, "/flags/") && !strings.HasSuffix(k.path, "subscriptions") && (ours == nil || theirs == nil) && rng.Intn(2) == 0 {
				continue // mostly edits on both sides
			}
			a, errA := Merge(k.path, base, ours, theirs)
			b, errB := Merge(k.path, base, theirs, ours)
			if (errA == nil) != (errB == nil) || !bytes.Equal(a, b) || (a == nil) != (b == nil) {
				t.Fatalf("%s: base %q\nours %q\ntheirs %q\nmerged %q, %v\nswapped %q, %v", k.path, base, ours, theirs, a, errA, b, errB)
			}
		}
	}
}
