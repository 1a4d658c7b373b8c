package smtpd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nymote/nymote/apps/mail/imapd"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// The hostile-client test of issue 21's H1: large messages over real SMTP
// (port 25, no login) to a mail server running as its own process, whose
// peak memory the test reads from /proc. Before the messages were spooled,
// one 45 MB message peaked the process at about 400 MB, four at 1.1 GB.

const (
	childEnv     = "NYMOTE_SMTPD_HOSTILE_CHILD"
	testPassword = "correct horse battery"
	bigMessage   = 45 << 20
	// rssBudget is what four parallel 45 MB messages may add to the
	// server's peak RSS (measured: 2-3 MiB): less than one whole copy of
	// one message.
	rssBudget = 32 << 20
)

// TestHostileChild is the server process of TestHostileLargeMessages (it
// does nothing in a normal run).
func TestHostileChild(t *testing.T) {
	dir := os.Getenv(childEnv)
	if dir == "" {
		t.Skip("the server process of TestHostileLargeMessages")
	}
	if err := runChild(dir); err != nil {
		fmt.Println("child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(dir string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.OpenData(dir, store.Options{Logger: log})
	if err != nil {
		return err
	}
	ms, err := mailstore.Open(st, mailstore.Options{Logger: log})
	if err != nil {
		return err
	}
	smtpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	imapLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := New(Options{Mail: ms, Domains: []string{"example.org"}, Logger: log})
	isrv := imapd.New(imapd.Options{Mail: ms, Domains: []string{"example.org"}, InsecureAuth: true, Logger: log})
	go srv.Serve(smtpLn)
	go isrv.Serve(imapLn)
	fmt.Printf("ready smtp=%s imap=%s\n", smtpLn.Addr(), imapLn.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	srv.Close()
	isrv.Close()
	ms.Close()
	return st.Close()
}

// child is the server process.
type child struct {
	cmd        *exec.Cmd
	smtp, imap string
}

// startChild starts the server process: this test binary as
// TestHostileChild, or, to measure another build (a baseline), the mail
// program named by $NYMOTE_MAIL_BINARY.
func startChild(t *testing.T, dir string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostileChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	bin := os.Getenv("NYMOTE_MAIL_BINARY")
	if bin != "" {
		cmd = exec.Command(bin, "--data", dir, "--domain", "example.org", "--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0", "--insecure-auth")
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ready" {
			c.smtp, c.imap = strings.TrimPrefix(f[1], "smtp="), strings.TrimPrefix(f[2], "imap=")
			break
		}
		if a, ok := strings.CutPrefix(sc.Text(), "nymote: mail smtp listening on "); ok {
			c.smtp = a
		}
		if a, ok := strings.CutPrefix(sc.Text(), "nymote: mail imap listening on "); ok {
			c.imap = a
		}
		if bin != "" && c.smtp != "" && c.imap != "" {
			break
		}
	}
	if c.smtp == "" {
		t.Fatal("the server process did not start")
	}
	go io.Copy(io.Discard, out)
	return c
}

// stop ends the server cleanly (the store flushed and closed).
func (c *child) stop(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("the server process: %v", err)
	}
}

// procStatus reads a field of /proc/PID/status in bytes.
func (c *child) procStatus(t *testing.T, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/PID/status", field)
	return 0
}

// resetPeak makes VmHWM the current RSS (clear_refs 5, Linux 4.0).
func (c *child) resetPeak(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", c.cmd.Process.Pid), []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS of the server process: %v", err)
	}
}

// messageReader makes a message of about size bytes (base64 lines of
// seeded noise: it does not compress) and hashes what it hands out.
type messageReader struct {
	r io.Reader
	h hash.Hash
}

func newMessage(subject string, size int, seed uint64) *messageReader {
	hdr := fmt.Sprintf("From: mallory@example.net\r\nTo: alice@example.org\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n"+
		"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n", subject)
	rng := rand.New(rand.NewPCG(seed, seed))
	lines := size / 78
	n := 0
	body := readerFunc(func(p []byte) (int, error) {
		if n >= lines {
			return 0, io.EOF
		}
		var raw [57]byte
		w := 0
		for n < lines && len(p)-w >= 78 {
			for i := range raw {
				raw[i] = byte(rng.Uint32())
			}
			base64.StdEncoding.Encode(p[w:], raw[:])
			p[w+76], p[w+77] = '\r', '\n'
			w += 78
			n++
		}
		return w, nil
	})
	m := &messageReader{h: sha256.New()}
	m.r = io.TeeReader(io.MultiReader(strings.NewReader(hdr), body, strings.NewReader("--b1--\r\n")), m.h)
	return m
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// send delivers a message over SMTP with net/smtp and returns the sha256
// of what was sent.
func send(addr string, m *messageReader) (string, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		return "", err
	}
	if err := c.Mail("mallory@example.net"); err != nil {
		return "", err
	}
	if err := c.Rcpt("alice@example.org"); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := io.CopyBuffer(w, m.r, make([]byte, 78*1024)); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(m.h.Sum(nil)), c.Quit()
}

func TestHostileLargeMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 225 MB over loopback")
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed (apt-get install -y git)")
	}
	dir := t.TempDir()
	st, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(context.Background(), "alice", testPassword, store.GitRead); err != nil {
		t.Fatal(err)
	}
	st.Close()
	c := startChild(t, dir)

	sent := map[string]string{} // subject -> sha256 of what was sent
	var mu sync.Mutex
	deliver := func(subject string, size int, seed uint64) error {
		h, err := send(c.smtp, newMessage(subject, size, seed))
		if err != nil {
			return fmt.Errorf("%s: %w", subject, err)
		}
		mu.Lock()
		sent[subject] = h
		mu.Unlock()
		return nil
	}
	// A small delivery first, so that the user's mailboxes exist and the
	// baseline is a server that has served.
	if err := deliver("warm-up", 1000, 1); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 4} {
		c.resetPeak(t)
		base := c.procStatus(t, "VmRSS")
		var wg sync.WaitGroup
		errs := make(chan error, n+1)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- deliver(fmt.Sprintf("big-%d-%d", n, i), bigMessage, uint64(100*n+i))
			}()
		}
		// A legitimate small delivery is served meanwhile.
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- deliver(fmt.Sprintf("small-%d", n), 2000, uint64(10+n))
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		peak := c.procStatus(t, "VmHWM")
		t.Logf("%d x %d MiB over SMTP: RSS %d MiB before, peak %d MiB (+%d MiB)", n, bigMessage>>20, base>>20, peak>>20, (peak-base)>>20)
		if peak-base > rssBudget {
			t.Errorf("%d x %d MiB: the server's peak RSS grew by %d MiB, over the budget of %d MiB", n, bigMessage>>20, (peak-base)>>20, rssBudget>>20)
		}
	}

	// IMAP APPEND takes the same path, measured in a fresh server process
	// (what was delivered must survive the restart), logged in first: a
	// password check costs argon2id's memory, which is not what is
	// measured here.
	c.stop(t)
	c = startChild(t, dir)
	ic, err := imapclient.DialInsecure(c.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ic.Login("alice", testPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	c.resetPeak(t)
	base := c.procStatus(t, "VmRSS")
	m := newMessage("append-big", bigMessage, 7)
	var buf strings.Builder
	io.Copy(&buf, m.r) // the client's copy, to know the literal's size
	app := ic.Append("INBOX", int64(buf.Len()), nil)
	io.Copy(app, strings.NewReader(buf.String()))
	app.Close()
	if _, err := app.Wait(); err != nil {
		t.Fatalf("APPEND of %d MiB: %v", bigMessage>>20, err)
	}
	sent["append-big"] = hex.EncodeToString(m.h.Sum(nil))
	buf = strings.Builder{}
	peak := c.procStatus(t, "VmHWM")
	t.Logf("1 x %d MiB over IMAP APPEND: RSS %d MiB before, peak %d MiB (+%d MiB)", bigMessage>>20, base>>20, peak>>20, (peak-base)>>20)
	if peak-base > rssBudget {
		t.Errorf("APPEND of %d MiB: the server's peak RSS grew by %d MiB, over the budget of %d MiB", bigMessage>>20, (peak-base)>>20, rssBudget>>20)
	}

	// Every message is stored intact: what IMAP hands back hashes to what
	// was sent.
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for seq := uint32(1); seq <= uint32(len(sent)); seq++ {
		fc := ic.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		msg := fc.Next()
		if msg == nil {
			t.Fatalf("FETCH %d: no message", seq)
		}
		var subject, sum string
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch item := item.(type) {
			case imapclient.FetchItemDataEnvelope:
				subject = item.Envelope.Subject
			case imapclient.FetchItemDataBodySection:
				// Stored with a Received header in front: hash what
				// follows it.
				br := bufio.NewReader(item.Literal)
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("FETCH %d: %v", seq, err)
					}
					if strings.HasPrefix(l, "From: ") {
						h := sha256.New()
						io.WriteString(h, l)
						io.Copy(h, br)
						sum = hex.EncodeToString(h.Sum(nil))
						break
					}
				}
			}
		}
		if err := fc.Close(); err != nil {
			t.Fatal(err)
		}
		got[subject] = sum
	}
	ic.Logout().Wait()
	for subject, want := range sent {
		if got[subject] != want {
			t.Errorf("message %q: IMAP returned sha256 %s, sent %s", subject, got[subject], want)
		}
	}
	c.stop(t)
	out, err := exec.Command(git, "-C", filepath.Join(dir, store.RepoDir), "fsck", "--strict").CombinedOutput()
	if err != nil {
		t.Fatalf("git fsck --strict: %v\n%s", err, out)
	}
}

// TestTransferSlots: beyond the running and waiting transfers, DATA is
// refused with 451 at once; a waiting one runs when a slot frees.
func TestTransferSlots(t *testing.T) {
	s := newSlots(1, 1, time.Hour)
	release, err := s.acquire()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := s.acquire() // waits for the slot
		if err == nil {
			r()
		}
		got <- err
	}()
	// Wait (no sleep) until the second one is queued.
	deadline := time.Now().Add(time.Minute)
	for len(s.queue) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second transfer never queued")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := s.acquire(); err != errBusy {
		t.Fatalf("third transfer: got %v, want 451 busy", err)
	}
	release()
	if err := <-got; err != nil {
		t.Fatalf("the waiting transfer: %v", err)
	}
}
