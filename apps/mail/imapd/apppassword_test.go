package imapd

import (
	"context"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
)

// An app password logs an IMAP client in; revoked, it fails; another
// user cannot use it.
func TestAppPasswordLogin(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	_, pw, err := h.st.AddAppPassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	login := func(user, password string) error {
		t.Helper()
		c, err := imapclient.DialInsecure(h.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(user, password).Wait(); err != nil {
			return err
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Errorf("%s: SELECT INBOX after logging in: %v", user, err)
		}
		return nil
	}
	if err := login("alice@example.org", pw); err != nil {
		t.Errorf("LOGIN with alice's app password: %v", err)
	}
	if err := login("bob", pw); err == nil {
		t.Error("bob logged in with alice's app password")
	}
	if err := h.st.DeleteAppPassword(ctx, "alice", "phone"); err != nil {
		t.Fatal(err)
	}
	if err := login("alice", pw); err == nil {
		t.Error("a revoked app password still logs in")
	}
	if err := login("alice", "password-alice"); err != nil {
		t.Errorf("alice's own password after the revocation: %v", err)
	}
}
