// Command mail benchmarks Nymote's mail appliance against Dovecot with the
// same IMAP client (go-imap v2), in one run, on loopback:
//
//	go run ./bench/mail [-n 5000] [-seed 1] [-only nymote|dovecot] [-nymote-flags "--body-cache 64"] [-resync-n 10000] [-only-resync]
//	go run ./bench/mail -mem 1000,5000,10000 [-nymote-flags ...]   (mem.go)
//	go run ./bench/mail -scale 100000 [-nymote-flags ...]           (scale.go)
//
// It starts Dovecot (Debian's dovecot-imapd) with a private configuration
// (maildir, fsync as shipped, plaintext auth on loopback) in a temporary
// folder, and the mail appliance (built from ./apps/mail) on a fresh data
// folder, then runs the same phases against each: APPEND of n messages of
// 1-50 KB (a fifth multipart with an attachment), SELECT, FETCH 1:* (FLAGS
// UID RFC822.SIZE ENVELOPE), FETCH of all bodies, UID SEARCH by a subject
// word and by FROM, STORE +FLAGS \Seen on all, 8 concurrent clients
// fetching 200 random bodies each, and APPEND of 200 messages by a client
// that behaves like Python's imaplib (Nagle on, the literal and its CRLF in
// two writes: see appendLikeImaplib), then the resync phases (resync.go:
// CONDSTORE against a full resync). Read phases run once to warm up, then
// five times, and the imaplib-like APPEND five times (a new mailbox each);
// the median run is reported. It prints a Markdown table with each phase's ratio
// (Dovecot's time divided by Nymote's: above 1.0 is faster than Dovecot).
// Run it as root (Dovecot drops privileges to nobody).
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

const password = "bench password 1"

