package imapd

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

type harness struct {
	srv    *Server
	addr   string
	ms     *mailstore.Store
	st     *store.Store
	writes *countingListener
}

// start serves a fresh store with users alice and bob; opts, if given,
// configure the mailstore.
func start(t testing.TB, opts ...mailstore.Options) *harness {
	t.Helper()
	st, err := store.InitData(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if err := st.AddUser(context.Background(), u, "password-"+u, store.GitNone); err != nil {
			t.Fatal(err)
		}
	}
	var o mailstore.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	ms, err := mailstore.Open(st, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{Mail: ms, Domains: []string{"example.org", "example.net"}, InsecureAuth: true, AppendLimit: 1 << 20, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writes := &countingListener{Listener: ln}
	go srv.Serve(writes)
	t.Cleanup(func() { srv.Close(); ms.Close(); st.Close() })
	return &harness{srv: srv, addr: ln.Addr().String(), ms: ms, st: st, writes: writes}
}

// countingListener counts the writes to the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, &l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(b)
}

func (h *harness) login(t testing.TB, user string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(h.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	local, _, _ := strings.Cut(user, "@")
	if err := c.Login(user, "password-"+local).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func appendMsg(t *testing.T, c *imapclient.Client, mbox, msg string, flags ...imap.Flag) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mbox, int64(len(msg)), &imap.AppendOptions{Flags: flags})
	cmd.Write([]byte(msg))
	cmd.Close()
	d, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return d
}

func msg(i int, subject string) string {
	return fmt.Sprintf("From: Bob Example <bob@example.org>\r\nTo: alice@example.org\r\nSubject: %s\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <%d@example.org>\r\nContent-Type: text/plain\r\n\r\nbody number %d\r\n", subject, i, i)
}

func TestCapabilitiesAndSpecialUse(t *testing.T) {
	h := start(t)
	h.login(t, "alice@example.net", nil) // the second domain
	c := h.login(t, "alice@example.org", nil)
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapIMAP4rev2, imap.CapIdle, imap.CapMove, imap.CapUIDPlus, imap.CapSpecialUse,
		imap.CapCreateSpecialUse, imap.CapNamespace, imap.CapESearch, imap.CapListStatus, imap.CapStatusSize,
		imap.CapUnselect, imap.CapLiteralPlus, "APPENDLIMIT=1048576"} {
		if !caps.Has(want) {
			t.Errorf("capability %s missing", want)
		}
	}
	list, err := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: true, ReturnStatus: &imap.StatusOptions{NumMessages: true, Size: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range list {
		var uses []string
		for _, a := range l.Attrs {
			if a != imap.MailboxAttrHasNoChildren && a != imap.MailboxAttrHasChildren {
				uses = append(uses, string(a))
			}
		}
		got[l.Mailbox] = strings.Join(uses, ",")
		if l.Status == nil || l.Status.NumMessages == nil || *l.Status.NumMessages != 0 {
			t.Errorf("LIST-STATUS of %s: got %+v", l.Mailbox, l.Status)
		}
	}
	want := map[string]string{"INBOX": "", "Drafts": `\Drafts`, "Sent": `\Sent`, "Trash": `\Trash`, "Junk": `\Junk`, "Archive": `\Archive`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("LIST: got %v, want %v", got, want)
	}
	if err := c.Create("Lists/go", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrFlagged}}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Lists/go", nil).Wait(); err == nil {
		t.Error("CREATE of an existing mailbox: got OK, want NO")
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Errorf("NAMESPACE: got %+v, %v", ns, err)
	}
	// bob sees none of alice's mailboxes.
	b := h.login(t, "bob", nil)
	bl, _ := b.List("", "*", nil).Collect()
	for _, l := range bl {
		if strings.HasPrefix(l.Mailbox, "Lists") {
			t.Errorf("bob sees alice's %s", l.Mailbox)
		}
	}
}

