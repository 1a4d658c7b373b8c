package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/store"
)

// TestCrashChild is the mail program as TestCrash's child process.
func TestCrashChild(t *testing.T) {
	args := os.Getenv("NYMOTE_MAIL_CHILD_ARGS")
	if args == "" {
		t.Skip("only run as TestCrash's child")
	}
	if err := mailsvc.Main(context.Background(), strings.Split(args, "\x1f"), os.Stdout, io.Discard); err != nil {
		fmt.Println("mail:", err)
		os.Exit(3)
	}
}

// startChild runs the mail program in a child process and returns its IMAP
// address.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), "NYMOTE_MAIL_CHILD_ARGS="+strings.Join([]string{
		"--data", dir, "--domain", "example.org", "--imap", "127.0.0.1:0", "--insecure-auth"}, "\x1f"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	addr := make(chan string, 1)
	go func() {
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "nymote: mail imap listening on "); ok {
				addr <- a
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case a := <-addr:
		return cmd, a
	case <-time.After(hung):
		cmd.Process.Kill()
		t.Fatal("the child did not start")
	}
	return nil, ""
}

// TestCrash kills the mail program with SIGKILL during a burst of APPENDs
// from four clients; after a restart every APPEND that got OK is there,
// with the UID it was given, and git fsck accepts the repository. The kill
// comes after progress (a number of acknowledged APPENDs in the round), not
// after a time, so that a loaded machine only makes the test slower.
func TestCrash(t *testing.T) {
	dir := t.TempDir()
	st, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(context.Background(), "alice", testPassword, store.GitNone); err != nil {
		t.Fatal(err)
	}
	st.Close()

	acked := map[string]imap.UID{}
	var mu sync.Mutex
	for round := 0; round < 3; round++ {
		cmd, addr := startChild(t, dir)
		// Kill after killAfter acknowledged APPENDs of this round (more in
		// each round, so that kills land at different points).
		killAfter := 20 + round*15
		progress := make(chan struct{}, killAfter)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				c, err := imapclient.DialInsecure(addr, nil)
				if err != nil {
					return
				}
				defer c.Close()
				if err := c.Login("alice", testPassword).Wait(); err != nil {
					return
				}
				for i := 0; ; i++ {
					id := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					msg := testMessage(id, strings.Repeat("crash test body\r\n", 50))
					cmd := c.Append("INBOX", int64(len(msg)), nil)
					cmd.Write([]byte(msg))
					cmd.Close()
					d, err := cmd.Wait()
					if err != nil {
						return // the server is gone
					}
					mu.Lock()
					acked[id] = d.UID
					mu.Unlock()
					select {
					case progress <- struct{}{}:
					default:
					}
				}
			}(w)
		}
		for n := 0; n < killAfter; n++ {
			select {
			case <-progress:
			case <-time.After(hung):
				cmd.Process.Kill()
				t.Fatalf("round %d: %d APPENDs acknowledged, then none for %v", round, n, hung)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		wg.Wait()
	}
	if len(acked) == 0 {
		t.Fatal("no APPEND was acknowledged")
	}

	// Restart and check.
	cmd, addr := startChild(t, dir)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", testPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]imap.UID{}
	uids := map[imap.UID]bool{}
	for _, m := range msgs {
		have[m.Envelope.Subject] = m.UID
		if uids[m.UID] {
			t.Errorf("UID %d twice", m.UID)
		}
		uids[m.UID] = true
	}
	for id, uid := range acked {
		if got, ok := have[id]; !ok {
			t.Errorf("acknowledged APPEND %s (UID %d) lost", id, uid)
		} else if got != uid {
			t.Errorf("%s: UID %d, was acknowledged as %d", id, got, uid)
		}
	}
	t.Logf("%d APPENDs acknowledged over 3 kills, %d messages after restart", len(acked), len(msgs))
	// Stock git reads the repository's files: stop the server first (its
	// store writes what the SELECT committed, then closes).
	c.Logout().Wait()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if git, err := exec.LookPath("git"); err == nil {
		out, err := exec.Command(git, "-C", dir+"/"+store.RepoDir, "fsck", "--strict").CombinedOutput()
		if err != nil {
			t.Errorf("git fsck: %v\n%s", err, out)
		}
	}
}
