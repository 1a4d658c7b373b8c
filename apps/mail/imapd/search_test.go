package imapd

import (
	"context"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

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

// TestSearchTurns: while every turn for SEARCHes that read messages is
// taken, a SEARCH SUBJECT and a SEARCH BODY wait (and are answered,
// rightly, once turns are free) and a SEARCH UNSEEN, which the index
// answers, does not.
func TestSearchTurns(t *testing.T) {
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
	srv := New(Options{Mail: ms, InsecureAuth: true, BodySearches: 1, HeaderSearches: 1})
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
	for _, tr := range []*turns{srv.bodySearches, srv.headerSearches} {
		if !tr.acquire(nil) { // the one turn, held by the test
			t.Fatal("no turn")
		}
	}
	sessions := map[string]*imapclient.Client{}
	cmds := map[string]*imapclient.SearchCommand{}
	for _, k := range []struct {
		name string
		tr   *turns
		c    imap.SearchCriteria
	}{
		{"SUBJECT", srv.headerSearches, imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "zebra"}}}},
		{"BODY", srv.bodySearches, imap.SearchCriteria{Body: []string{"NUMBER 2"}}},
	} {
		// Commands on one connection are answered in order: a session each.
		sessions[k.name] = h.login(t, "alice", nil)
		if _, err := sessions[k.name].Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		cmds[k.name] = sessions[k.name].UIDSearch(&k.c, nil)
		deadline := time.Now().Add(30 * time.Second)
		for k.tr.waiting.Load() != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("the SEARCH %s never waited for a turn", k.name)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	d, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || len(d.AllUIDs()) != 3 {
		t.Fatalf("SEARCH UNSEEN while the turns are held: %v, %v", d, err)
	}
	if srv.bodySearches.waiting.Load() != 1 || srv.headerSearches.waiting.Load() != 1 {
		t.Fatal("a SEARCH ran without a turn")
	}
	srv.headerSearches.release()
	srv.bodySearches.release()
	for name, want := range map[string][]imap.UID{"SUBJECT": {1, 3}, "BODY": {3}} {
		d, err := cmds[name].Wait()
		if err != nil {
			t.Fatal(err)
		}
		if got := d.AllUIDs(); !slices.Equal(got, want) {
			t.Errorf("SEARCH %s = %v, want %v", name, got, want)
		}
	}
}

func TestSearchReads(t *testing.T) {
	for _, c := range []struct {
		c    imap.SearchCriteria
		want int
	}{
		{imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, readsIndex},
		{imap.SearchCriteria{Since: time.Now(), Larger: 10, UID: []imap.UIDSet{{{Start: 1, Stop: 0}}}}, readsIndex},
		{imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "x"}}}, readsHeaders},
		{imap.SearchCriteria{SentBefore: time.Now()}, readsHeaders},
		{imap.SearchCriteria{Body: []string{"x"}}, readsBodies},
		{imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "x"}}, Not: []imap.SearchCriteria{{Text: []string{"x"}}}}, readsBodies},
		{imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagSeen}}, {SentSince: time.Now()}}}}, readsHeaders},
	} {
		if got := searchReads(&c.c); got != c.want {
			t.Errorf("searchReads(%+v) = %v, want %v", c.c, got, c.want)
		}
	}
	for _, c := range []struct {
		limit         int64
		n, body, hdrs int
	}{
		{math.MaxInt64, 0, runtime.GOMAXPROCS(0), 64},
		{41 << 20, 0, min(2, runtime.GOMAXPROCS(0)), 10},
		{13 << 20, 0, 1, 3},
		{4 << 20, 0, 1, 2},
		{13 << 20, 5, 5, 5},
	} {
		old := debug.SetMemoryLimit(c.limit)
		body := cap(newTurns(c.n, 16<<20, 1, runtime.GOMAXPROCS(0), runtime.GOMAXPROCS(0)).ch)
		hdrs := cap(newTurns(c.n, 4<<20, 2, math.MaxInt, 64).ch)
		debug.SetMemoryLimit(old)
		if body != c.body || hdrs != c.hdrs {
			t.Errorf("limit %d MiB, n %d: %d body and %d header turns, want %d and %d", c.limit>>20, c.n, body, hdrs, c.body, c.hdrs)
		}
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
	// Single-byte charsets (package charset): a Windows-1252 body, a
	// Windows-1251 subject and a KOI8-R body, and an ISO-8859-2 part after one in a charset that
	// is not decoded (Shift_JIS: searched as raw bytes, and the parts
	// after it still searched).
	latin := "From: a@b\r\nSubject: menu\r\nContent-Type: text/plain; charset=windows-1252\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 cr=E8me br=FBl=E9e\r\n"
	cyr := "From: a@b\r\nSubject: =?windows-1251?B?zvjo4erg?=\r\nContent-Type: text/plain; charset=KOI8-R\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4, \xcd\xc9\xd2\r\n"
	mixed := "From: a@b\r\nSubject: places\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=YY\r\n\r\n" +
		"--YY\r\nContent-Type: text/plain; charset=shift_jis\r\n\r\n\x82\xb1 tokyo\r\n" +
		"--YY\r\nContent-Type: text/plain; charset=iso-8859-2\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=A3=F3d=BC\r\n--YY--\r\n"
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
		{latin, "CAFÉ CRÈME", true, true},
		{latin, "brûlée", true, true},
		{latin, "caf=e9", false, false},
		{cyr, "ошибка", true, false},
		{cyr, "привет", true, true},
		{cyr, "ПРИВЕТ, МИР", true, true},
		{mixed, "tokyo", true, true},
		{mixed, "łódź", true, true},
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

// TestAppendNums: appendUID and appendSeq give the set AddNum gives, in
// order or not.
func TestAppendNums(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		var a, b imap.UIDSet
		var c, d imap.SeqSet
		n := uint32(1)
		for i := 0; i < 50; i++ {
			if trial%3 == 0 {
				n = 1 + r.Uint32N(80) // any order, repeats
			} else {
				n += 1 + r.Uint32N(2)*r.Uint32N(4) // ascending, runs
			}
			a = appendUID(a, imap.UID(n))
			b.AddNum(imap.UID(n))
			c = appendSeq(c, n)
			d.AddNum(n)
		}
		if a.String() != b.String() || c.String() != d.String() {
			t.Fatalf("trial %d: %s / %s, want %s / %s", trial, a, c, b, d)
		}
	}
}
