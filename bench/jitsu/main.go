// Command jitsu benchmarks summoning: the time from a DNS query to the
// first IMAP greeting of the mail appliance, cold (appliance stopped: the
// query boots it) and warm (running), against the plain boot-to-greeting
// time of the same appliance started directly, in the same run. It also
// counts connections refused or retransmitted during the boots: an eager
// client connects to the appliance's address at the moment of the query
// (before the answer) and the normal client right after the answer; each
// socket's TCP_INFO retransmission count is read. It prints Markdown for
// bench/README.md.
//
//	go run ./bench/jitsu -launcher process -runs 10
//	go run ./bench/jitsu -launcher qemu -runs 5      # TCG unless -kvm
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	nyappliance "github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/jitsu"
	"github.com/nymote/nymote/store"
)

func main() {
	launcher := flag.String("launcher", "process", "process (the mail program on host sockets) or qemu (the mail image)")
	runs := flag.Int("runs", 5, "cold boots (and plain boots) to measure")
	warmRuns := flag.Int("warm", 50, "warm queries to measure")
	kvm := flag.Bool("kvm", false, "QEMU with KVM")
	verbose := flag.Bool("v", false, "log jitsu's events")
	flag.DurationVar(&pollEvery, "poll", 2*time.Millisecond, "how often the plain start's client tries to connect")
	flag.DurationVar(&readEvery, "poll-read", 250*time.Millisecond, "how long the plain start's client waits for a greeting per try")
	flag.Parse()
	if err := run(*launcher, *runs, *warmRuns, *kvm, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "bench/jitsu:", err)
		os.Exit(1)
	}
}

type result struct {
	plain, coldAnswer, cold, warmAnswer, warm []time.Duration
	refused, retrans, eager                   int
}

func run(kind string, runs, warmRuns int, kvm, verbose bool) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "bench-jitsu-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	data := filepath.Join(tmp, "data")
	st, err := store.InitData(data, store.Options{})
	if err != nil {
		return err
	}
	st.AddUser(ctx, "alice", "correct horse battery", store.GitNone)
	st.Close()

	var launcher string // the YAML of the launcher
	var plain func() (time.Duration, error)
	switch kind {
	case "process":
		bin := filepath.Join(tmp, "mail")
		if out, err := exec.Command("go", "build", "-o", bin, "./apps/mail").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./apps/mail (run from the source tree): %v\n%s", err, out)
		}
		launcher = fmt.Sprintf(`{kind: process, command: [%q, --data, "${data}", --domain, home.test, --imap, "127.0.0.1:${port:imap}"]}`, bin)
		plain = func() (time.Duration, error) {
			addr := freeAddr()
			t0 := time.Now()
			cmd := exec.Command(bin, "--data", data, "--domain", "home.test", "--imap", addr)
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
			return pollGreeting(addr, t0, time.Minute)
		}
	case "qemu":
		img := filepath.Join(tmp, "image")
		src, _ := os.Getwd()
		fmt.Fprintln(os.Stderr, "building the mail image")
		if _, err := images.Build(ctx, images.Options{App: "mail", Board: "qemu-x86_64", OutDir: img, SourceDir: src}); err != nil {
			return err
		}
		disk := filepath.Join(tmp, "data.img")
		if err := images.CreateDisk(ctx, data, disk, 256<<20); err != nil {
			return err
		}
		data = disk
		kv := map[bool]string{true: "on", false: "off"}[kvm]
		launcher = fmt.Sprintf(`{kind: qemu, image: %s, kvm: %s}`, img, kv)
		m, err := images.ReadManifest(img)
		if err != nil {
			return err
		}
		plain = func() (time.Duration, error) {
			addr := freeAddr()
			extra := []string{"nymote.net=kernel"}
			if nyappliance.NetstackBuiltIn {
				extra = []string{"nymote.net=netstack", "nymote.ip=10.0.2.15/24", "nymote.gw=10.0.2.2", "nymote.dns=10.0.2.3"}
			}
			t0 := time.Now()
			vm, err := images.StartQEMU(ctx, m, images.QEMURun{Dir: img, Disk: disk, KVM: kvm, MemoryMiB: 256,
				Forwards: []images.Forward{{Host: addr, Guest: 143}}, ExtraCmdline: extra}, nil)
			if err != nil {
				return 0, err
			}
			defer func() {
				pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
				vm.PowerOff(pctx)
				cancel()
			}()
			return pollGreeting(addr, t0, 3*time.Minute)
		}
	default:
		return fmt.Errorf("-launcher %q: want process or qemu", kind)
	}

	var res result
	pub := freeAddr()
	_, port, _ := net.SplitHostPort(pub)
	y := fmt.Sprintf(`dns: 127.0.0.1:0
zones: [{name: home.test}]
appliances:
  - name: mail.home.test
    address: 127.0.0.1
    ports: [{name: imap, port: %s}]
    ttl: 3600s
    idle: never
    boot_timeout: 3m
    data: %s
    launcher: %s
`, port, data, launcher)
	cfg, err := jitsu.ParseConfig([]byte(y))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	// A first boot that is not counted: the appliance makes its TLS
	// certificate and the store's first commits then.
	if _, err := plain(); err != nil {
		return fmt.Errorf("warm-up boot: %w", err)
	}
	for i := 0; i < runs; i++ {
		// Plain and cold boots alternate, so that load on the
		// machine touches both alike.
		d, err := plain()
		if err != nil {
			return fmt.Errorf("plain boot: %w", err)
		}
		res.plain = append(res.plain, d)

		s, err := jitsu.New(cfg, jitsu.Options{Log: log})
		if err != nil {
			return err
		}
		if err := s.Start(); err != nil {
			return err
		}
		t0 := time.Now()
		eager := make(chan error, 1)
		go func() { eager <- eagerClient(pub, &res) }()
		ans, err := lookup(s.DNSAddr(), 3*time.Minute)
		if err != nil {
			s.Close()
			return fmt.Errorf("cold query: %w", err)
		}
		res.coldAnswer = append(res.coldAnswer, ans)
		g, err := greeting(pub, &res)
		if err != nil {
			s.Close()
			return fmt.Errorf("cold greeting: %w", err)
		}
		res.cold = append(res.cold, time.Since(t0))
		_ = g
		if err := <-eager; err != nil {
			s.Close()
			return fmt.Errorf("eager client: %w", err)
		}
		if i == runs-1 {
			for j := 0; j < warmRuns; j++ {
				t0 := time.Now()
				if _, err := lookup(s.DNSAddr(), 10*time.Second); err != nil {
					return err
				}
				res.warmAnswer = append(res.warmAnswer, time.Since(t0))
				if _, err := greeting(pub, &res); err != nil {
					return err
				}
				res.warm = append(res.warm, time.Since(t0))
			}
		}
		s.Close()
		fmt.Fprintf(os.Stderr, "run %d: plain %v, cold answer %v, cold greeting %v\n", i+1,
			res.plain[i].Round(time.Millisecond), ans.Round(time.Millisecond), res.cold[i].Round(time.Millisecond))
	}
	report(kind, kvm, runs, warmRuns, &res)
	return nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lookup asks for mail.home.test and returns how long the answer took.