func TestAppendFetchSearchStore(t *testing.T) {
	h := start(t)
	c := h.login(t, "alice", nil)
	var uv uint32
	for i := 1; i <= 10; i++ {
		subj := "hello"
		if i%2 == 0 {
			subj = "greetings =?utf-8?q?caf=C3=A9?="
		}
		d := appendMsg(t, c, "INBOX", msg(i, subj))
		if d.UID != imap.UID(i) {
			t.Errorf("APPENDUID: got %d, want %d", d.UID, i)
		}
		uv = d.UIDValidity
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 10 || sel.UIDValidity != uv || sel.UIDNext != 11 {
		t.Errorf("SELECT: got %+v", sel)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, Flags: true, Envelope: true, RFC822Size: true,
		BodyStructure: &imap.FetchItemBodyStructure{}, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[1].Envelope.Subject != "greetings café" || msgs[0].Envelope.From[0].Mailbox != "bob" {
		t.Fatalf("FETCH: got %+v", msgs)
	}
	if string(msgs[0].BodySection[0].Bytes) != msg(1, "hello") {
		t.Errorf("BODY[]: got %q", msgs[0].BodySection[0].Bytes)
	}
	for _, f := range msgs[0].Flags {
		if f == imap.FlagSeen {
			t.Errorf("BODY.PEEK set \\Seen")
		}
	}
	// SEARCH by subject (decoded), FROM, body text, flags.
	for _, tc := range []struct {
		name string
		c    imap.SearchCriteria
		want string
	}{
		{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "café"}}}, "2,4,6,8,10"},
		{"from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "bob@"}}}, "1:10"},
		{"body", imap.SearchCriteria{Body: []string{"NUMBER 7"}}, "7"},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, "1:10"},
		{"or-not", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{UID: []imap.UIDSet{imap.UIDSetNum(1)}}, {UID: []imap.UIDSet{imap.UIDSetNum(3)}}}},
			Not: []imap.SearchCriteria{{UID: []imap.UIDSet{imap.UIDSetNum(3)}}}}, "1"},
		{"larger", imap.SearchCriteria{Larger: 10000}, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := c.UIDSearch(&tc.c, &imap.SearchOptions{ReturnAll: true}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			got := "[]"
			if d.All != nil {
				got = fmt.Sprint(d.All)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	// ESEARCH: MIN, MAX, COUNT (SEARCHRES is in TestRawProtocol: imapclient
	// does not send SAVE).
	ed, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "hello"}}},
		&imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil || ed.Min != 1 || ed.Max != 9 || ed.Count != 5 {
		t.Errorf("ESEARCH: got %+v, %v", ed, err)
	}
	// STORE and a non-peek fetch set flags.
	if _, err := c.Store(imap.SeqSetNum(1, 2, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(imap.SeqSetNum(4), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	d, err := c.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, nil).Wait()
	if err != nil || fmt.Sprint(d.AllSeqNums()) != "[1 2 3]" {
		t.Errorf("SEARCH FLAGGED: got %v, %v", d.AllSeqNums(), err)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, NumUnseen: true, Size: true, UIDNext: true}).Wait()
	if err != nil || *st.NumMessages != 10 || *st.NumUnseen != 9 || *st.Size == 0 {
		t.Errorf("STATUS: got %+v, %v", st, err)
	}
}

