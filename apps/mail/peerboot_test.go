package main

import (
	"context"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/store"
)

const bootToken = "peerboot-token-0123456789abcdef"

// TestPeerBootClone: a new node brought up with a peer in its boot options
// (the options of nymote.peer=..., --peer ..., read by replica.ParseBoot)
// and an empty store clones the peer's main before it serves (the first
// commit on it is the peer's head), gives its mailboxes a UIDVALIDITY of
// its own, and then syncs live both ways: mail delivered by SMTP to either
// is seen by IMAP on the other.
func TestPeerBootClone(t *testing.T) {
	ctx := context.Background()
	ropts := replica.Options{Debounce: 20 * time.Millisecond, Poll: time.Hour, Retry: 100 * time.Millisecond, Rescan: 200 * time.Millisecond}
	stA, a := bootSource(t, ropts)
	headA, _ := stA.Resolve("")

	// The new node: an empty data directory but for the token file.
	dirB := t.TempDir()
	if err := os.WriteFile(filepath.Join(dirB, "a.token"), []byte(bootToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := map[string]string{replica.BootPeer: "a=http://" + a.addrs["git"] + "/replica", replica.BootAs: "b", replica.BootToken: "a.token"}
	peers, err := replica.ParseBoot(func(k string) string { return opts[k] }, func(k string) string { return "--" + k }, dirB)
	if err != nil {
		t.Fatal(err)
	}
	stB, err := store.InitData(dirB, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stB.Close() })
	b := startServer(t, stB, mailsvc.Config{InsecureAuth: true, NoInboundChecks: true, Replica: ropts, Peers: peers}, nil)
	if !strings.Contains(b.out.String(), "nymote: replica: cloned from a: head "+headA.String()) {
		t.Errorf("b's console:\n%s\nwant the clone of a's head %s", b.out.String(), headA)
	}
	log, err := stB.Log(store.LogOptions{})
	if err != nil || len(log) == 0 || log[len(log)-1].Hash != mustLog(t, stA)[len(mustLog(t, stA))-1].Hash {
		t.Errorf("b's history does not begin with a's: %v", err)
	}
	// Passwords are each node's own: alice sets hers on the new node.
	if err := stB.SetPassword(ctx, "alice", testPassword); err != nil {
		t.Fatal(err)
	}
	// a learns b's endpoint (the administrator's peer add on a).
	if _, err := replica.AddPeer(ctx, stA, "b", "http://"+b.addrs["git"]+"/replica", replica.AddOptions{Token: bootToken}); err != nil {
		t.Fatal(err)
	}

	deliver(t, b, "delivered to b")
	deliver(t, a, "delivered to a")
	want := []string{"before the clone", "delivered to a", "delivered to b"}
	for _, s := range []*server{a, b} {
		// The password set on b works on a once a has its hash (the
		// record may arrive a moment before it: the credentials exchange).
		waitFor(t, "all three messages on both nodes", hung, func() bool {
			got, err := trySubjects(s)
			return err == nil && slices.Equal(got, want)
		})
	}
	if va, vb := uidValidity(t, a), uidValidity(t, b); va == vb {
		t.Errorf("INBOX UIDVALIDITY %d on both nodes: want the clone's own", va)
	}
}

// TestPeerBootFlags: the mail program's --peer flags are read as the boot
// options are, and bad values refused naming the flag.
func TestPeerBootFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--peer", "home"}, "--peer=home: want NAME=URL"},
		{[]string{"--peer", "home=ftp://x/replica"}, "--peer=home=ftp://x/replica: replica: peer URL"},
		{[]string{"--peer", "home=https://x/replica", "--peer-token", "/nonexistent/token"}, "--peer-token: open /nonexistent/token"},
		{[]string{"--peer", "a=https://x/replica", "--peer", "b=https://y/replica", "--peer-token", "/etc/hostname"}, "--peer-token: one file for 2 peers"},
		{[]string{"--peer-as", "b"}, "--peer-as needs --peer=NAME=URL"},
	} {
		args := append([]string{"--data", t.TempDir(), "--domain", "example.org", "--imap", "127.0.0.1:0"}, tc.args...)
		err := mailsvc.Main(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Main %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	// A peer without a token (none given, none kept): refused at start.
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), hung)
	defer cancel()
	err := mailsvc.Main(ctx, []string{"--data", data, "--domain", "example.org", "--imap", "127.0.0.1:0",
		"--peer", "a=https://a.invalid/replica", "--peer-as", "b"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--peer: peer a: no token on this node: give --peer-token=FILE") {
		t.Errorf("Main --peer without a token: %v", err)
	}
}

func mustLog(t *testing.T, st *store.Store) []store.CommitInfo {
	t.Helper()
	l, err := st.Log(store.LogOptions{})
	if err != nil || len(l) == 0 {
		t.Fatalf("log: %v", err)
	}
	return l
}

// bootSource starts node a, alice's store with one message delivered
// ("before the clone"), that takes a new node b's pushes with bootToken:
// the peer a new node is cloned from.
func bootSource(t *testing.T, ropts replica.Options) (*store.Store, *server) {
	t.Helper()
	st := newStore(t, "alice")
	if err := replica.SetSelf(st, "a"); err != nil {
		t.Fatal(err)
	}
	if err := replica.SetToken(st, "b", bootToken); err != nil {
		t.Fatal(err)
	}
	a := startServer(t, st, mailsvc.Config{InsecureAuth: true, NoInboundChecks: true, Replica: ropts}, nil)
	deliver(t, a, "before the clone")
	return st, a
}

// deliver sends a message with subject to alice by SMTP.
func deliver(t *testing.T, s *server, subject string) {
	t.Helper()
	c, err := smtp.Dial(s.addrs["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("bob@elsewhere.test", []string{"alice@example.org"}, strings.NewReader(testMessage(subject, "hello"))); err != nil {
		t.Fatal(err)
	}
}

// trySubjects is subjects, with an error for a login that fails (as it
// may while a node has a user's record but not yet the password hash).
func trySubjects(s *server) ([]string, error) {
	c, err := imapclient.DialTLS(s.addrs["imaps"], &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login("alice", testPassword).Wait(); err != nil {
		return nil, err
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages == 0 {
		return nil, err
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Envelope.Subject)
	}
	slices.Sort(out)
	return out, nil
}

// subjects lists the subjects of alice's INBOX, sorted.
func subjects(t *testing.T, s *server) []string {
	t.Helper()
	c := s.imap(t, "alice")
	defer c.Logout()
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Envelope.Subject)
	}
	slices.Sort(out)
	return out
}

func uidValidity(t *testing.T, s *server) uint32 {
	t.Helper()
	c := s.imap(t, "alice")
	defer c.Logout()
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return sel.UIDValidity
}