func main() {
	n := flag.Int("n", 5000, "messages to append")
	seed := flag.Uint64("seed", 1, "random seed for the messages")
	keep := flag.Bool("keep", false, "keep the temporary folder")
	only := flag.String("only", "", `run one server only ("nymote" or "dovecot"), to profile it; no ratios`)
	nymoteFlags := flag.String("nymote-flags", "", `more flags for the mail appliance, space-separated (e.g. "--body-cache 64")`)
	mem := flag.String("mem", "", `instead of the phases: memory (RSS) after APPENDs of 12 KB messages, at these counts ("1000,5000,10000"; see mem.go)`)
	scale := flag.Int("scale", 0, "instead of the phases: one mailbox of this many messages, written to both stores directly, then SELECT, FETCH FLAGS of all, SEARCH (see scale.go)")
	flag.Parse()
	var err error
	switch {
	case *mem != "":
		err = runMem(*mem, *keep, *only, strings.Fields(*nymoteFlags))
	case *scale > 0:
		err = runScale(*scale, *keep, strings.Fields(*nymoteFlags))
	default:
		err = run(*n, *seed, *keep, *only, strings.Fields(*nymoteFlags))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type result struct {
	name  string
	dur   time.Duration
	bytes int64
	ops   int
}

func run(n int, seed uint64, keep bool, only string, nymoteFlags []string) error {
	if only != "" && only != "nymote" && only != "dovecot" {
		return fmt.Errorf("-only %q: want nymote or dovecot", only)
	}
	tmp, err := os.MkdirTemp("", "nymote-mail-bench-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(tmp)
	} else {
		fmt.Fprintln(os.Stderr, "keeping", tmp)
	}
	os.Chmod(tmp, 0o755)
	msgs := makeMessages(n, seed)
	var total int64
	for _, m := range msgs {
		total += int64(len(m))
	}
	fmt.Fprintf(os.Stderr, "%d messages, %.1f MB\n", n, float64(total)/1e6)

	var dres, nres []result
	if only != "nymote" {
		dovecotAddr, stopDovecot, _, err := startDovecot(filepath.Join(tmp, "dovecot"), nil)
		if err != nil {
			return fmt.Errorf("dovecot: %w", err)
		}
		defer stopDovecot()
		fmt.Fprintln(os.Stderr, "dovecot ...")
		if dres, err = phases(dovecotAddr, msgs, seed, func() {}); err != nil {
			return fmt.Errorf("dovecot: %w", err)
		}
	}
	if only != "dovecot" {
		nymoteAddr, stopNymote, nymotePID, err := startNymote(filepath.Join(tmp, "nymote"), nymoteFlags, nil)
		if err != nil {
			return fmt.Errorf("nymote: %w", err)
		}
		defer stopNymote()
		fmt.Fprintf(os.Stderr, "nymote (pid %d) ...\n", nymotePID)
		// The store repacks in the background while APPENDs pile up loose
		// objects; the read phases measure reads, so they wait until it is
		// done (the wait is reported, not timed).
		nres, err = phases(nymoteAddr, msgs, seed, func() {
			d := waitIdle(nymotePID)
			fmt.Fprintf(os.Stderr, "nymote: %.1f s of background work after the APPENDs\n", d.Seconds())
		})
		if err != nil {
			return fmt.Errorf("nymote: %w", err)
		}
	}
	if only != "" {
		for _, r := range append(dres, nres...) {
			fmt.Printf("| %s | %s |\n", r.name, figure(r))
		}
		return nil
	}
	host, _ := os.Hostname()
	fmt.Printf("%d messages (%.1f MB), %s, %s, %d CPUs\n\n", n, float64(total)/1e6, time.Now().UTC().Format("2006-01-02"), host, runtime.NumCPU())
	fmt.Println("| phase | Dovecot | Nymote | ratio (Dovecot time / Nymote time) |")
	fmt.Println("| --- | --- | --- | --- |")
	for i := range dres {
		d, m := dres[i], nres[i]
		fmt.Printf("| %s | %s | %s | %.2f× |\n", d.name, figure(d), figure(m), d.dur.Seconds()/m.dur.Seconds())
	}
	return nil
}

func figure(r result) string {
	s := fmt.Sprintf("%.3f s", r.dur.Seconds())
	switch {
	case r.bytes > 0:
		s += fmt.Sprintf(" (%.0f MB/s)", float64(r.bytes)/1e6/r.dur.Seconds())
	case r.ops > 0:
		s += fmt.Sprintf(" (%.0f/s)", float64(r.ops)/r.dur.Seconds())
	}
	return s
}

// makeMessages makes n messages of 1-50 KB; every fifth is multipart with a
// base64 attachment. Subjects draw from a small vocabulary, senders from 20.
func makeMessages(n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 7))
	words := []string{"meeting", "report", "invoice", "holiday", "zebra", "garden", "update", "lunch", "project", "release", "question", "photos"}
	text := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.\r\n"
	var out [][]byte
	for i := 0; i < n; i++ {
		size := 1000 + r.IntN(49000)
		subj := words[r.IntN(len(words))] + " " + words[r.IntN(len(words))] + fmt.Sprintf(" #%d", i)
		from := fmt.Sprintf("sender%02d@example.net", r.IntN(20))
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: Sender <%s>\r\nTo: bench@example.org\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.bench@example.net>\r\nMIME-Version: 1.0\r\n",
			from, subj, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Minute).Format(time.RFC1123Z), i)
		if i%5 == 0 {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", i, i)
			for b.Len() < size/3 {
				b.WriteString(text)
			}
			fmt.Fprintf(&b, "\r\n--b%d\r\nContent-Type: application/octet-stream; name=\"file%d.bin\"\r\nContent-Disposition: attachment; filename=\"file%d.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", i, i, i)
			raw := make([]byte, (size-b.Len())*3/4)
			for j := range raw {
				raw[j] = byte(r.IntN(256))
			}
			enc := base64.StdEncoding.EncodeToString(raw)
			for len(enc) > 76 {
				b.WriteString(enc[:76] + "\r\n")
				enc = enc[76:]
			}
			fmt.Fprintf(&b, "%s\r\n--b%d--\r\n", enc, i)
		} else {
			b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
			for b.Len() < size {
				b.WriteString(text)
			}
		}
		out = append(out, b.Bytes())
	}
	return out
}

func login(addr string) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Login("bench", password).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func timed(name string, f func() (int64, int, error)) (result, error) {
	start := time.Now()
	b, ops, err := f()
	return result{name: name, dur: time.Since(start), bytes: b, ops: ops}, err
}

// readRuns is how many timed runs of a read phase follow its warm-up run.
const readRuns = 5

// warmMedian runs a read phase once to warm up, then readRuns times, and keeps
// the run of median time: a single run of a phase of 50-150 ms, most of
// it the client's parsing, swung by a fifth between runs on a shared
// machine, as much as the servers differ.
func warmMedian(name string, f func() (int64, int, error)) (result, error) {
	if _, err := timed(name, f); err != nil {
		return result{}, err
	}
	return median(name, f)
}

// median runs a phase readRuns times and keeps the run of median time.
func median(name string, f func() (int64, int, error)) (result, error) {
	runs := make([]result, readRuns)
	for i := range runs {
		r, err := timed(name, f)
		if err != nil {
			return result{}, err
		}
		runs[i] = r
	}
	slices.SortFunc(runs, func(a, b result) int { return cmp.Compare(a.dur, b.dur) })
	return runs[len(runs)/2], nil
}

