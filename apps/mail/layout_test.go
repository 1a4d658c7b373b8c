package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/mailstore/mailfill"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/store"
)

// itemsByLayout counts mailbox id's message items by layout.
func itemsByLayout(t *testing.T, st *store.Store, user, id string) map[int]int {
	t.Helper()
	n, err := mailfill.ItemsByLayout(st, user, id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRelayoutAtStart: a node without peers moves the mailboxes that an
// earlier version wrote (two levels of 256 folders) to the 16-way layout
// when it starts, and its clients see the same messages; a node with peers
// leaves them as they are (a peer's expunge meanwhile would come undone),
// and says so.
func TestRelayoutAtStart(t *testing.T) {
	ctx := context.Background()
	for _, peered := range []bool{false, true} {
		t.Run(fmt.Sprintf("peers=%v", peered), func(t *testing.T) {
			st := newStore(t, "alice")
			ms, err := mailstore.Open(st, mailstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			u, err := ms.User(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			inbox, _ := u.Mailbox("INBOX")
			var want []string
			for i := 1; i <= 3; i++ {
				msg := testMessage(fmt.Sprintf("old %d", i), "written before")
				want = append(want, msg)
				err := ms.Update(ctx, "alice", "append", func(w *mailstore.Writer) error {
					_, err := w.Append(inbox, []byte(msg), nil, time.Time{})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			id := inbox.ID
			ms.Close()
			if err := mailfill.ToLayout256(ctx, st, "alice", id); err != nil {
				t.Fatal(err)
			}
			if got := itemsByLayout(t, st, "alice", id); got[mailstore.Layout256] != 6 || got[mailstore.Layout16] != 0 {
				t.Fatalf("before the start: %v", got)
			}
			if peered {
				if _, err := replica.AddPeer(ctx, st, "far", "http://127.0.0.1:1/replica", replica.AddOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			logs := &testutil.Buffer{}
			cfg := mailDefaults()
			cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, testLog{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
			s := startServer(t, st, cfg, nil)
			line := "messages moved to the 16-way layout"
			if peered {
				line = "mailboxes of an earlier version keep their layout"
			}
			waitFor(t, "the log line "+line, hung, func() bool { return strings.Contains(logs.String(), line) })
			got := itemsByLayout(t, st, "alice", id)
			if peered && (got[mailstore.Layout256] != 6 || got[mailstore.Layout16] != 0) {
				t.Errorf("with a peer, after the start: %v; want the 6 items where they were", got)
			}
			if !peered && (got[mailstore.Layout16] != 6 || got[mailstore.Layout256] != 0) {
				t.Errorf("without peers, after the start: %v; want the 6 items in the 16-way layout", got)
			}
			msgs := s.messages(t, "alice", "INBOX")
			if fmt.Sprint(msgs) != fmt.Sprint(want) {
				t.Errorf("INBOX: got %q, want %q", msgs, want)
			}
		})
	}
}
