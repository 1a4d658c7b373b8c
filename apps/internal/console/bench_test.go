package console

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// The figures of issue 19 (opt-in, NYMOTE_CONSOLE_BENCH=1; they build a
// 100k-commit store with git fast-import, which needs git):
//
//	NYMOTE_CONSOLE_BENCH=1 go test ./apps/internal/console -run 'TestBench' -v
//
// TestBenchTimeline100k: the first page of a timeline over 100,000
// commits (half of them another user's) in ≤ 100 ms.
// TestBenchRestore10k: a 10,000-message mailbox whose messages were all
// expunged is restored to before the expunge in ≤ 2 s.

func needBench(t *testing.T) {
	if os.Getenv("NYMOTE_CONSOLE_BENCH") == "" {
		t.Skip("set NYMOTE_CONSOLE_BENCH=1 to run (builds a 100k-commit store)")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git (fast-import)")
	}
}

func newKey() string {
	var b [10]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// fastImport writes commits onto main with git fast-import: each commit
// is a list of (path, content) and a message.
type importer struct {
	t     *testing.T
	cmd   *exec.Cmd
	w     *bufio.Writer
	in    io.WriteCloser
	when  int64
	first bool
	from  string
}

func newImporter(t *testing.T, st *store.Store) *importer {
	head, err := st.Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "--git-dir="+st.Path(), "fast-import", "--quiet")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &importer{t: t, cmd: cmd, w: bufio.NewWriterSize(in, 1<<20), in: in, when: time.Now().Add(-200 * 24 * time.Hour).Unix(), first: true, from: head.String()}
}

func (im *importer) data(b []byte) {
	fmt.Fprintf(im.w, "data %d\n", len(b))
	im.w.Write(b)
	im.w.WriteByte('\n')
}

func (im *importer) commit(author, msg string, files map[string][]byte) {
	im.when++
	fmt.Fprintf(im.w, "commit refs/heads/main\ncommitter %s <%s@localhost> %d +0000\n", author, author, im.when)
	im.data([]byte(msg))
	if im.first {
		fmt.Fprintf(im.w, "from %s\n", im.from)
		im.first = false
	}
	for p, c := range files {
		fmt.Fprintf(im.w, "M 100644 inline %s\n", p)
		im.data(c)
	}
}

func (im *importer) close() {
	im.w.Flush()
	im.in.Close()
	if err := im.cmd.Wait(); err != nil {
		im.t.Fatal(err)
	}
}

// message returns a message's raw content and its .meta record.
func benchMessage(uid int, when time.Time) ([]byte, []byte) {
	raw := []byte(fmt.Sprintf("From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: message %d\r\nDate: %s\r\nMessage-ID: <%d.%s@example.org>\r\n\r\nBody of message %d.\r\n",
		uid, when.Format(time.RFC1123Z), uid, newKey(), uid))
	cache, _ := json.Marshal(mailstore.Parse(raw))
	meta := fmt.Sprintf(`{"uid":%d,"date":%q,"size":%d,"cache":%s}`, uid, when.UTC().Format(time.RFC3339), len(raw), cache)
	return raw, []byte(meta)
}

