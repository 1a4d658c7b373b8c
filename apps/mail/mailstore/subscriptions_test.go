package mailstore

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestSubscriptionsOutliveMailboxes: DELETE keeps a subscribed mailbox's
// name subscribed, durably (a reload and another process that follows the
// commit see it); CREATE takes it back; SubscribeName removes it.
func TestSubscriptionsOutliveMailboxes(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, err := ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := Open(st, Options{})
	defer other.Close()
	u2, _ := other.User(ctx, "alice")

	update := func(what string, fn func(w *Writer) error) {
		t.Helper()
		if err := ms.Update(ctx, "alice", what, fn); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	update("create", func(w *Writer) error {
		_, err := w.Create(u, "Lists/Go", "")
		return err
	})
	mb, _ := u.Mailbox("Lists/Go")
	update("delete", func(w *Writer) error { return w.Delete(mb) })
	if got := u.SubscribedOnly(); !slices.Equal(got, []string{"Lists/Go"}) {
		t.Fatalf("after DELETE: %q, want Lists/Go", got)
	}
	// Another process follows the commit.
	deadline := time.Now().Add(time.Minute) // only a hung watch fails it
	for !slices.Equal(u2.SubscribedOnly(), []string{"Lists/Go"}) {
		if time.Now().After(deadline) {
			t.Fatalf("the other process never saw the subscription: %q", u2.SubscribedOnly())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A fresh load.
	ms3, _ := Open(st, Options{})
	u3, _ := ms3.User(ctx, "alice")
	if got := u3.SubscribedOnly(); !slices.Equal(got, []string{"Lists/Go"}) {
		t.Errorf("reloaded: %q", got)
	}
	ms3.Close()

	update("create again", func(w *Writer) error {
		_, err := w.Create(u, "Lists/Go", "")
		return err
	})
	if mb, _ := u.Mailbox("Lists/Go"); mb == nil || !mb.Info().Subscribed || len(u.SubscribedOnly()) != 0 {
		t.Errorf("after CREATE again: subscribed-only %q", u.SubscribedOnly())
	}
	update("subscribe a name", func(w *Writer) error { return w.SubscribeName(u, "Nowhere", true) })
	update("unsubscribe it", func(w *Writer) error { return w.SubscribeName(u, "Nowhere", false) })
	if got := u.SubscribedOnly(); len(got) != 0 {
		t.Errorf("after unsubscribing: %q", got)
	}
	if err := ms.Update(ctx, "alice", "bad name", func(w *Writer) error { return w.SubscribeName(u, "a//b", true) }); err == nil {
		t.Error("SubscribeName of a bad name: no error")
	}
}

func TestMergeSubscriptions(t *testing.T) {
	for _, c := range []struct{ base, ours, theirs, want string }{
		{"a\nb\n", "a\nb\nc\n", "b\nd\n", "b\nc\nd\n"}, // ours added c, theirs removed a and added d
		{"", "a\n", "a\n", "a\n"},
		{"a\n", "", "a\n", ""}, // removed on one side
	} {
		out, err := Merge("mail/alice/subscriptions", []byte(c.base), []byte(c.ours), []byte(c.theirs))
		if err != nil || string(out) != c.want {
			t.Errorf("Merge(%q, %q, %q) = %q, %v; want %q", c.base, c.ours, c.theirs, out, err, c.want)
		}
	}
}
