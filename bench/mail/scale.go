package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// runScale (-scale n) measures one mailbox of n small messages (about 2 KB,
// a fifth \Seen): both stores are filled directly before their server
// starts, Dovecot's as maildir files (it indexes them at the first SELECT),
// ours through the mailstore package in commits of 2000 APPENDs, the same
// code an IMAP APPEND runs; ours is let finish its work after the start
// (waitIdle). Then SELECT, FETCH 1:* (UID FLAGS), UID SEARCH
// by a subject word, by FROM and UNSEEN, each run once to warm up, then
// five times, the median run reported, as in the phases; then the FETCH, UNSEEN, UID FETCH
// 1:* (FLAGS) and the same with MODSEQ (CONDSTORE) read by a raw client.
func runScale(n int, keep bool, nymoteFlags []string) error {
	tmp, err := os.MkdirTemp("", "nymote-mail-scale-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(tmp)
	} else {
		fmt.Fprintln(os.Stderr, "keeping", tmp)
	}
	os.Chmod(tmp, 0o755)
	msgs := smallMessages(n)
	seen := func(i int) bool { return i%5 == 0 }

	t0 := time.Now()
	dovecotAddr, stopDovecot, _, err := startDovecot(filepath.Join(tmp, "dovecot"), func(home string) error {
		for _, d := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(home, "Maildir", d), 0o755); err != nil {
				return err
			}
		}
		for i, m := range msgs {
			info := ":2,"
			if seen(i) {
				info += "S"
			}
			name := fmt.Sprintf("%d.M%dP1.bench%s", 1700000000+i, i, info)
			if err := os.WriteFile(filepath.Join(home, "Maildir", "cur", name), m, 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dovecot: %w", err)
	}
	defer stopDovecot()
	fmt.Fprintf(os.Stderr, "dovecot filled in %v\n", time.Since(t0).Round(time.Millisecond))
	runtime.GC()
	dres, err := scalePhases(dovecotAddr, n)
	if err != nil {
		return fmt.Errorf("dovecot: %w", err)
	}
	stopDovecot()

	t0 = time.Now()
	nymoteAddr, stopNymote, nymotePID, err := startNymote(filepath.Join(tmp, "nymote"), nymoteFlags, func(data string) error {
		return fillNymote(data, msgs, seen)
	})
	if err != nil {
		return fmt.Errorf("nymote: %w", err)
	}
	defer stopNymote()
	fmt.Fprintf(os.Stderr, "nymote filled and started in %v\n", time.Since(t0).Round(time.Millisecond))
	// After a start the server warms the console's history (a diff of
	// every commit of the fill: about 2 s of a CPU at 100,000 messages),
	// which ran beside the first phases and slowed the go-imap client's
	// FETCH, on two CPUs. The phases measure reads, so they wait until it
	// is done, as the phases of the default mode wait after the APPENDs
	// (the wait is reported, not timed).
	d := waitIdle(nymotePID)
	fmt.Fprintf(os.Stderr, "nymote: %.1f s of background work after the start\n", d.Seconds())
	runtime.GC()
	nres, err := scalePhases(nymoteAddr, n)
	if err != nil {
		return fmt.Errorf("nymote: %w", err)
	}
	// The go-imap client's phases allocate as they parse (100,000 FETCH
	// responses, 80,000 SEARCH numbers), and the Go collector runs as
	// often as the heap this process keeps is small: msgs (200 MB) kept
	// alive until Dovecot's phases were over, then not, made the client
	// collect a dozen times a FETCH against Nymote and about once against
	// Dovecot (0.27-0.30 s against 0.14-0.19 s for the same parsing).
	// Both servers' phases run with msgs alive, each after a collection.
	runtime.KeepAlive(msgs)
	host, _ := os.Hostname()
	fmt.Printf("one mailbox of %d messages (about 2 KB each), %s, %s, %d CPUs\n\n", n, time.Now().UTC().Format("2006-01-02"), host, runtime.NumCPU())
	fmt.Println("| phase | Dovecot | Nymote | ratio (Dovecot time / Nymote time) |")
	fmt.Println("| --- | --- | --- | --- |")
	for i := range dres {
		d, m := dres[i], nres[i]
		fmt.Printf("| %s | %s | %s | %.2f× |\n", d.name, figure(d), figure(m), d.dur.Seconds()/m.dur.Seconds())
	}
	return nil
}

// smallMessages makes n plain messages of about 2 KB with subjects from a
// small vocabulary and senders from 20.
func smallMessages(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 9))
	words := []string{"meeting", "report", "invoice", "holiday", "zebra", "garden", "update", "lunch", "project", "release", "question", "photos"}
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n", 22)
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "From: Sender <sender%02d@example.net>\r\nTo: bench@example.org\r\nSubject: %s %s #%d\r\nDate: %s\r\nMessage-ID: <%d.scale@example.net>\r\nContent-Type: text/plain\r\n\r\n%s",
			r.IntN(20), words[r.IntN(len(words))], words[r.IntN(len(words))], i,
			time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Minute).Format(time.RFC1123Z), i, body)
	}
	return out
}

