package jitsu

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	nyappliance "github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/appliance/app"
)

// TestMain doubles as the test appliance: with JITSU_TESTSVC=1 in its
// environment the test binary is a small service program run by the
// process launcher, like an appliance program on host sockets.
func TestMain(m *testing.M) {
	if os.Getenv("JITSU_TESTSVC") == "appliance" {
		// The appliance runtime as a host process, as an appliance
		// program runs under jitsu's process launcher.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		err := nyappliance.RunHost(ctx, peerAppliance(), os.Args[1:], os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("JITSU_TESTSVC") == "1" {
		if err := testService(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "testsvc:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	var err error
	testTmp, err = os.MkdirTemp("", "jitsu-test-")
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(testTmp)
	os.Exit(code)
}

// peerAppliance is a service on the appliance runtime that greets each
// connection with the client's address as the runtime's listener gives
// it, "peer ADDR", then echoes lines as "echo LINE".
func peerAppliance() nyappliance.Service {
	return nyappliance.Service{
		App: app.App{Name: "peer", Ports: []app.Port{{Name: "peer", Port: 0}}},
		Serve: func(ctx context.Context, env *nyappliance.Env) error {
			l := env.Listeners["peer"]
			go func() {
				<-ctx.Done()
				l.Close()
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				go func() {
					defer c.Close()
					fmt.Fprintf(c, "peer %s\r\n", c.RemoteAddr())
					sc := bufio.NewScanner(c)
					for sc.Scan() {
						fmt.Fprintf(c, "echo %s\r\n", sc.Text())
					}
				}()
			}
		},
	}
}

// testTmp is a folder for what tests share (built programs).
var testTmp string

// testService counts its boots in DATA/boots and greets each connection on
// its port with "hello from testsvc (boot N)"; then PUT TEXT appends a
// line to DATA/notes (synced before the OK), GET returns the notes on one
// line, CONN returns the connection's number and when it was accepted
// (Unix nanoseconds); DATA/accepted counts them. SIGTERM is a clean power-off: it records the stop
// in DATA/clean-stops and exits 0. --delay waits before listening,
// --crash exits at once, --never never listens. --client-first greets
// only after HELLO (as a server of a client-first protocol such as HTTP
// answers only a request). --idle-close closes a connection that has sent
// no command for that long (as a server's timeout for a new connection's
// first command). A connection that ends without any command is logged
// in DATA/unused as "N idle" (closed by the service) or "N peer" (closed
// by the client).
func testService(args []string) error {
	fs := flag.NewFlagSet("testsvc", flag.ContinueOnError)
	data := fs.String("data", "", "data directory")
	port := fs.String("port", "hello=0", "NAME=PORT")
	delay := fs.Duration("delay", 0, "wait before listening")
	crash := fs.Bool("crash", false, "exit 1 at once")
	never := fs.Bool("never", false, "never listen")
	clientFirst := fs.Bool("client-first", false, "greet only after HELLO")
	idleClose := fs.Duration("idle-close", 0, "close a connection without a command after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *crash {
		return errors.New("crashing as asked")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	if *never {
		fmt.Println("testsvc: not listening, as asked")
		<-sig
		return nil
	}
	boots, err := bump(filepath.Join(*data, "boots"))
	if err != nil {
		return err
	}
	time.Sleep(*delay)
	name, p, _ := strings.Cut(*port, "=")
	ln, err := net.Listen("tcp", "127.0.0.1:"+p)
	if err != nil {
		return err
	}
	fmt.Printf("nymote: testsvc %s listening on %s\n", name, ln.Addr())
	var mu sync.Mutex // one writer of notes (and of unused) at a time
	nconn := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted := time.Now()
			nconn++
			n := nconn
			mu.Lock()
			bump(filepath.Join(*data, "accepted"))
			mu.Unlock()
			go func() {
				defer c.Close()
				if !*clientFirst {
					fmt.Fprintf(c, "hello from testsvc (boot %d)\r\n", boots)
				}
				if *idleClose > 0 {
					c.SetReadDeadline(accepted.Add(*idleClose))
				}
				sc := bufio.NewScanner(c)
				commands := 0
				defer func() {
					if commands > 0 {
						return
					}
					how := "peer"
					if errors.Is(sc.Err(), os.ErrDeadlineExceeded) {
						how = "idle"
					}
					mu.Lock()
					appendSync(filepath.Join(*data, "unused"), fmt.Sprintf("%d %s\n", n, how))
					mu.Unlock()
				}()
				for sc.Scan() {
					commands++
					c.SetReadDeadline(time.Time{})
					cmd, arg, _ := strings.Cut(sc.Text(), " ")
					switch cmd {
					case "HELLO":
						fmt.Fprintf(c, "hello from testsvc (boot %d)\r\n", boots)
					case "CONN":
						fmt.Fprintf(c, "%d %d\r\n", n, accepted.UnixNano())
					case "PUT":
						mu.Lock()
						err := appendSync(filepath.Join(*data, "notes"), arg+"\n")
						mu.Unlock()
						if err != nil {
							fmt.Fprintf(c, "ERR %v\r\n", err)
							continue
						}
						fmt.Fprint(c, "OK\r\n")
					case "GET":
						b, _ := os.ReadFile(filepath.Join(*data, "notes"))
						fmt.Fprintf(c, "%s\r\n", strings.Join(strings.Fields(string(b)), ","))
					default:
						return
					}
				}
			}()
		}
	}()
	<-sig
	ln.Close()
	_, err = bump(filepath.Join(*data, "clean-stops"))
	return err
}

// bump increments the number in file and returns it.
func bump(file string) (int, error) {
	b, _ := os.ReadFile(file)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	n++
	if err := os.WriteFile(file, []byte(strconv.Itoa(n)), 0o600); err != nil {
		return 0, err
	}
	return n, nil
}

func appendSync(file, s string) error {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readCount reads a counter file of the test service.
func readCount(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// svcApp is the YAML of an appliance running the test service.
func svcApp(t testing.TB, name string, port int, ttl, extra string, svcArgs ...string) string {
	data := t.TempDir()
	cmd := []string{strconv.Quote(testExe), `"--data"`, `"${data}"`, `"--port"`, `"hello=${port:hello}"`}
	for _, a := range svcArgs {
		cmd = append(cmd, strconv.Quote(a))
	}
	return fmt.Sprintf(`
  - name: %s
    address: 127.0.0.1
    ports: [{name: hello, port: %d}]
    ttl: %s
    boot_timeout: 5s
    data: %s
%s    launcher:
      kind: process
      env: [JITSU_TESTSVC=1]
      command: [%s]
`, name, port, ttl, data, extra, strings.Join(cmd, ", "))
}

// startServer parses the YAML (zone home.test, DNS on a free port) and
// starts a Server, closed at the end of the test.
func startServer(t testing.TB, opts Options, apps ...string) (*Server, *Config) {
	t.Helper()
	y := "dns: 127.0.0.1:0\ncontrol: 127.0.0.1:0\nzones:\n  - name: home.test\nappliances:\n" + strings.Join(apps, "")
	cfg, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, y)
	}
	if opts.Log == nil {
		opts.Log = testLog(t)
	}
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cfg
}

// waitState polls until the appliance is in state st.
func waitState(t testing.TB, s *Server, name string, st State, within time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, x := range s.Status() {
			if x.Name == dns.CanonicalName(name) && x.State == st {
				return x
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not %s within %v: %+v", name, st, within, s.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// greet connects and reads the greeting line.
func greet(t testing.TB, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		t.Fatalf("greeting from %s: %v", addr, err)
	}
	return c, r, strings.TrimSpace(line)
}

var testExe, _ = os.Executable()
