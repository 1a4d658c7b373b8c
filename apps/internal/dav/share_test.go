package dav_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/calendar/caldav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
	"github.com/nymote/nymote/signpost/capability"
	"github.com/nymote/nymote/store"
)

// startShared serves CalDAV from a new store with alice, with capability
// tokens in front of the handler, and returns the server's URL and data
// directory.
func startShared(t *testing.T) (string, string) {
	t.Helper()
	url, dir, _ := startSharedAs(t, "alice")
	return url, dir
}

// startSharedAs is startShared with user, and returns the DAV handler as
// well (without the token check in front).
func startSharedAs(t *testing.T, user string) (string, string, http.Handler) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(context.Background(), user, davtest.Users[user], store.GitNone); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	inner := make(chan http.Handler, 1)
	cfg := dav.Config{Options: dav.Options{Store: st, Kind: caldav.New(0)}, InsecureHTTP: true,
		Wrap: func(h http.Handler) http.Handler { inner <- h; return capability.Handler(dir, h, dav.WithUser) }}
	go func() { done <- dav.Serve(ctx, cfg, []dav.Listener{{Proto: "http", Listener: ln}}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		st.Close()
	})
	return "http://" + ln.Addr().String(), dir, <-inner
}

func event(uid, summary string) string {
	return fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//alice//EN\r\nBEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260201T090000Z\r\nDTEND:20260201T100000Z\r\nSUMMARY:%s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", uid, summary)
}

// do sends a request with basic authentication as user with password pass
// (none if user is "").
func do(t *testing.T, method, url, user, pass, body string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// TestShareCalendar: alice shares her calendar "work" read-only with bob
// by a capability token. Bob's CalDAV client (python3-caldav) sees her
// events and her later edits; his write is refused; expired, tampered,
// revoked, foreign and widened tokens, and paths outside the collection,
// are refused.
func TestShareCalendar(t *testing.T) {
	base, dir := startShared(t)
	alice := davtest.Users["alice"]
	if code, body := do(t, "MKCALENDAR", base+"/alice/work/", "alice", alice, ""); code != http.StatusCreated {
		t.Fatalf("MKCALENDAR: %d %s", code, body)
	}
	if code, body := do(t, "PUT", base+"/alice/work/standup.ics", "alice", alice, event("standup", "standup"), "Content-Type", "text/calendar"); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, body)
	}
	ro, err := capability.Mint(dir, "/alice/work/", capability.Read, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a read-only token: %d characters", len(ro))
	col := base + "/alice/work/"

	py := "/usr/bin/python3"
	hasPy := exec.Command(py, "-c", "import caldav").Run() == nil
	bob := func(mode string) string {
		out, err := exec.Command(py, "testdata/python_share.py", col, ro, mode).CombinedOutput()
		t.Logf("python3-caldav %s:\n%s", mode, out)
		if err != nil {
			t.Fatalf("python3-caldav %s: %v", mode, err)
		}
		return string(out)
	}
	if hasPy {
		if out := bob("list"); !strings.Contains(out, "EVENT standup\nOK") {
			t.Fatalf("bob does not see alice's event")
		}
	} else {
		t.Log("python3-caldav is not installed (apt-get install -y python3-caldav): raw requests only")
	}
	// Alice edits; bob sees the edit.
	do(t, "PUT", base+"/alice/work/standup.ics", "alice", alice, event("standup", "standup moved"), "Content-Type", "text/calendar")
	do(t, "PUT", base+"/alice/work/review.ics", "alice", alice, event("review", "review"), "Content-Type", "text/calendar")
	if hasPy {
		if out := bob("list"); !strings.Contains(out, "EVENT review\nEVENT standup moved\nOK") {
			t.Fatalf("bob does not see alice's edits")
		}
		if out := bob("write"); !strings.Contains(out, "REFUSED") {
			t.Fatalf("bob wrote with a read-only token")
		}
	}
	if code, _ := do(t, "GET", col+"review.ics", "bob", ro, ""); code != http.StatusOK {
		t.Fatalf("GET with the token: %d", code)
	}

	write := func(token string) (int, string) {
		return do(t, "PUT", col+"bob.ics", "bob", token, event("bob", "bob"), "Content-Type", "text/calendar")
	}
	widened, err := capability.Attenuate(ro, capability.Read|capability.Write, time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := capability.Mint(dir, "/alice/work/", capability.Read, time.Now().Add(-time.Minute))
	rw, _ := capability.Mint(dir, "/alice/work/", capability.Read|capability.Write, time.Now().Add(time.Hour))
	narrowed, _ := capability.Attenuate(rw, capability.Read, time.Time{}, "")
	foreign, _ := capability.Mint(t.TempDir(), "/alice/work/", capability.Read|capability.Write, time.Now().Add(time.Hour))
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(rw, capability.TokenPrefix))
	raw[len(raw)/2] ^= 0x20
	tampered := capability.TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	// Swap the rights caveat's text for a wider one, keeping the signature.
	rawRO, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(ro, capability.TokenPrefix))
	forged := capability.TokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(rawRO), "rights read", "rights rw\x00\x00", 1)))

	refused := []struct{ name, token, method, path, want string }{
		{"read-only writes", ro, "PUT", "bob.ics", "allows read, not write"},
		{"widened", widened, "PUT", "bob.ics", "allows read, not write"},
		{"narrowed", narrowed, "PUT", "bob.ics", "allows read, not write"},
		{"expired", expired, "GET", "review.ics", "expired"},
		{"tampered", tampered, "GET", "review.ics", "refused"},
		{"forged caveat", forged, "PUT", "bob.ics", "refused"},
		{"foreign", foreign, "GET", "review.ics", "not minted by this node"},
		{"malformed", capability.TokenPrefix + "!!", "GET", "review.ics", "malformed"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			var code int
			var body string
			if c.method == "PUT" {
				code, body = write(c.token)
			} else {
				code, body = do(t, c.method, col+c.path, "bob", c.token, "")
			}
			if code != http.StatusForbidden || !strings.Contains(body, c.want) {
				t.Fatalf("%s: %d %s, want 403 with %q", c.name, code, body, c.want)
			}
		})
	}
	// Outside the collection, even for alice's own default calendar or
	// the account root, or by a MOVE's Destination.
	for _, p := range []string{"/alice/", "/alice/default/", "/", "/alice/work/../default/"} {
		if code, body := do(t, "PROPFIND", base+p, "bob", rw, "", "Depth", "0"); code != http.StatusForbidden {
			t.Fatalf("PROPFIND %s with the token: %d %s", p, code, body)
		}
	}
	if code, body := do(t, "MOVE", col+"review.ics", "bob", rw, "", "Destination", base+"/alice/default/review.ics"); code != http.StatusForbidden {
		t.Fatalf("MOVE out of the collection: %d %s", code, body)
	}
	// A read-write token writes; once revoked, neither it nor a token
	// made from it works.
	if code, body := write(rw); code != http.StatusCreated {
		t.Fatalf("PUT with a read-write token: %d %s", code, body)
	}
	if _, err := capability.Revoke(dir, rw); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{rw, narrowed} {
		if code, body := do(t, "GET", col+"review.ics", "bob", tok, ""); code != http.StatusForbidden || !strings.Contains(body, "revoked") {
			t.Fatalf("a revoked token: %d %s", code, body)
		}
	}
	// The read-only token still works, and alice's password too.
	if code, _ := do(t, "GET", col+"review.ics", "bob", ro, ""); code != http.StatusOK {
		t.Fatalf("GET with the other token after a revoke: %d", code)
	}
	if code, _ := do(t, "GET", col+"review.ics", "alice", alice, ""); code != http.StatusOK {
		t.Fatalf("alice's own GET: %d", code)
	}
}