func phases(addr string, msgs [][]byte, seed uint64, settle func()) ([]result, error) {
	if *onlyResync {
		return resyncPhases(addr, *resyncN, seed, settle)
	}
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
	if err := add(timed(fmt.Sprintf("APPEND %d", len(msgs)), func() (int64, int, error) {
		for _, m := range msgs {
			cmd := c.Append("INBOX", int64(len(m)), nil)
			cmd.Write(m)
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				return 0, 0, err
			}
		}
		return 0, len(msgs), nil
	})); err != nil {
		return nil, err
	}
	settle()
	if err := add(warmMedian("SELECT", func() (int64, int, error) {
		d, err := c.Select("INBOX", nil).Wait()
		if err == nil && int(d.NumMessages) != len(msgs) {
			err = fmt.Errorf("SELECT: %d messages, want %d", d.NumMessages, len(msgs))
		}
		return 0, 0, err
	})); err != nil {
		return nil, err
	}
	all := imap.SeqSet{{Start: 1, Stop: 0}}
	if err := add(warmMedian("FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE)", func() (int64, int, error) {
		ms, err := c.Fetch(all, &imap.FetchOptions{Flags: true, UID: true, RFC822Size: true, Envelope: true}).Collect()
		if err == nil && len(ms) != len(msgs) {
			err = fmt.Errorf("FETCH: %d messages", len(ms))
		}
		return 0, len(ms), err
	})); err != nil {
		return nil, err
	}
	if err := add(warmMedian("FETCH 1:* BODY.PEEK[]", func() (int64, int, error) {
		cmd := c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		var n int64
		for {
			m := cmd.Next()
			if m == nil {
				break
			}
			for {
				item := m.Next()
				if item == nil {
					break
				}
				if bs, ok := item.(imapclient.FetchItemDataBodySection); ok {
					k, _ := bytes.NewBuffer(nil).ReadFrom(bs.Literal)
					n += k
				}
			}
		}
		return n, 0, cmd.Close()
	})); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		name string
		c    imap.SearchCriteria
	}{
		{"UID SEARCH SUBJECT zebra", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "zebra"}}}},
		{"UID SEARCH FROM sender07", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "sender07@"}}}},
	} {
		if err := add(warmMedian(s.name, func() (int64, int, error) {
			d, err := c.UIDSearch(&s.c, nil).Wait()
			if err == nil && len(d.AllUIDs()) == 0 {
				err = fmt.Errorf("%s found nothing", s.name)
			}
			return 0, 0, err
		})); err != nil {
			return nil, err
		}
	}
	if err := add(timed("STORE 1:* +FLAGS.SILENT (\\Seen)", func() (int64, int, error) {
		_, err := c.Store(all, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect()
		return 0, 0, err
	})); err != nil {
		return nil, err
	}
	if err := add(warmMedian("8 clients × 200 random UID FETCH BODY.PEEK[]", func() (int64, int, error) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(w)))
				cc, err := login(addr)
				if err != nil {
					errs <- err
					return
				}
				defer cc.Close()
				if _, err := cc.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
					errs <- err
					return
				}
				for i := 0; i < 200; i++ {
					uid := imap.UID(1 + r.IntN(len(msgs)))
					ms, err := cc.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
					if err != nil || len(ms) != 1 {
						errs <- fmt.Errorf("fetch UID %d: %d, %v", uid, len(ms), err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		return 0, 1600, <-errs
	})); err != nil {
		return nil, err
	}
	// Five runs of 200, each into a mailbox of its own, the median kept:
	// one run (0.1-0.4 s) swung twofold with what else the machine did
	// meanwhile (a server's pack merge, another's writeback), on both
	// servers.
	k := min(len(msgs), 200)
	box := 0
	if err := add(median(fmt.Sprintf("APPEND %d, imaplib-like client (Nagle on, literal and CRLF in two writes)", k), func() (int64, int, error) {
		box++
		return 0, k, appendLikeImaplib(addr, fmt.Sprintf("imaplib%d", box), msgs[:k])
	})); err != nil {
		return nil, err
	}
	if *resyncN > 0 {
		rs, err := resyncPhases(addr, *resyncN, seed, settle)
		if err != nil {
			return nil, err
		}
		res = append(res, rs...)
	}
	return res, nil
}

