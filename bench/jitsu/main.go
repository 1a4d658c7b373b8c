// Command jitsu benchmarks summoning: the time from a DNS query to the
// first IMAP greeting of the mail appliance, cold (appliance stopped: the
// query boots it) and warm (running), against the plain boot-to-greeting
// time of the same appliance started directly, in the same run. It also
// counts connections refused or retransmitted during the boots: an eager
// client connects to the appliance's address at the moment of the query
// (before the answer) and the normal client right after the answer; each
// socket's TCP_INFO retransmission count is read. Warm queries are
// measured twice in the same run, on the last boot (spare connections on,
// jitsu's default) and on the one before it (spare: off), each broken
// down into the DNS answer, the connect to jitsu's port, the greeting
// through jitsu, and a direct connect and greeting against the
// appliance's own address without jitsu (QEMU's port forward). It prints
// Markdown for bench/README.md.
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
	"github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/boards"
	datadisk "github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/jitsu"
	"github.com/nymote/nymote/launch"
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
	plain, coldAnswer, cold []time.Duration
	warmRuns                []*warm
	refused, retrans, eager int
}

// warm is the breakdown of the warm queries against one running
// appliance: each query is answered, then a client connects to jitsu's
// port and reads the greeting, then another connects straight to the
// appliance's own address (Status.Backends: QEMU's port forward) and
// reads its greeting, so that jitsu's share and the appliance's are told
// apart in the same run.
type warm struct {
	label string
	// answer: the DNS query's round trip; connect: the client's
	// connect to jitsu's port; greet: from connected to the greeting
	// line through jitsu; total: query sent to greeting read.
	answer, connect, greet, total []time.Duration
	// directConnect and directGreet: the same without jitsu, against
	// the appliance's backend address.
	directConnect, directGreet []time.Duration
}

// warmGap is the pause before each warm client.
const warmGap = 50 * time.Millisecond

// measureWarm runs n warm queries against the running appliance.
func measureWarm(s *jitsu.Server, pub string, n int, res *result, spares, proxied bool) (*warm, error) {
	st := s.Status()[0]
	backend := st.Backends["imap"]
	if st.State != jitsu.Running || backend == "" {
		return nil, fmt.Errorf("warm: the appliance is %s, backends %v", st.State, st.Backends)
	}
	w := &warm{}
	for j := 0; j < n; j++ {
		// Each client comes a while after the last one has gone, as
		// clients do (seconds apart), so that it finds the guest idle:
		// under TCG the guest's work for a connection (and for the
		// spare dialed after one was taken) goes on for milliseconds
		// after the greeting, and a client right behind it would
		// measure that instead. The direct client first, so that the
		// spare's dial after the client through jitsu is not in its way.
		time.Sleep(warmGap)
		var hdr []byte
		if proxied {
			// The appliance expects jitsu's PROXY header on connections
			// from jitsu's side (proxy_protocol): a LOCAL one, as a
			// proxy's own check sends.
			hdr, _ = (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}).Format()
		}
		conn, greet, err := timedGreeting(backend, res, hdr)
		if err != nil {
			return nil, fmt.Errorf("direct greeting: %w", err)
		}
		w.directConnect = append(w.directConnect, conn)
		w.directGreet = append(w.directGreet, greet)
		time.Sleep(warmGap)
		if spares {
			if err := waitSpares(s); err != nil {
				return nil, err
			}
		}
		t0 := time.Now()
		ans, err := lookup(s.DNSAddr(), 10*time.Second)
		if err != nil {
			return nil, err
		}
		conn, greet, err = timedGreeting(pub, res, nil)
		if err != nil {
			return nil, fmt.Errorf("warm greeting: %w", err)
		}
		w.total = append(w.total, time.Since(t0))
		w.answer = append(w.answer, ans)
		w.connect = append(w.connect, conn)
		w.greet = append(w.greet, greet)
	}
	return w, nil
}

