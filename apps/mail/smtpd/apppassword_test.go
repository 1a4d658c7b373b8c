package smtpd

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/nymote/nymote/store"
)

// Submission takes an app password (store.AuthenticateClient) until it is
// revoked; another user cannot use it.
func TestSubmissionAppPassword(t *testing.T) {
	ts := startServers(t, t.TempDir(), store.Options{}, Options{})
	ctx := context.Background()
	if err := ts.st.AddUser(ctx, "bob", testPassword, store.GitNone); err != nil {
		t.Fatal(err)
	}
	_, pw, err := ts.st.AddAppPassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	auth := func(user, want string) {
		t.Helper()
		c := dialSMTP(t, ts.submission)
		c.expect(t, "AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pw)), want)
		c.expect(t, "QUIT", "221")
	}
	auth("alice", "235")
	auth("bob", "535")
	if err := ts.st.DeleteAppPassword(ctx, "alice", "phone"); err != nil {
		t.Fatal(err)
	}
	auth("alice", "535")
}
