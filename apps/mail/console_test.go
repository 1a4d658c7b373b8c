package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/nymote/nymote/apps/internal/console/browsertest"
	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/internal/testutil"
)

// TestConsoleUndoOverIMAP: the mail app serves the web console's API on
// its HTTPS port. A message delivered by SMTP appears in the timeline in
// words; deleted over IMAP, it comes back when the deletion is undone,
// and IMAP sees it again.
func TestConsoleUndoOverIMAP(t *testing.T) {
	s, httpsAddr := startConsoleServer(t)
	addrs := s.addrs
	client := &http.Client{Timeout: hung, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	api := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+httpsAddr+path, strings.NewReader(body))
		req.SetBasicAuth("alice", testPassword)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	type page struct {
		Entries []struct {
			Rev      string
			Protocol string
			Words    []string
		}
	}
	timeline := func() page {
		var p page
		code, body := api("GET", "/api/v1/users/alice/timeline?service=mail", "")
		if code != 200 {
			t.Fatalf("timeline: %d %s", code, body)
		}
		json.Unmarshal([]byte(body), &p)
		return p
	}

	sc, err := smtp.Dial(addrs["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Replace(testMessage("Hello console", "restore me"), "alice@example.org", "carol@elsewhere.test", 1)
	if err := sc.SendMail("carol@elsewhere.test", []string{"alice@example.org"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if p := timeline(); len(p.Entries) == 0 || p.Entries[0].Words[0] != "message “Hello console” arrived in INBOX" || p.Entries[0].Protocol != "SMTP" {
		t.Fatalf("timeline after delivery: %+v", p)
	}

	c := s.imap(t, "alice")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout()
	if got := s.messages(t, "alice", "INBOX"); len(got) != 0 {
		t.Fatalf("INBOX after expunge: %d messages", len(got))
	}
	p := timeline()
	if p.Entries[0].Words[0] != "message “Hello console” deleted from INBOX" || p.Entries[0].Protocol != "IMAP" {
		t.Fatalf("timeline after expunge: %+v", p.Entries[0])
	}
	code, body := api("POST", "/api/v1/users/alice/restore", `{"undo":"`+p.Entries[0].Rev+`"}`)
	if code != 200 || !strings.Contains(body, `"messages_added": 1`) {
		t.Fatalf("undo: %d %s", code, body)
	}
	got := s.messages(t, "alice", "INBOX")
	if len(got) != 1 || !strings.Contains(got[0], "Subject: Hello console") {
		t.Errorf("INBOX over IMAP after the undo: %q", got)
	}
}

// startConsoleServer runs the mail service for alice with an HTTPS port,
// and returns it and the HTTPS address.
func startConsoleServer(t *testing.T) (*server, string) {
	st := newStore(t, "alice")
	ls, addrs := listen(t, nil)
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls.HTTPS = httpsLn
	cfg := mailDefaults()
	cfg.Store, cfg.Domains, cfg.NoInboundChecks = st, []string{"example.org"}, true
	cfg.Logger = slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	out := &testutil.Buffer{}
	cfg.Stdout = out
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{t: t, st: st, addrs: addrs, cancel: cancel, done: make(chan error, 1), out: out}
	go func() { s.done <- mailsvc.Serve(ctx, cfg, ls) }()
	t.Cleanup(s.stop)
	waitFor(t, "the listeners", hung, func() bool { return strings.Count(out.String(), "listening on") >= 7 })

	return s, httpsLn.Addr().String()
}

// TestBrowserMail: in a real browser (headless chromium): sign in, see a
// message delivered by SMTP in the timeline, open it, see its deletion
// over IMAP, undo it from the change's page, and find it over IMAP again.
func TestBrowserMail(t *testing.T) {
	ctx := browsertest.New(t)
	s, httpsAddr := startConsoleServer(t)
	base := "https://" + httpsAddr
	sc, err := smtp.Dial(s.addrs["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Replace(testMessage("Hello browser", "restore me"), "alice@example.org", "carol@elsewhere.test", 1)
	if err := sc.SendMail("carol@elsewhere.test", []string{"alice@example.org"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	sc.Close()
	browsertest.Login(t, ctx, base, "alice", testPassword)
	if tl := browsertest.Text(t, ctx, `ol.timeline`); !strings.Contains(tl, "message “Hello browser” arrived in INBOX") {
		t.Fatalf("timeline:\n%s", tl)
	}
	browsertest.Do(t, ctx, "open the delivery",
		chromedp.Click(chromedp.Search(`//a[contains(., "arrived in INBOX")]`)),
		chromedp.WaitVisible(`li.added a`),
		chromedp.Click(`li.added a`),
		chromedp.WaitVisible(`pre.body`))
	if body := browsertest.Text(t, ctx, `pre.body`); !strings.Contains(body, "restore me") {
		t.Errorf("the message's body: %q", body)
	}
	c := s.imap(t, "alice")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout()
	browsertest.Do(t, ctx, "undo the deletion",
		chromedp.Navigate(base+"/console/"),
		chromedp.Click(chromedp.Search(`//a[contains(., "deleted from INBOX")]`)),
		chromedp.WaitVisible(`li.removed`),
		chromedp.Click(`//button[contains(., "Undo this change")]`),
		// The result's page, not the change's (which has paragraphs too).
		chromedp.WaitVisible(chromedp.Search(`//h1[contains(., "Undone")]`)))
	if done := browsertest.Text(t, ctx, `main`); !strings.Contains(done, "1 message back") {
		t.Errorf("after undo: %q", done)
	}
	got := s.messages(t, "alice", "INBOX")
	if len(got) != 1 || !strings.Contains(got[0], "Subject: Hello browser") {
		t.Errorf("INBOX over IMAP after the undo: %q", got)
	}
}