func lookup(server string, timeout time.Duration) (time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion("mail.home.test.", dns.TypeA)
	t0 := time.Now()
	r, _, err := (&dns.Client{Timeout: timeout}).Exchange(m, server)
	if err != nil {
		return 0, err
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		return 0, fmt.Errorf("answer %s", dns.RcodeToString[r.Rcode])
	}
	return time.Since(t0), nil
}

// greeting connects once (no retry: a refusal counts) and reads the IMAP
// greeting.
func greeting(addr string, res *result) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			res.refused++
		}
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	line, err := bufio.NewReader(c).ReadString('\n')
	res.retrans += retransmits(c)
	if err != nil || !strings.HasPrefix(line, "* OK") {
		return "", fmt.Errorf("greeting %q: %v", line, err)
	}
	return line, nil
}

// eagerClient connects at the moment of the query, before the answer.
func eagerClient(addr string, res *result) error {
	_, err := greeting(addr, res)
	if err == nil {
		res.eager++
	}
	return err
}

// retransmits reads the socket's TCP_INFO retransmission count.
func retransmits(c net.Conn) int {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = int(ti.Total_retrans)
		}
	})
	return n
}

var pollEvery, readEvery time.Duration

// pollGreeting dials addr every pollEvery from t0 until an IMAP greeting
// arrives, waiting readEvery for it per try: behind QEMU's port forward a
// connection is accepted before the guest listens and then either closed
// or held while QEMU retransmits its SYN to the guest, so a short wait and
// a new try is the fastest client a plain start can have.
func pollGreeting(addr string, t0 time.Time, limit time.Duration) (time.Duration, error) {
	for time.Since(t0) < limit {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(readEvery))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && strings.HasPrefix(line, "* OK") {
				return time.Since(t0), nil
			}
		}
		time.Sleep(pollEvery)
	}
	return 0, fmt.Errorf("no greeting from %s within %v", addr, limit)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms" }

func report(kind string, kvm bool, runs, warmRuns int, r *result) {
	accel := ""
	if kind == "qemu" {
		accel = map[bool]string{true: ", KVM", false: ", TCG"}[kvm]
	}
	fmt.Printf("### %s launcher%s (median of %d cold boots, %d warm queries)\n\n", kind, accel, runs, warmRuns)
	fmt.Println("| | DNS answer | first IMAP greeting | vs plain |")
	fmt.Println("| --- | ---: | ---: | ---: |")
	p := median(r.plain)
	fmt.Printf("| plain start (no jitsu) | | %s | 1.00× |\n", ms(p))
	fmt.Printf("| cold (query boots it) | %s | %s | %.2f× |\n", ms(median(r.coldAnswer)), ms(median(r.cold)), float64(median(r.cold))/float64(p))
	if len(r.warm) > 0 {
		fmt.Printf("| warm (running) | %s | %s | |\n", ms(median(r.warmAnswer)), ms(median(r.warm)))
	}
	fmt.Printf("\nConnections refused: %d; TCP retransmissions: %d (over %d eager connections opened at the query, %d after the answers).\n",
		r.refused, r.retrans, r.eager, runs+len(r.warm))
	fmt.Printf("\nAll runs, plain / cold: ")
	for i := range r.plain {
		fmt.Printf("%s / %s; ", ms(r.plain[i]), ms(r.cold[i]))
	}
	fmt.Println()
}
