package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/store"
)

// TestPeerBootServesWhileCloning: a new node whose peer does not answer
// yet keeps its ports open while it retries the clone with a backoff (a
// console line per attempt): IMAP and IMAPS answer BYE [UNAVAILABLE], SMTP
// 421 (a sender retries), the git port 503 with Retry-After. Its data
// directory got a plain `nymote peer add` (a commit of the record), which
// still counts as a new node. Once the peer answers, the node clones it
// and serves: SMTP to b reaches alice (a user it has from a's store), and
// IMAP on a sees that message.
func TestPeerBootServesWhileCloning(t *testing.T) {
	ctx := context.Background()
	ropts := replica.Options{Debounce: 20 * time.Millisecond, Poll: 2 * time.Second, Retry: 50 * time.Millisecond, Rescan: 200 * time.Millisecond}
	stA, a := bootSource(t, ropts)
	px, err := replica.NewFaultProxy(a.addrs["git"], 1)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	px.SetCut(true)
	url := "http://" + px.Addr() + "/replica"

	dirB := t.TempDir()
	stB, err := store.InitData(dirB, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stB.Close() })
	if _, err := replica.AddPeer(ctx, stB, "a", url, replica.AddOptions{Token: bootToken}); err != nil {
		t.Fatal(err)
	}
	opts := map[string]string{replica.BootPeer: "a=" + url, replica.BootAs: "b"}
	peers, err := replica.ParseBoot(func(k string) string { return opts[k] }, func(k string) string { return "--" + k }, dirB)
	if err != nil {
		t.Fatal(err)
	}
	ls, addrs := listen(t, nil)
	out := &testutil.Buffer{}
	sctx, cancel := context.WithCancel(ctx)
	b := &server{t: t, st: stB, addrs: addrs, cancel: cancel, done: make(chan error, 1), out: out}
	go func() {
		b.done <- mailsvc.Serve(sctx, mailsvc.Config{Store: stB, DataDir: dirB, Domains: []string{"example.org"}, InsecureAuth: true,
			NoInboundChecks: true, Replica: ropts, Peers: peers, Stdout: out,
			Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))}, ls)
	}()
	t.Cleanup(b.stop)
	waitFor(t, "b to retry the clone twice", hung, func() bool {
		return strings.Count(out.String(), "clone failed, trying again") >= 2
	})
	if !strings.Contains(out.String(), "holds only peer records") {
		t.Errorf("b's console:\n%s\nwant the line that its store holds only peer records", out.String())
	}

	// Meanwhile: temporary refusals that say why.
	firstLine := func(c net.Conn) string {
		t.Helper()
		defer c.Close()
		c.SetDeadline(time.Now().Add(hung))
		l, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Errorf("%s: %v", c.RemoteAddr(), err)
		}
		return l
	}
	for _, name := range []string{"imap", "smtp", "submission"} {
		c, err := net.Dial("tcp", addrs[name])
		if err != nil {
			t.Fatalf("%s while cloning: %v", name, err)
		}
		l := firstLine(c)
		want := "421 4.3.2 This node is copying its mail from its peer"
		if name == "imap" {
			want = "* BYE [UNAVAILABLE] This node is copying its mail from its peer"
		}
		if !strings.HasPrefix(l, want) {
			t.Errorf("%s while cloning: %q, want %q", name, l, want)
		}
	}
	for _, name := range []string{"imaps", "submissions"} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: hung}, "tcp", addrs[name], &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("%s while cloning: %v", name, err)
		}
		if l := firstLine(c); !strings.Contains(l, "This node is copying its mail from its peer") {
			t.Errorf("%s while cloning: %q", name, l)
		}
	}
	resp, err := http.Get("http://" + addrs["git"] + "/replica/git/info/refs?service=git-upload-pack")
	if err != nil {
		t.Fatalf("git port while cloning: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("git port while cloning: %s, Retry-After %q; want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
	if h, _ := stB.Resolve(""); mustLog(t, stB)[0].Hash != h || len(mustLog(t, stB)) != 1 {
		t.Error("b's store changed while cloning")
	}

	// The peer answers: b clones it and serves.
	px.SetCut(false)
	waitFor(t, "b to clone a and listen", hung, func() bool {
		return strings.Contains(out.String(), "cloned from a") && strings.Contains(out.String(), "nymote: mail: done copying the store; serving") &&
			strings.Count(out.String(), "listening on") >= 6
	})
	c, err := net.Dial("tcp", addrs["imap"])
	if err != nil {
		t.Fatal(err)
	}
	if l := firstLine(c); !strings.HasPrefix(l, "* OK") {
		t.Errorf("imap after the clone: %q", l)
	}
	if err := replica.SetToken(stA, "b", bootToken); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.AddPeer(ctx, stA, "b", "http://"+addrs["git"]+"/replica", replica.AddOptions{Token: bootToken}); err != nil {
		t.Fatal(err)
	}
	deliver(t, b, "delivered to b")
	waitFor(t, "a to have b's message", hung, func() bool {
		s := subjects(t, a)
		return len(s) == 2 && s[1] == "delivered to b"
	})
}