// fillNymote appends msgs to bench's INBOX in the data folder, through the
// mailstore as an IMAP APPEND does, many to a commit.
func fillNymote(data string, msgs [][]byte, seen func(int) bool) (err error) {
	ctx := context.Background()
	st, err := store.OpenData(data, store.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
	}()
	ms, err := mailstore.Open(st, mailstore.Options{RawCacheBytes: -1})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := ms.Close(); err == nil {
			err = cerr
		}
	}()
	u, err := ms.User(ctx, "bench")
	if err != nil {
		return err
	}
	mb, err := u.Mailbox("INBOX")
	if err != nil {
		return err
	}
	const batch = 2000
	for lo := 0; lo < len(msgs); lo += batch {
		hi := min(lo+batch, len(msgs))
		err := ms.Update(ctx, "bench", "bench: fill", func(w *mailstore.Writer) error {
			for i := lo; i < hi; i++ {
				var flags []imap.Flag
				if seen(i) {
					flags = []imap.Flag{imap.FlagSeen}
				}
				if _, err := w.Append(mb, msgs[i], flags, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("fill %d-%d: %w", lo, hi, err)
		}
	}
	return nil
}

func scalePhases(addr string, n int) ([]result, error) {
	c, err := login(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var res []result
	add := func(r result, err error) error {
		if err == nil {
			fmt.Fprintf(os.Stderr, "  %s: %s\n", r.name, figure(r))
			res = append(res, r)
		}
		return err
	}
	if err := add(warmMedian("SELECT", func() (int64, int, error) {
		d, err := c.Select("INBOX", nil).Wait()
		if err == nil && d.NumMessages != uint32(n) {
			err = fmt.Errorf("SELECT: %d messages, want %d", d.NumMessages, n)
		}
		return 0, 0, err
	})); err != nil {
		return nil, err
	}
	if err := add(warmMedian("FETCH 1:* (UID FLAGS)", func() (int64, int, error) {
		var all imap.SeqSet
		all.AddRange(1, 0)
		msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true}).Collect()
		if err == nil && len(msgs) != n {
			err = fmt.Errorf("FETCH: %d messages, want %d", len(msgs), n)
		}
		return 0, len(msgs), err
	})); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		name string
		crit imap.SearchCriteria
		want int // 0: any
	}{
		{"UID SEARCH SUBJECT zebra", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "zebra"}}}, 0},
		{"UID SEARCH FROM sender07", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "sender07"}}}, 0},
		{"UID SEARCH UNSEEN", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, n - (n+4)/5},
	} {
		if err := add(warmMedian(s.name, func() (int64, int, error) {
			d, err := c.UIDSearch(&s.crit, nil).Wait()
			if err != nil {
				return 0, 0, err
			}
			got := len(d.AllUIDs())
			if got == 0 || (s.want != 0 && got != s.want) {
				return 0, 0, fmt.Errorf("%s: %d found, want %d", s.name, got, s.want)
			}
			return 0, 0, nil
		})); err != nil {
			return nil, err
		}
	}
	// The same reads by a client that only splits the response into
	// lines: the go-imap client's parsing costs more than either server's
	// answer at this scale, so the phases above measure mostly the client
	// (the same for both servers); these measure what the server delivers.
	r, err := dialRaw(addr)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if _, err := r.cmd(`LOGIN bench "` + password + `"`); err != nil {
		return nil, err
	}
	if _, err := r.cmd("SELECT INBOX"); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		name, cmd string
		lines     int // untagged lines wanted (0: any)
		extra     int // more allowed
	}{
		{"FETCH 1:* (UID FLAGS), raw client", "FETCH 1:* (UID FLAGS)", n, 0},
		{"UID SEARCH UNSEEN, raw client", "UID SEARCH UNSEEN", 1, 0},
		{"UID FETCH 1:* (FLAGS), raw client", "UID FETCH 1:* (FLAGS)", n, 0},
		// Last: it turns CONDSTORE on for the session (RFC 7162 3.1), for
		// which Dovecot writes an untagged OK [HIGHESTMODSEQ] too.
		{"UID FETCH 1:* (FLAGS MODSEQ), raw client", "UID FETCH 1:* (FLAGS MODSEQ)", n, 1},
	} {
		if err := add(warmMedian(p.name, func() (int64, int, error) {
			st, err := r.cmd(p.cmd)
			if err == nil && p.lines != 0 && (st.lines < p.lines || st.lines > p.lines+p.extra) {
				err = fmt.Errorf("%s: %d untagged lines, want %d", p.cmd, st.lines, p.lines)
			}
			return st.bytes, 0, err
		})); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// rawClient sends commands and reads their responses as lines, nothing
// more (no literals: the raw phases' responses have none).
type rawClient struct {
	net.Conn
	br  *bufio.Reader
	tag int
}

type rawStats struct {
	bytes int64
	lines int // untagged
}

func dialRaw(addr string) (*rawClient, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &rawClient{Conn: c, br: bufio.NewReaderSize(c, 64<<10)}
	if _, err := r.br.ReadSlice('\n'); err != nil { // greeting
		c.Close()
		return nil, err
	}
	return r, nil
}

func (r *rawClient) cmd(cmd string) (rawStats, error) {
	r.tag++
	tag := fmt.Sprintf("r%d ", r.tag)
	var st rawStats
	if _, err := io.WriteString(r, tag+cmd+"\r\n"); err != nil {
		return st, err
	}
	mid := false // in a line longer than the buffer
	for {
		line, err := r.br.ReadSlice('\n')
		st.bytes += int64(len(line))
		if err != nil && err != bufio.ErrBufferFull {
			return st, err
		}
		start := !mid
		mid = err == bufio.ErrBufferFull // the line's rest follows
		if !start {
			continue
		}
		switch {
		case bytes.HasPrefix(line, []byte("* ")):
			st.lines++
		case bytes.HasPrefix(line, []byte(tag)):
			if !bytes.HasPrefix(line[len(tag):], []byte("OK")) {
				return st, fmt.Errorf("%s: %s", cmd, bytes.TrimSpace(line))
			}
			return st, nil
		}
	}
}