// TestSubscription: bob's calendar appliance keeps a copy of the calendar
// alice shared with it (read-only token): alice's events appear in bob's
// own store, where bob's client reads them with bob's password; alice's
// edits and deletions follow at the next sync; a revoked token stops the
// sync with the owner's reason.
func TestSubscription(t *testing.T) {
	aliceURL, aliceDir := startShared(t)
	bobURL, _, bobHandler := startSharedAs(t, "bob")
	alice := davtest.Users["alice"]
	do(t, "MKCALENDAR", aliceURL+"/alice/work/", "alice", alice, "")
	do(t, "PUT", aliceURL+"/alice/work/standup.ics", "alice", alice, event("standup", "standup"), "Content-Type", "text/calendar")
	do(t, "PUT", aliceURL+"/alice/work/review.ics", "alice", alice, event("review", "review"), "Content-Type", "text/calendar")
	tok, err := capability.Mint(aliceDir, "/alice/work/", capability.Read, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sub := &dav.Subscription{Remote: aliceURL + "/alice/work/", Token: tok, Local: "/bob/alice-work/", Kind: caldav.New(0)}
	ctx := context.Background()
	sync := func(wantW, wantD int) {
		t.Helper()
		w, d, err := sub.Sync(ctx, bobHandler)
		if err != nil || w != wantW || d != wantD {
			t.Fatalf("Sync: wrote %d, deleted %d, %v; want %d, %d", w, d, err, wantW, wantD)
		}
	}
	sync(2, 0)
	sync(0, 0) // nothing changed: nothing fetched
	bob := davtest.Users["bob"]
	if code, body := do(t, "GET", bobURL+"/bob/alice-work/standup.ics", "bob", bob, ""); code != http.StatusOK || !strings.Contains(body, "SUMMARY:standup") {
		t.Fatalf("bob's copy: %d %s", code, body)
	}
	do(t, "PUT", aliceURL+"/alice/work/standup.ics", "alice", alice, event("standup", "standup moved"), "Content-Type", "text/calendar")
	do(t, "DELETE", aliceURL+"/alice/work/review.ics", "alice", alice, "")
	sync(1, 1)
	if code, body := do(t, "GET", bobURL+"/bob/alice-work/standup.ics", "bob", bob, ""); code != http.StatusOK || !strings.Contains(body, "standup moved") {
		t.Fatalf("bob's copy after alice's edit: %d %s", code, body)
	}
	if code, _ := do(t, "GET", bobURL+"/bob/alice-work/review.ics", "bob", bob, ""); code != http.StatusNotFound {
		t.Fatalf("a deleted event is still in bob's copy: %d", code)
	}
	if _, err := capability.Revoke(aliceDir, tok); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sub.Sync(ctx, bobHandler); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("Sync with a revoked token: %v", err)
	}
}