func TestMoveExpungeUIDPlus(t *testing.T) {
	h := start(t)
	c := h.login(t, "alice", nil)
	for i := 1; i <= 5; i++ {
		appendMsg(t, c, "INBOX", msg(i, "m"))
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	md, err := c.Move(imap.SeqSetNum(2, 3), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(md.SourceUIDs) != "2:3" || fmt.Sprint(md.DestUIDs) != "1:2" {
		t.Errorf("MOVE COPYUID: got %v -> %v", md.SourceUIDs, md.DestUIDs)
	}
	if _, err := c.Move(imap.SeqSetNum(1), "Nowhere").Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Errorf("MOVE to a missing mailbox: got %v, want TRYCREATE", err)
	}
	cd, err := c.Copy(imap.UIDSetNum(5), "Archive").Wait()
	if err != nil || fmt.Sprint(cd.DestUIDs) != "3" {
		t.Errorf("COPY: got %+v, %v", cd, err)
	}
	if _, err := c.Store(imap.UIDSetNum(1, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	// UID EXPUNGE removes only UID 4.
	if _, err := c.UIDExpunge(imap.UIDSetNum(4)).Collect(); err != nil {
		t.Fatal(err)
	}
	all, _ := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if fmt.Sprint(all.AllUIDs()) != "[1 5]" {
		t.Errorf("after MOVE and UID EXPUNGE: got %v, want [1 5]", all.AllUIDs())
	}
	st, _ := c.Status("Archive", &imap.StatusOptions{NumMessages: true, UIDNext: true}).Wait()
	if *st.NumMessages != 3 || st.UIDNext != 4 {
		t.Errorf("Archive: got %d messages, UIDNEXT %d", *st.NumMessages, st.UIDNext)
	}
	// UIDNEXT survives expunging the highest UID and a restart.
	if _, err := c.Store(imap.UIDSetNum(5), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	c.Expunge().Collect()
	ms2, _ := mailstore.Open(h.st, mailstore.Options{})
	defer ms2.Close()
	u2, _ := ms2.User(context.Background(), "alice")
	in2, _ := u2.Mailbox("INBOX")
	if n := in2.Info().UIDNext; n != 6 {
		t.Errorf("UIDNEXT after restart: got %d, want 6", n)
	}
}

func TestIdlePushAcrossSessions(t *testing.T) {
	h := start(t)
	var mu sync.Mutex
	var exists []uint32
	got := make(chan struct{}, 10)
	flagged := make(chan string, 10)
	c1 := h.login(t, "alice", &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, _ := m.Collect()
			if buf != nil {
				flagged <- fmt.Sprint(buf.Flags)
			}
		},
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				mu.Lock()
				exists = append(exists, *d.NumMessages)
				mu.Unlock()
				got <- struct{}{}
			}
		},
	}})
	if _, err := c1.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c1.Idle()
	if err != nil {
		t.Fatal(err)
	}
	c2 := h.login(t, "alice", nil)
	appendMsg(t, c2, "INBOX", msg(1, "push"))
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no EXISTS pushed during IDLE")
	}
	// A commit made outside the server (another mailstore on the same
	// store, as a git push would be) is pushed too.
	ms2, _ := mailstore.Open(h.st, mailstore.Options{})
	defer ms2.Close()
	u2, _ := ms2.User(context.Background(), "alice")
	in2, _ := u2.Mailbox("INBOX")
	if err := ms2.Update(context.Background(), "alice", "external", func(w *mailstore.Writer) error {
		_, err := w.Append(in2, []byte(msg(2, "ext")), nil, time.Time{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no EXISTS pushed for an external commit")
	}
	// Another session's flag change is pushed as FETCH FLAGS.
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-flagged:
		if !strings.Contains(f, `\Flagged`) {
			t.Errorf("pushed flags: %s", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no FETCH FLAGS pushed during IDLE")
	}
	idle.Close()
	idle.Wait()
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(exists) != "[1 2]" {
		t.Errorf("EXISTS: got %v, want [1 2]", exists)
	}
}

func TestBadInput(t *testing.T) {
	h := start(t)
	c, err := imapclient.DialInsecure(h.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "wrong").Wait(); err == nil {
		t.Fatal("wrong password: got OK")
	}
	if err := c.Login("nobody", "password-x").Wait(); err == nil {
		t.Fatal("unknown user: got OK")
	}
	if err := c.Login("alice@other.org", "password-alice").Wait(); err == nil {
		t.Fatal("other domain: got OK")
	}
	// After three failures the right password still gets in: failures slow
	// an address down, they do not shut it out (issue 21, M2).
	if err := c.Login("alice", "password-alice").Wait(); err != nil {
		t.Fatalf("right password after failures: %v", err)
	}
	c2 := start(t).login(t, "alice", nil)
	// Broken MIME and 8-bit headers are stored as they are and fetch.
	for _, m := range []string{
		"Content-Type: multipart/mixed; boundary=x\r\nSubject: broken\r\n\r\n--x\r\nno end",
		"Subject: caf\xe9 8-bit\r\nFrom: \xff\xfe <a@b>\r\n\r\nbody",
		"no header at all",
		"Subject: " + strings.Repeat("h", 100000) + "\r\n\r\nhuge header",
	} {
		appendMsg(t, c2, "INBOX", m)
	}
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c2.Fetch(imap.SeqSetNum(1, 2, 3, 4), &imap.FetchOptions{Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 4 {
		t.Fatalf("FETCH of broken messages: %d, %v", len(msgs), err)
	}
	d, err := c2.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "hhhh"}}}, nil).Wait()
	if err != nil || fmt.Sprint(d.AllSeqNums()) != "[4]" {
		t.Errorf("SEARCH in a huge header: got %v, %v", d.AllSeqNums(), err)
	}
	if _, err := c2.Select("No/Such", nil).Wait(); err == nil {
		t.Error("SELECT of a missing mailbox: got OK")
	}
	if err := c2.Create("", nil).Wait(); err == nil {
		t.Error("CREATE of an empty name: got OK")
	}
	if err := c2.Delete("INBOX").Wait(); err == nil {
		t.Error("DELETE INBOX: got OK")
	}
	if err := c2.Noop().Wait(); err != nil {
		t.Fatalf("session after errors: %v", err)
	}
}

// TestRawProtocol talks IMAP by hand: malformed commands and oversized
// literals get tagged BAD or NO and the session goes on.
func TestRawProtocol(t *testing.T) {
	h := start(t)
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	var untagged []string
	readTagged := func(tag string) string {
		t.Helper()
		untagged = nil
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the reply to %s: %v", tag, err)
			}
			if strings.HasPrefix(line, tag+" ") || strings.HasPrefix(line, "+") {
				return line
			}
			untagged = append(untagged, strings.TrimSpace(line))
		}
	}
	r.ReadString('\n') // greeting
	for _, tc := range []struct{ cmd, want string }{
		{"a1 LOGIN alice password-alice\r\n", "a1 OK"},
		{"a2 FROBNICATE\r\n", "a2 BAD"},
		{"a3 SELECT\r\n", "a3 BAD"},
		{"a4 FETCH 1:* (FLAGS)\r\n", "a4 BAD"},
		{"a5 SELECT INBOX\r\n", "a5 OK"},
		{"a6 FETCH x:y (FLAGS)\r\n", "a6 BAD"}, // a syntax error (go-imap beta.9 on)
		{"a7 APPEND INBOX {2097152}\r\n", "a7 NO"},
		{"a8 STORE 1 +FLAGS (\\Seen\r\n", "a8 BAD"},
		{"a9 NOOP\r\n", "a9 OK"},
		{"b1 APPEND INBOX {14+}\r\nSubject: x\r\n\r\n\r\n", "b1 OK"},
		{"b2 APPEND INBOX {12+}\r\nSubject: y\r\n\r\n", "b2 OK"}, // no blank line
		{"b3 UID SEARCH RETURN (SAVE) SUBJECT y\r\n", "b3 OK"},
		{"b4 UID FETCH $ (UID)\r\n", "b4 OK"},
	} {
		if _, err := conn.Write([]byte(tc.cmd)); err != nil {
			t.Fatal(err)
		}
		if got := readTagged(strings.Fields(tc.want)[0]); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q: got %q, want %s", tc.cmd, got, tc.want)
		}
		if strings.HasPrefix(tc.cmd, "b4 ") && fmt.Sprint(untagged) != "[* 2 FETCH (UID 2)]" {
			t.Errorf("UID FETCH $ after SEARCH RETURN (SAVE): got %q", untagged)
		}
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func TestRenameSubscribeExamineRecent(t *testing.T) {
	h := start(t)
	c := h.login(t, "alice", nil)
	if err := c.Create("Projects/2026/Q1", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, "Projects/2026/Q1", msg(1, "q1"))
	if err := c.Rename("Projects", "Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	list, _ := c.List("", "*", nil).Collect()
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	got := strings.Join(names, " ")
	if !strings.Contains(got, "Work/2026/Q1") || !strings.Contains(got, "Work/2026 ") || strings.Contains(got, "Projects") {
		t.Errorf("after RENAME: %s", got)
	}
	st, err := c.Status("Work/2026/Q1", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 1 {
		t.Errorf("renamed mailbox: %+v, %v", st, err)
	}
	if err := c.Unsubscribe("Work/2026").Wait(); err != nil {
		t.Fatal(err)
	}
	subs, _ := c.List("", "Work*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	for _, l := range subs {
		if l.Mailbox == "Work/2026" {
			t.Error("unsubscribed mailbox listed by LSUB-like LIST")
		}
	}
	// EXAMINE is read-only; \Recent goes to the first SELECT only.
	appendMsg(t, c, "INBOX", msg(2, "recent"))
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect(); err == nil {
		t.Error("STORE in an EXAMINEd mailbox: got OK")
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	d, err := c.Search(&imap.SearchCriteria{Flag: []imap.Flag{`\Recent`}}, nil).Wait()
	if err != nil || fmt.Sprint(d.AllSeqNums()) != "[1]" {
		t.Errorf("SEARCH RECENT in the first session: %v, %v", d.AllSeqNums(), err)
	}
	c2 := h.login(t, "alice", nil)
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	d, err = c2.Search(&imap.SearchCriteria{Flag: []imap.Flag{`\Recent`}}, nil).Wait()
	if err != nil || len(d.AllSeqNums()) != 0 {
		t.Errorf("SEARCH RECENT in the second session: %v, %v", d.AllSeqNums(), err)
	}
	if err := c2.Unauthenticate().Wait(); err != nil {
		t.Errorf("UNAUTHENTICATE: %v", err)
	}
}

// TestIMAP4rev2: a client that enables IMAP4rev2 gets its responses (ESEARCH
// for SEARCH, no RECENT) and the commands work the same.
func TestIMAP4rev2(t *testing.T) {
	h := start(t)
	c := h.login(t, "alice", nil)
	if _, err := c.Enable(imap.CapIMAP4rev2).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, "INBOX", msg(1, "rev2"))
	appendMsg(t, c, "INBOX", msg(2, "rev2 again"))
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	d, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "again"}}}, nil).Wait()
	if err != nil || fmt.Sprint(d.AllSeqNums()) != "[2]" {
		t.Errorf("SEARCH under IMAP4rev2: got %v, %v", d.AllSeqNums(), err)
	}
	md, err := c.Move(imap.SeqSetNum(1), "Archive").Wait()
	if err != nil || fmt.Sprint(md.DestUIDs) != "1" {
		t.Errorf("MOVE under IMAP4rev2: got %+v, %v", md, err)
	}
}

