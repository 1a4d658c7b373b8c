package main

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nymote/nymote/replica"
)

// TestReplicaCredentials: a person's passwords are the person's, not a
// node's: a password set on one node logs in over IMAP on the other, a
// change on either stops the old one on both, an app password made on one
// works on the other until it is revoked, and no hash is in either node's
// history (host processes: two mail services replicating through their
// real endpoints).
func TestReplicaCredentials(t *testing.T) {
	ropts := replica.Options{Debounce: 20 * time.Millisecond, Poll: time.Second, Retry: 100 * time.Millisecond, Rescan: time.Hour}
	nodes, _ := setupReplicas(t, 2, 1, ropts)
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	login := func(nd *rnode, pw string) error {
		c, err := imapclient.DialInsecure(nd.addrs["imap"], nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Login("alice", pw).Wait()
	}
	// works waits (a bound only a hung replica reaches) until pw is
	// alice's password on nd (checked in the store, then over IMAP).
	works := func(nd *rnode, pw string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			if _, err := nd.st.AuthenticateClient("alice", pw); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the password does not work", nd.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := login(nd, pw); err != nil {
			t.Fatalf("%s: IMAP LOGIN: %v", nd.name, err)
		}
	}
	fails := func(nd *rnode, pw, what string) {
		t.Helper()
		if err := login(nd, pw); err == nil || !strings.Contains(err.Error(), "AUTHENTICATIONFAILED") {
			t.Errorf("%s: IMAP LOGIN with %s: %v, want AUTHENTICATIONFAILED", nd.name, what, err)
		}
	}
	if err := a.st.SetPassword(ctx, "alice", "set on node a"); err != nil {
		t.Fatal(err)
	}
	works(b, "set on node a")
	fails(b, testPassword, "the password before")
	if err := b.st.SetPassword(ctx, "alice", "then set on node b"); err != nil {
		t.Fatal(err)
	}
	works(a, "then set on node b")
	fails(a, "set on node a", "the password changed on b")
	_, app, err := a.st.AddAppPassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	works(b, app)
	if err := a.st.DeleteAppPassword(ctx, "alice", "phone"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := b.st.AuthenticateClient("alice", app); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b: the app password revoked on a still works")
		}
		time.Sleep(20 * time.Millisecond)
	}
	fails(b, app, "the app password revoked on a")
	// Nothing of it in the histories that replicate.
	for _, nd := range nodes {
		if out := gitOut(t, nd.st.Path(), "log", "-p", "--branches", "--remotes"); strings.Contains(out, "argon2") {
			t.Errorf("%s: a password hash in the history", nd.name)
		}
	}
	// The endpoint gives hashes to peers only: not to a wrong token, nor
	// to a person's own password.
	for _, auth := range [][2]string{{"n1", "not the token"}, {"alice", "then set on node b"}, {"", ""}} {
		req, _ := http.NewRequest("GET", "http://"+a.addrs["git"]+"/replica/credentials", nil)
		if auth[0] != "" {
			req.SetBasicAuth(auth[0], auth[1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "argon2") {
			t.Errorf("credentials as %q: %s %q, want 401 without hashes", auth[0], resp.Status, body)
		}
	}
}

// gitOut runs stock git in dir and returns its output.
func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return string(out)
}
