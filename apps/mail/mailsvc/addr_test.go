package mailsvc_test

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/store"
)

// TestMainPrintsAddresses: the console names each user's full address, so
// that whoever tries the appliance knows to send as demo@DOMAIN.
func TestMainPrintsAddresses(t *testing.T) {
	data := t.TempDir()
	st, err := svc.OpenStore(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(context.Background(), "demo", "a long enough password", store.GitNone); err != nil {
		t.Fatal(err)
	}
	st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	defer pr.Close()
	done := make(chan error, 1)
	go func() {
		done <- mailsvc.Main(ctx, []string{"--data", data, "--domain", "example.org,example.net", "--imap", "127.0.0.1:0", "--insecure-auth"}, pw, io.Discard)
		pw.Close()
	}()
	var lines []string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), "listening on") {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	const want = "nymote: mail user demo: address demo@example.org, demo@example.net (log in as demo or demo@example.org)"
	found := false
	for _, l := range lines {
		found = found || l == want
	}
	if !found {
		t.Errorf("console lines:\n%s\nwant the line %q", strings.Join(lines, "\n"), want)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Main: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Main did not return after cancel")
	}
}