// TestFetchManyCorked: a FETCH of many messages answers every one, bodies
// in order and intact, in far fewer writes than responses (corkConn), and
// the tagged OK comes after them all.
func TestFetchManyCorked(t *testing.T) {
	h := start(t)
	c := h.login(t, "alice", nil)
	const n = 300
	var want []string
	for i := 0; i < n; i++ {
		m := msg(i, fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*37%2000)))
		want = append(want, m)
		appendMsg(t, c, "INBOX", m)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	all := imap.SeqSet{{Start: 1, Stop: 0}}
	before := h.writes.n.Load()
	ms, err := c.Fetch(all, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil || len(ms) != n {
		t.Fatalf("FETCH ENVELOPE: %d messages, %v", len(ms), err)
	}
	if w := h.writes.n.Load() - before; w > n/10 {
		t.Errorf("FETCH ENVELOPE of %d messages took %d writes, want at most %d", n, w, n/10)
	}
	ms, err = c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(ms) != n {
		t.Fatalf("FETCH BODY[]: %d messages, %v", len(ms), err)
	}
	for i, m := range ms {
		if got := string(m.FindBodySection(&imap.FetchItemBodySection{})); got != want[i] {
			t.Fatalf("message %d: got %d bytes, want %d", i+1, len(got), len(want[i]))
		}
	}
}
