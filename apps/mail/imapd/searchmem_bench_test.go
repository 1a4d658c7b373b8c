package imapd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/mailstore/mailfill"
	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/store"
)

// BenchmarkSessionsMemory measures the mail program's memory while
// clients at once do what TestBootMail64MiB's clients do (images/), and
// the heavier SEARCHes besides, on one mailbox of n messages (the boot
// test's: 1.9 KB each, every fifth about a zebra, every fourth \Seen),
// written through the mailstore and repacked, as a data disk that grew.
// The server runs in this process under a Go memory limit, as in the
// appliance (its caches sized from it); the clients stream what they are
// sent, so that what they hold is small. For each phase it logs the wall
// time, the peak of the heap (objects, live or not yet swept, sampled
// every 2 ms), the peak of the live heap (after each GC), the bytes
// allocated and the peak RSS (VmHWM, reset before the phase), and reports
// the peaks of the SEARCH phases as metrics.
//
// NYMOTE_MEM_N sets n (default 50,000), NYMOTE_MEM_CLIENTS the clients
// (default 8), NYMOTE_MEM_PHASES a regexp of the phases to run after
// login+SELECT (default all), NYMOTE_MEM_LIMIT the memory limit in MiB (default 41, the
// limit of a 96 MiB appliance), NYMOTE_MEM_DIR keeps the filled store
// there between runs (filling 50,000 takes a few minutes).
//
//	NYMOTE_MEM_DIR=/tmp/mail50k go test ./apps/mail/imapd -run XXX -bench SessionsMemory -benchtime 1x
func BenchmarkSessionsMemory(b *testing.B) {
	n, clients, limit := envInt(b, "NYMOTE_MEM_N", 50000), envInt(b, "NYMOTE_MEM_CLIENTS", 8), envInt(b, "NYMOTE_MEM_LIMIT", 41)
	dir := os.Getenv("NYMOTE_MEM_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	if _, err := os.Stat(filepath.Join(dir, store.RepoDir)); err != nil {
		if err := mailfill.Fill(context.Background(), dir, n, true, nil); err != nil {
			b.Fatal(err)
		}
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(int64(limit) << 20))
	ctx := context.Background()
	st, err := store.OpenData(dir, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ms, err := mailstore.Open(st, mailstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer ms.Close()
	srv := New(Options{Mail: ms, InsecureAuth: true, Logger: slog.New(slog.NewTextHandler(testWriter{b}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	u, _ := ms.User(ctx, "alice") // the index loaded before the phases
	_ = u

	zebra, unseen := 0, 0
	for i := range n {
		if i%5 == 2 {
			zebra++
		}
		if i%4 != 0 {
			unseen++
		}
	}
	cs := make([]*imapclient.Client, clients)
	type phase struct {
		name string
		run  func(k int, c *imapclient.Client) error
	}
	search := func(want int, keys ...imap.SearchCriteria) func(int, *imapclient.Client) error {
		return func(k int, c *imapclient.Client) error {
			crit := keys[0]
			d, err := c.UIDSearch(&crit, nil).Wait()
			if err != nil {
				return err
			}
			if want >= 0 && len(d.AllUIDs()) != want {
				return fmt.Errorf("%d found, want %d", len(d.AllUIDs()), want)
			}
			return nil
		}
	}
	hdr := func(k, v string) imap.SearchCriteria {
		return imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: k, Value: v}}}
	}
	login := phase{"login+SELECT", func(k int, _ *imapclient.Client) error {
		c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
		if err != nil {
			return err
		}
		cs[k] = c
		if err := c.Login("alice", "correct horse").Wait(); err != nil {
			return err
		}
		d, err := c.Select("INBOX", nil).Wait()
		if err == nil && d.NumMessages != uint32(n) {
			err = fmt.Errorf("SELECT: %d messages, want %d", d.NumMessages, n)
		}
		return err
	}}
	phases := []phase{
		login,
		{"FETCH 1:* (FLAGS)", func(k int, c *imapclient.Client) error {
			cmd := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true})
			got := 0
			for m := cmd.Next(); m != nil; m = cmd.Next() {
				for it := m.Next(); it != nil; it = m.Next() {
				}
				got++
			}
			if err := cmd.Close(); err != nil {
				return err
			}
			if got != n {
				return fmt.Errorf("FETCH: %d messages, want %d", got, n)
			}
			return nil
		}},
		{"20 BODY.PEEK[]", func(k int, c *imapclient.Client) error {
			r := rand.New(rand.NewSource(int64(k)))
			for range 20 {
				i := r.Intn(n)
				cmd := c.Fetch(imap.SeqSetNum(uint32(i+1)), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
				var body []byte
				for m := cmd.Next(); m != nil; m = cmd.Next() {
					for it := m.Next(); it != nil; it = m.Next() {
						if bs, ok := it.(imapclient.FetchItemDataBodySection); ok {
							body, _ = io.ReadAll(bs.Literal)
						}
					}
				}
				if err := cmd.Close(); err != nil {
					return err
				}
				if !strings.Contains(string(body), fmt.Sprintf("#%d\r\n", i)) {
					return fmt.Errorf("body of %d: %.100q", i+1, body)
				}
			}
			return nil
		}},
		{"UID SEARCH SUBJECT zebra", search(zebra, hdr("Subject", "zebra"))},
		{"UID SEARCH UNSEEN", search(unseen, imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}})},
		{"UID SEARCH FROM sender07", search(n/20, hdr("From", "sender07@"))},
		{"UID SEARCH BODY tempor", search(n, imap.SearchCriteria{Body: []string{"tempor"}})},
		{"UID SEARCH TEXT zebra", search(zebra, imap.SearchCriteria{Text: []string{"zebra"}})},
	}
	if re := os.Getenv("NYMOTE_MEM_PHASES"); re != "" {
		keep := regexp.MustCompile(re)
		phases = slices.DeleteFunc(phases[1:], func(p phase) bool { return !keep.MatchString(p.name) })
		phases = append([]phase{login}, phases...)
	}
	for i := 0; i < b.N; i++ {
		for _, p := range phases {
			m := measure(func() error {
				var wg sync.WaitGroup
				errs := make([]error, clients)
				for k := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[k] = p.run(k, cs[k])
					}()
				}
				wg.Wait()
				for k, err := range errs {
					if err != nil {
						return fmt.Errorf("client %d: %w", k, err)
					}
				}
				return nil
			})
			if m.err != nil {
				b.Fatalf("%s: %v", p.name, m.err)
			}
			b.Logf("%-26s %d clients: %6.2f s, peak heap %5.1f MiB, peak live %5.1f MiB, alloc %7.1f MiB, peak RSS %5.1f MiB",
				p.name, clients, m.wall.Seconds(), mib(m.peakHeap), mib(m.peakLive), mib(m.alloc), mib(m.peakRSS))
			if strings.HasPrefix(p.name, "UID SEARCH") {
				name := strings.Fields(p.name)[2]
				b.ReportMetric(mib(m.peakHeap), name+"-peakMiB")
				b.ReportMetric(m.wall.Seconds(), name+"-s")
			}
		}
		for k, c := range cs {
			c.Close()
			cs[k] = nil
		}
	}
}

type memFigures struct {
	wall                      time.Duration
	peakHeap, peakLive, alloc uint64
	peakRSS                   uint64
	err                       error
}

// measure runs fn and samples the heap meanwhile.
func measure(fn func() error) memFigures {
	runtime.GC()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // resets VmHWM
	var f memFigures
	p := testutil.SampleHeap(func() {
		t0 := time.Now()
		f.err = fn()
		f.wall = time.Since(t0)
	})
	f.peakHeap, f.peakLive, f.alloc = p.Heap, p.Live, p.Alloc
	f.peakRSS = vmHWM()
	return f
}

// vmHWM is the process's peak RSS in bytes (0 where unknown).
func vmHWM() uint64 {
	fh, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive count", name, v)
	}
	return n
}