// benchStore makes a store with alice and bob and their mailboxes, closed.
func benchStore(t *testing.T) (dir string, inbox map[string]string) {
	dir = t.TempDir()
	st, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	inbox = map[string]string{}
	for _, u := range []string{"alice", "bob"} {
		if err := st.AddUser(ctx, u, passwords[u], store.GitNone); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := mailstore.Open(st, mailstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		us, err := ms.User(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		mb, _ := us.Mailbox("INBOX")
		inbox[u] = mb.ID
	}
	ms.Close()
	st.Close()
	return dir, inbox
}

func TestBenchTimeline100k(t *testing.T) {
	needBench(t)
	const n = 100000
	// NYMOTE_CONSOLE_BENCH_DIR keeps the built store for the next run.
	keep := os.Getenv("NYMOTE_CONSOLE_BENCH_DIR")
	if keep != "" {
		if _, err := os.Stat(keep + "/built"); err == nil {
			timelineFigures(t, keep, n)
			return
		}
	}
	dir, inbox := benchStore(t)
	if keep != "" {
		if err := os.RemoveAll(keep); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir, keep); err != nil {
			t.Fatal(err)
		}
		dir = keep
	}
	st, err := store.OpenData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	im := newImporter(t, st)
	uids := map[string]int{}
	for i := 0; i < n; i++ {
		u := "alice"
		if i%2 == 1 {
			u = "bob"
		}
		uids[u]++
		raw, meta := benchMessage(uids[u], time.Now())
		key := newKey()
		im.commit(u, "mail: deliver to 1 local, 0 remote\n", map[string][]byte{
			mailstore.LayoutPath(mailstore.Layout16, u, inbox[u], key, "eml"):  raw,
			mailstore.LayoutPath(mailstore.Layout16, u, inbox[u], key, "meta"): meta,
		})
	}
	im.close()
	st.Close()
	t.Logf("imported %d commits in %v", n, time.Since(start))
	if keep != "" {
		os.WriteFile(keep+"/built", nil, 0o644)
	}
	timelineFigures(t, dir, n)
}

func timelineFigures(t *testing.T, dir string, n int) {
	st, err := store.OpenData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if os.Getenv("NYMOTE_CONSOLE_BENCH_WARM") != "" {
		start := time.Now()
		cpu0 := cpuTime()
		warmHistory(st)
		t.Logf("warm-up (as New does in the background): %v wall, %v CPU", time.Since(start), cpuTime()-cpu0)
	}
	for _, tc := range []struct {
		name string
		f    filter
	}{{"all (first)", filter{}}, {"all", filter{}}, {"all", filter{}}, {"all", filter{}}, {"mail/INBOX", filter{Service: "mail", Folder: "INBOX"}}, {"contacts (none: bounded scan)", filter{Service: "contacts"}}} {
		start := time.Now()
		cpu0 := cpuTime()
		p, err := newHistorian(st, "alice").page("", defaultLimit, tc.f)
		el := time.Since(start)
		cpu := cpuTime() - cpu0
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("first page %-30s %d entries, %d commits looked at: %v wall, %v CPU", tc.name, len(p.Entries), p.Scanned, el, cpu)
		if tc.f.Service != "contacts" && (len(p.Entries) != defaultLimit || p.Entries[0].Words[0] != "message “message "+strconv.Itoa(n/2)+"” arrived in INBOX") {
			t.Errorf("page: %d entries, first %v", len(p.Entries), p.Entries[0].Words)
		}
		if tc.name == "all" {
			t.Logf("goal 100 ms: %s", map[bool]string{true: "met", false: "missed"}[el <= 100*time.Millisecond])
		}
	}
}

func TestBenchRestore10k(t *testing.T) {
	needBench(t)
	const n = 10000
	dir, inbox := benchStore(t)
	st, err := store.OpenData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	im := newImporter(t, st)
	files := map[string][]byte{}
	for i := 1; i <= n; i++ {
		raw, meta := benchMessage(i, time.Now())
		key := newKey()
		files[mailstore.LayoutPath(mailstore.Layout16, "alice", inbox["alice"], key, "eml")] = raw
		files[mailstore.LayoutPath(mailstore.Layout16, "alice", inbox["alice"], key, "meta")] = meta
	}
	im.commit("alice", "mail: deliver 10000 messages\n", files)
	im.close()
	st.Close()
	st, err = store.OpenData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := mailstore.Open(st, mailstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	ctx := context.Background()
	u, err := ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := u.Mailbox("INBOX")
	if len(mb.Messages()) != n {
		t.Fatalf("INBOX holds %d messages", len(mb.Messages()))
	}
	point, _ := st.Resolve("")
	if err := ms.Update(ctx, "alice", "mail: expunge from INBOX", func(w *mailstore.Writer) error {
		for _, m := range mb.Messages() {
			if err := w.Expunge(mb, m); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c := New(Options{Store: st, Mail: ms})
	h := newHistorian(st, "alice")
	ci, err := h.commit(point.String())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cpu0 := cpuTime()
	res, err := (&restorer{c: c, h: h, user: "alice", via: "API"}).restoreFolder(ctx, ServiceMail, "INBOX", ci)
	el := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore of a %d-message mailbox: %v wall, %v CPU (%+v)", n, el, cpuTime()-cpu0, res)
	if res.MessagesAdded != n || len(mb.Messages()) != n {
		t.Errorf("restored %d, INBOX holds %d", res.MessagesAdded, len(mb.Messages()))
	}
	// A figure, not a pass/fail: the machine's load decides the wall time.
	t.Logf("goal 2 s: %s", map[bool]string{true: "met", false: "missed"}[el <= 2*time.Second])
}

// cpuTime is the process's CPU time so far (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
