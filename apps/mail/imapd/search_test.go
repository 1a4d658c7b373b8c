package imapd

import (
	"context"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// TestMayContain checks SEARCH's header prefilter against the parse it
// saves: wherever mayContain rules a header out, no field of it matches
// when parsed and decoded (and the plain cases are ruled out, or it would
// save nothing).
func TestMayContain(t *testing.T) {
	hdrs := []string{
		"From: Sender <sender07@example.net>\r\nSubject: Zebra alpha #2\r\n\r\n",
		"Subject: =?utf-8?q?Z=C3=A9bra?= crossing\r\nFrom: a@b\r\n\r\n",
		"Subject: =?iso-8859-1?q?caf=E9?=\r\n\r\n",
		"Subject: folded\r\n zebra\r\n\tline\r\n\r\n",
		"Subject: =?utf-8?q?zeb=72a?= and =?utf-8?b?c2VuZGVyMDdA?=\r\n\r\n",
		"Subject: 1 \u212a\r\n\r\n", // KELVIN SIGN lower-cases to ASCII k
		"Subject: Stra\u00dfe\r\n\r\n",
		"X-Odd: value\r\nSUBJECT: UPPER CASE\r\n\r\n",
	}
	pats := []string{"zebra", "sender07@", "k", "kelvin k", "folded zebra", "zebra line", "café", "z\u00e9bra", "stra\u00dfe", "upper case", "upper", "nothing", "", "=?"}
	ruledOut := 0
	for _, h := range hdrs {
		for _, p := range pats {
			if mayContain(h, p) {
				continue
			}
			ruledOut++
			for _, key := range []string{"subject", "from", "x-odd"} {
				if vals := mailstore.HeaderFieldValues(h, key); matchValues(vals, p) {
					t.Errorf("mayContain(%q, %q) is false, but %s: %q matches", h, p, key, vals)
				}
			}
		}
	}
	if ruledOut == 0 {
		t.Error("mayContain ruled nothing out")
	}
	for _, c := range []struct {
		s, sub string
		want   bool
	}{{"Zebra", "zebra", true}, {"xZEBRA", "zebra", true}, {"zebr", "zebra", false}, {"a@B.c", "@b.", true}, {"", "", true}, {"ab", "", true}} {
		if got := containsFoldASCII(c.s, c.sub); got != c.want {
			t.Errorf("containsFoldASCII(%q, %q) = %v", c.s, c.sub, got)
		}
	}
	if !mayContain("Subject: x\r\n\r\n", "") || mayContain("Subject: x\r\n\r\n", "zebra") || !mayContain(strings.Repeat("a", 10)+"Zebra", "zebra") {
		t.Error("mayContain: plain cases wrong")
	}
}

// TestHeavySearchesWait: while every turn for a heavy SEARCH is taken, a
// SEARCH SUBJECT waits (and is answered, rightly, once a turn is free)
// and a SEARCH UNSEEN, which the index answers, does not.
func TestHeavySearchesWait(t *testing.T) {
	st, err := store.InitData(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(context.Background(), "alice", "password-alice", store.GitNone); err != nil {
		t.Fatal(err)
	}
	ms, err := mailstore.Open(st, mailstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{Mail: ms, InsecureAuth: true, HeavySearches: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); ms.Close(); st.Close() })
	h := &harness{addr: ln.Addr().String(), ms: ms, st: st}
	c := h.login(t, "alice", nil)
	for i, subj := range []string{"zebra crossing", "lunch", "a Zebra"} {
		appendMsg(t, c, "INBOX", msg(i, subj))
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if !srv.acquireHeavy() { // the one turn, held by the test
		t.Fatal("no turn")
	}
	cmd := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "zebra"}}}, nil)
	deadline := time.Now().Add(30 * time.Second)
	for srv.heavyWaiting.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the SEARCH SUBJECT never waited for a turn")
		}
		time.Sleep(time.Millisecond)
	}
	// Commands on one connection are answered in order: UNSEEN from a
	// second session.
	c2 := h.login(t, "alice", nil)
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	d, err := c2.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || len(d.AllUIDs()) != 3 {
		t.Fatalf("SEARCH UNSEEN while the turn is held: %v, %v", d, err)
	}
	if srv.heavyWaiting.Load() != 1 {
		t.Fatal("the SEARCH SUBJECT ran without a turn")
	}
	srv.releaseHeavy()
	d, err = cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := d.AllUIDs(); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("SEARCH SUBJECT zebra = %v, want 1 and 3", got)
	}
}

func TestHeavyCriteria(t *testing.T) {
	for _, c := range []struct {
		c    imap.SearchCriteria
		want bool
	}{
		{imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, false},
		{imap.SearchCriteria{Since: time.Now(), Larger: 10, UID: []imap.UIDSet{{{Start: 1, Stop: 0}}}}, false},
		{imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "x"}}}, true},
		{imap.SearchCriteria{Body: []string{"x"}}, true},
		{imap.SearchCriteria{SentBefore: time.Now()}, true},
		{imap.SearchCriteria{Not: []imap.SearchCriteria{{Text: []string{"x"}}}}, true},
		{imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagSeen}}, {Text: []string{"x"}}}}}, true},
	} {
		if got := heavyCriteria(&c.c); got != c.want {
			t.Errorf("heavyCriteria(%+v) = %v", c.c, got)
		}
	}
	if n := heavySearches(0); n < 1 || n > runtime.GOMAXPROCS(0) {
		t.Errorf("heavySearches(0) = %d", n)
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(41 << 20))
	if n := heavySearches(0); n != min(2, runtime.GOMAXPROCS(0)) {
		t.Errorf("heavySearches(0) under a 41 MiB limit = %d, want 2", n)
	}
	if n := heavySearches(5); n != 5 {
		t.Errorf("heavySearches(5) = %d", n)
	}
}

// TestMatchEntity: SEARCH TEXT and BODY decode transfer encodings and
// charsets in every text part, skip other parts, ignore case, and one
// SEARCH's reused buffers carry nothing from one message to the next.
func TestMatchEntity(t *testing.T) {
	multi := "From: a@b\r\nSubject: Mixed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n" +
		"--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nWmVicmEgY3Jvc3Npbmc=\r\n" + // "Zebra crossing"
		"--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCAF=C3=89 au lait\r\n" +
		"--XX\r\nContent-Type: application/octet-stream\r\n\r\nsecret giraffe\r\n--XX--\r\n"
	long := "Subject: long\r\n\r\n" + strings.Repeat("okapi ", 2000) + "\r\n"
	short := "Subject: short\r\n\r\nlion\r\n"
	for _, c := range []struct {
		raw, pattern string
		text, body   bool
	}{
		{multi, "zebra", true, true},
		{multi, "CROSSING", true, true},
		{multi, "café", true, true},
		{multi, "giraffe", false, false},
		{multi, "mixed", true, false},
		{multi, "WmVicmE", false, false},
		{long, "okapi okapi", true, true},
		{short, "okapi", false, false},
		{short, "lion", true, true},
		{short, "short", true, false},
		{"not a message", "", true, true},
	} {
		sc := &searchCtx{}
		// The long message first, so that its text is in the buffer.
		sc.matchEntity([]byte(long), "x", false)
		for _, includeHeader := range []bool{true, false} {
			want := c.body
			if includeHeader {
				want = c.text
			}
			if got := sc.matchEntity([]byte(c.raw), strings.ToLower(c.pattern), includeHeader); got != want {
				t.Errorf("%.20q: %q (header %v) = %v, want %v", c.raw, c.pattern, includeHeader, got, want)
			}
		}
	}
}