// appendLikeImaplib APPENDs msgs to a new mailbox the way Python's imaplib
// does, and many clients like it: Nagle's algorithm left on (no
// TCP_NODELAY), the literal written, then its closing CRLF in a second
// write. The CRLF then waits in the client's kernel until the server ACKs
// the literal; a server that delays that ACK (40 ms on Linux) costs every
// APPEND that long.
func appendLikeImaplib(addr, mailbox string, msgs [][]byte) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.(*net.TCPConn).SetNoDelay(false); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	n := 0
	// do writes parts one write each and reads up to the tagged response;
	// it stops at a continuation request when cont is set.
	do := func(cont bool, parts ...string) (string, error) {
		for _, p := range parts {
			if _, err := io.WriteString(conn, p); err != nil {
				return "", err
			}
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			if cont && strings.HasPrefix(l, "+") {
				return l, nil
			}
			if strings.HasPrefix(l, fmt.Sprintf("p%d ", n)) {
				if !strings.HasPrefix(l, fmt.Sprintf("p%d OK", n)) {
					return "", fmt.Errorf("%s", strings.TrimSpace(l))
				}
				return l, nil
			}
		}
	}
	if _, err := r.ReadString('\n'); err != nil { // greeting
		return err
	}
	tag := func() string { n++; return fmt.Sprintf("p%d ", n) }
	if _, err := do(false, tag()+"LOGIN bench \""+password+"\"\r\n"); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if _, err := do(false, tag()+"CREATE "+mailbox+"\r\n"); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	for _, m := range msgs {
		if _, err := do(true, tag()+fmt.Sprintf("APPEND %s {%d}\r\n", mailbox, len(m))); err != nil {
			return fmt.Errorf("append: %w", err)
		}
		if _, err := do(false, string(m), "\r\n"); err != nil {
			return fmt.Errorf("append: %w", err)
		}
	}
	return nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitPort(addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

// startDovecot runs Dovecot with a private configuration: maildir under
// dir/home, one user "bench" in a passwd file, the IMAP login on a free
// loopback port, everything else as shipped (fsync included). fill, if not
// nil, is called with bench's home folder before Dovecot starts.
func startDovecot(dir string, fill func(home string) error) (string, func(), int, error) {
	addr, err := freePort()
	if err != nil {
		return "", nil, 0, err
	}
	_, port, _ := net.SplitHostPort(addr)
	for _, d := range []string{"run", "home/bench"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", nil, 0, err
		}
	}
	os.Chmod(dir, 0o755)
	if fill != nil {
		if err := fill(filepath.Join(dir, "home/bench")); err != nil {
			return "", nil, 0, err
		}
	}
	if err := exec.Command("chown", "-R", "nobody:nogroup", filepath.Join(dir, "home")).Run(); err != nil {
		return "", nil, 0, err
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%[1]s/home/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]s
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
`, dir, port)
	if err := os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte(conf), 0o644); err != nil {
		return "", nil, 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte("bench:{PLAIN}"+password+"\n"), 0o644); err != nil {
		return "", nil, 0, err
	}
	cmd := exec.Command("dovecot", "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", nil, 0, err
	}
	stop := func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }
	if err := waitPort(addr); err != nil {
		stop()
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		return "", nil, 0, fmt.Errorf("%w: %s %s", err, stderr.String(), log)
	}
	return addr, stop, cmd.Process.Pid, nil
}

// startNymote builds the mail appliance and runs it on a fresh data folder
// with user "bench". fill, if not nil, is called with the data folder
// before the appliance starts.
func startNymote(dir string, flags []string, fill func(data string) error) (string, func(), int, error) {
	bin := filepath.Join(dir, "mail")
	if out, err := exec.Command("go", "build", "-o", bin, "./apps/mail").CombinedOutput(); err != nil {
		return "", nil, 0, fmt.Errorf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	if out, err := exec.Command("go", "run", "./cmd/nymote", "store", "init", "--data", data).CombinedOutput(); err != nil {
		return "", nil, 0, fmt.Errorf("store init: %v\n%s", err, out)
	}
	add := exec.Command("go", "run", "./cmd/nymote", "user", "add", "bench", "--password-stdin", "--data", data)
	add.Stdin = strings.NewReader(password + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		return "", nil, 0, fmt.Errorf("user add: %v\n%s", err, out)
	}
	if fill != nil {
		if err := fill(data); err != nil {
			return "", nil, 0, err
		}
	}
	addr, err := freePort()
	if err != nil {
		return "", nil, 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"--data", data, "--domain", "example.org", "--imap", addr, "--insecure-auth"}, flags...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return "", nil, 0, err
	}
	stop := func() { cancel(); cmd.Wait() }
	if err := waitPort(addr); err != nil {
		stop()
		return "", nil, 0, err
	}
	return addr, stop, cmd.Process.Pid, nil
}

// waitIdle waits until process pid has used under 2% of a CPU for two
// seconds (at most two minutes), and returns how long that took.
func waitIdle(pid int) time.Duration {
	start := time.Now()
	cpu := func() float64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		var u, s float64
		fmt.Sscan(f[11], &u)
		fmt.Sscan(f[12], &s)
		return (u + s) / 100 // clock ticks
	}
	last := cpu()
	quiet := 0
	for time.Since(start) < 2*time.Minute && quiet < 4 {
		time.Sleep(500 * time.Millisecond)
		now := cpu()
		if now-last < 0.01 {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
	return time.Since(start)
}
