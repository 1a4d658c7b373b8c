package mailstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/store"
)

func TestValidate(t *testing.T) {
	box := "mail/alice/b1/"
	msg := box + store.Shard("k1")
	for _, tc := range []struct {
		name, path, data, want string
	}{
		{"mailbox", box + "mailbox.json", `{"name":"INBOX","uidvalidity":7,"uidnext":1}`, ""},
		{"mailbox without UIDVALIDITY", box + "mailbox.json", `{"name":"INBOX"}`, "UIDVALIDITY"},
		{"mailbox not JSON", box + "mailbox.json", `{`, "mailbox.json"},
		{"message", msg + ".eml", "Subject: x\r\n\r\nbody", ""},
		{"metadata", msg + ".meta", `{"uid":3,"date":"2026-01-01T00:00:00Z","size":10}`, ""},
		{"metadata with UID zero", msg + ".meta", `{"uid":0,"size":10}`, "UID zero"},
		{"message off its shard", box + "00/00/k1.eml", "x", "not a mailbox item"},
		{"message in Layout16", LayoutPath(Layout16, "alice", "b1", "k1", "eml"), "Subject: x\r\n\r\nbody", ""},
		{"metadata in Layout16", LayoutPath(Layout16, "alice", "b1", "k1", "meta"), `{"uid":3,"date":"2026-01-01T00:00:00Z","size":10}`, ""},
		{"message off its Layout16 shard", box + "0/0/0/0/k1.eml", "x", "not a mailbox item"},
		{"mailbox in Layout16", box + "mailbox.json", `{"name":"INBOX","uidvalidity":7,"layout":2}`, ""},
		{"mailbox in a layout of a later version", box + "mailbox.json", `{"name":"INBOX","uidvalidity":7,"layout":3}`, "layout 3"},
		{"flags", box + "flags/0/0", "3 k1 \\Seen\n", ""},
		{"flags line without key", box + "flags/0/0", "3\n", "flags line 1"},
		{"unknown item", box + store.Shard("k1") + ".txt", "x", "not a mailbox item"},
		{"outside a mailbox", "mail/alice/stray", "x", "only mailbox folders"},
		{"bad user name", "mail/Alice/b1/mailbox.json", "{}", "user name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.path, []byte(tc.data), nil)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate(%s) = %v, want nil", tc.path, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate(%s) = %v, want an error saying %q", tc.path, err, tc.want)
			}
		})
	}
}

// Everything the mail store writes passes Validate: a clone pushed back
// with new mail in it is accepted.
func TestValidateAcceptsWhatTheStoreWrites(t *testing.T) {
	ctx := context.Background()
	st, ms := newStore(t)
	u, err := ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := u.Mailbox("INBOX")
	for i := 1; i <= 3; i++ {
		err := ms.Update(ctx, "alice", "append", func(w *Writer) error {
			_, err := w.Append(inbox, testMsg(i), []imap.Flag{imap.FlagSeen, "$Custom"}, time.Time{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	items, err := st.List("", Prefix)
	if err != nil || len(items) < 10 {
		t.Fatalf("listing mail/: %d items, %v", len(items), err)
	}
	for _, e := range items {
		data, err := st.Read("", e.Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := Validate(e.Path, data, nil); err != nil {
			t.Errorf("Validate(%s) = %v", e.Path, err)
		}
	}
}
