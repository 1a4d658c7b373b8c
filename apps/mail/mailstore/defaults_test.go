package mailstore

import (
	"context"
	"testing"
	"time"
)

// TestReplicaDefaultMailboxes: two nodes that each made a user's default
// mailboxes at its first use (b a clone of a from before alice used mail)
// have one INBOX after a merge, holding what each node appended, not two
// mailboxes named INBOX.
func TestReplicaDefaultMailboxes(t *testing.T) {
	a, b := replicaPair(t) // alice has no mailbox yet
	a.append(t, "INBOX", 1)
	b.append(t, "INBOX", 2)
	merge(t, a, b)
	for _, n := range []*node{a, b} {
		u, err := n.ms.User(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, mb := range u.Mailboxes() {
			count[mb.Info().Name]++
		}
		for _, d := range DefaultMailboxes {
			if count[d.Name] != 1 {
				t.Errorf("%d mailboxes named %s after the merge, want 1 (%v)", count[d.Name], d.Name, count)
			}
		}
		// The index follows a merge as it sees it (a bound only a hung
		// index reaches).
		deadline := time.Now().Add(time.Minute)
		for n.msg(t, "INBOX", 1) == nil || n.msg(t, "INBOX", 2) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("INBOX %q: want messages 1 and 2", n.view(t, "INBOX"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