// waitSpares waits until the appliance's spare connections are ready.
func waitSpares(s *jitsu.Server) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Status()[0]
		if st.Spares == len(st.Backends) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("spares not ready: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

// timedGreeting connects to addr and reads the greeting; it returns how
// long the connect took and how long the greeting took after it.
func timedGreeting(addr string, res *result, hdr []byte) (connect, greet time.Duration, err error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			res.refused++
		}
		return 0, 0, err
	}
	defer c.Close()
	connect = time.Since(t0)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(hdr); err != nil {
		return 0, 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	greet = time.Since(t0) - connect
	res.retrans += retransmits(c)
	if err != nil || !strings.HasPrefix(line, "* OK") {
		return 0, 0, fmt.Errorf("greeting %q from %s: %v", line, addr, err)
	}
	return connect, greet, nil
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
		if err := datadisk.Create(ctx, data, disk, 256<<20); err != nil {
			return err
		}
		data = disk
		kv := map[bool]string{true: "on", false: "off"}[kvm]
		launcher = fmt.Sprintf(`{kind: qemu, image: %s, kvm: %s}`, img, kv)
		m, err := images.ReadManifest(img)
		if err != nil {
			return err
		}
		bd, err := boards.Get(m.Board)
		if err != nil {
			return err
		}
		qimg, err := m.QEMUImage(img, bd)
		if err != nil {
			return err
		}
		plain = func() (time.Duration, error) {
			addr := freeAddr()
			guestNet := "kernel"
			if app.NetstackBuiltIn {
				guestNet = "netstack"
			}
			t0 := time.Now()
			vm, err := launch.StartQEMU(ctx, qimg, launch.QEMU{Disk: disk, KVM: kvm, MemoryMiB: 256,
				Forwards: []launch.Forward{{Host: addr, Guest: 143}}, GuestNet: guestNet}, nil)
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
    spare: %%s
    launcher: %s
`, port, data, launcher)
	// The next-to-last run has spare connections off, as jitsu was
	// before them; the others have them (the default). Warm queries are
	// measured in both, so that the two are compared in the same run.
	spareOff := -1
	if runs >= 2 {
		spareOff = runs - 2
	}
	configs := map[bool]*jitsu.Config{}
	for _, off := range []bool{false, true} {
		spare := map[bool]string{false: "10s", true: "off"}[off]
		if configs[off], err = jitsu.ParseConfig([]byte(fmt.Sprintf(y, spare))); err != nil {
			return err
		}
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

		s, err := jitsu.New(configs[i == spareOff], jitsu.Options{Log: log})
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
		if i == runs-1 || i == spareOff {
			w, err := measureWarm(s, pub, warmRuns, &res, i != spareOff, *configs[false].Appliances[0].ProxyProtocol)
			if err != nil {
				s.Close()
				return err
			}
			w.label = ", spare connections"
			if i == spareOff {
				w.label = ", spare: off (as before)"
			}
			res.warmRuns = append(res.warmRuns, w)
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

// pct is the p-th percentile (nearest rank).
func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

// ms prints milliseconds: two decimals below 100 ms, one above.
func ms(d time.Duration) string {
	prec := 2
	if d >= 100*time.Millisecond {
		prec = 1
	}
	return strconv.FormatFloat(float64(d)/1e6, 'f', prec, 64) + " ms"
}

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
	for _, w := range r.warmRuns {
		fmt.Printf("| warm (running)%s | %s | %s | |\n", w.label, ms(median(w.answer)), ms(median(w.total)))
	}
	fmt.Printf("\nConnections refused: %d; TCP retransmissions: %d (over %d eager connections opened at the query, %d after the answers).\n",
		r.refused, r.retrans, r.eager, runs+2*warmRuns*len(r.warmRuns))
	fmt.Printf("\nAll runs, plain / cold: ")
	for i := range r.plain {
		fmt.Printf("%s / %s; ", ms(r.plain[i]), ms(r.cold[i]))
	}
	fmt.Println()
	for _, w := range r.warmRuns {
		fmt.Printf("\nWarm breakdown%s (medians of %d; the direct client connects to the appliance's own address, without jitsu):\n\n", w.label, len(w.total))
		fmt.Println("| step | median | 90th percentile |")
		fmt.Println("| --- | ---: | ---: |")
		for _, row := range []struct {
			name string
			d    []time.Duration
		}{
			{"DNS answer", w.answer},
			{"connect to jitsu's port", w.connect},
			{"connected → greeting, through jitsu", w.greet},
			{"**query → greeting, through jitsu**", w.total},
			{"direct: connect to the appliance", w.directConnect},
			{"direct: connected → greeting", w.directGreet},
		} {
			fmt.Printf("| %s | %s | %s |\n", row.name, ms(median(row.d)), ms(pct(row.d, 90)))
		}
		fmt.Printf("\nThrough jitsu − direct, connect and greeting (medians): %s.\n\n",
			ms(median(w.connect)+median(w.greet)-median(w.directConnect)-median(w.directGreet)))
	}
}
