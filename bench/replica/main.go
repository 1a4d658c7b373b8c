// Command replica measures live sync between replicas, host processes on
// loopback (every node in this process, each with its own store, mail
// service and replication endpoint):
//
//   - latency: APPEND on node A until IMAP IDLE on node B reports it (p50,
//     p99 of -samples);
//
//   - append: APPENDs a second from one client on a node with two peers
//     against a node with none, same run: -rounds blocks of -appends on
//     each, alternating, the ratio of their medians; each block with
//     peers ends when both peers hold its messages (its CPU and a second
//     rate count until then), so that no block runs beside the peers'
//     work on an earlier one;
//
//   - converge: three nodes cut apart, -writes commits on each, then the
//     links healed: time until all three have one head.
//
//     go run ./bench/replica -samples 100 -appends 100 -rounds 5 -writes 1000
//
// The convergence line gives the process's CPU time (user and system) over
// the phase besides its wall time: less noisy on a shared machine.
//
// -cpuprofile FILE writes a CPU profile of the convergence phase (from the
// heal until one head) for `go tool pprof -top`; -rateprofile FILE one of
// each APPEND block (FILE.alone0, FILE.peered0, ...); -ratetrace FILE an
// execution trace of the rate phase (`go tool trace -pprof=syscall FILE`
// gives where its goroutines waited in system calls).
//
// -apart runs the rate phase's two peers in a child process pinned to one
// CPU, one that does not take the interrupts of the node's disk, and
// everything else on the other CPUs (apart.go): what syncing costs the
// appending node itself, as when its peers are other machines. The peers'
// stores are then under -peersdir (default /dev/shm: another file
// system, so that their writes do not share the node's disk either).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/store"
)

const password = "correct horse battery"

type node struct {
	name string
	dir  string
	st   *store.Store
	imap string
	git  net.Listener
	ls   mailsvc.Listeners
}

// cpuTime is the CPU time (user and system) the process has used.
// written is what the process has had written to disk (write_bytes of
// /proc/self/io: what it sent to the block layer, or dirtied for it);
// -1 where that file is not.
func written() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	must(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica bench:", err)
		os.Exit(1)
	}
}

// cluster makes n nodes of one store (alice's mailboxes made on the first,
// then cloned), peers of each other through fault proxies, and serves them.
func cluster(root string, n int, prefix string) ([]*node, [][]*replica.FaultProxy, func()) {
	nodes, links := build(root, n, prefix, true)
	stop := serve(nodes)
	return nodes, links, func() {
		stop()
		for _, l := range links {
			for _, p := range l {
				if p != nil {
					p.Close()
				}
			}
		}
		for _, nd := range nodes {
			nd.st.Close()
		}
	}
}

// build makes n nodes of one store (alice's mailboxes made on the first,
// then cloned), each with its listeners, peers of each other (through
// fault proxies if proxies is set, straight otherwise), and leaves their
// stores open.
func build(root string, n int, prefix string, proxies bool) ([]*node, [][]*replica.FaultProxy) {
	ctx := context.Background()
	nodes := make([]*node, n)
	for i := range nodes {
		nd := &node{name: fmt.Sprintf("%s%d", prefix, i), dir: filepath.Join(root, fmt.Sprintf("%s%d", prefix, i))}
		imapLn, err := net.Listen("tcp", "127.0.0.1:0")
		must(err)
		gitLn, err := net.Listen("tcp", "127.0.0.1:0")
		must(err)
		nd.ls = mailsvc.Listeners{IMAP: imapLn, Git: gitLn}
		nd.imap, nd.git = imapLn.Addr().String(), gitLn
		nodes[i] = nd
	}
	st0, err := store.InitData(nodes[0].dir, store.Options{})
	must(err)
	must(st0.AddUser(ctx, "alice", password, store.GitNone))
	if n > 1 {
		for _, nd := range nodes {
			_, err := replica.AddPeer(ctx, st0, nd.name, "http://"+nd.git.Addr().String()+"/replica", replica.AddOptions{})
			must(err)
		}
	}
	ms, err := mailstore.Open(st0, mailstore.Options{})
	must(err)
	_, err = ms.User(ctx, "alice")
	must(err)
	ms.Close()
	// The clones get the password's hash as the replicas' credentials
	// exchange gives it (the user record names one hash, made on node 0).
	creds, err := st0.PeerCredentials()
	must(err)
	src := st0.Path()
	st0.Close()
	for _, nd := range nodes[1:] {
		st, err := store.Clone(ctx, store.Remote{URL: src}, filepath.Join(nd.dir, store.RepoDir), store.Options{})
		must(err)
		_, err = st.AcceptPeerCredentials(ctx, creds)
		must(err)
		nd.st = st
	}
	nodes[0].st, err = store.OpenData(nodes[0].dir, store.Options{})
	must(err)
	for _, nd := range nodes {
		must(replica.SetSelf(nd.st, nd.name))
	}
	links := make([][]*replica.FaultProxy, n)
	for i := range links {
		links[i] = make([]*replica.FaultProxy, n)
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			tok := replica.NewToken()
			for _, d := range [][2]int{{i, j}, {j, i}} {
				a, b := nodes[d[0]], nodes[d[1]]
				addr := b.git.Addr().String()
				if proxies {
					p, err := replica.NewFaultProxy(addr, uint64(d[0]*10+d[1]))
					must(err)
					links[d[0]][d[1]] = p
					addr = p.Addr()
				}
				must(replica.SetToken(a.st, b.name, tok))
				must(replica.SetLocalURL(a.st, b.name, "http://"+addr+"/replica"))
			}
		}
	}
	return nodes, links
}

// serve runs the nodes' mail services (stores open) until the function
// it returns is called, which stops them and waits.
func serve(nodes []*node) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(nodes))
	log := slog.New(slog.DiscardHandler)
	if *logs {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, nd := range nodes {
		go func() {
			err := mailsvc.Serve(ctx, mailsvc.Config{Store: nd.st, Domains: []string{"example.org"}, InsecureAuth: true, Logger: log.With("node", nd.name),
				Replica: replica.Options{Poll: 2 * time.Second, Retry: 100 * time.Millisecond, Debounce: *debounce, Relay: *relay}}, nd.ls)
			if err != nil {
				fmt.Fprintln(os.Stderr, nd.name, err)
			}
			done <- struct{}{}
		}()
	}
	return func() {
		cancel()
		for range nodes {
			<-done
		}
	}
}

func dial(addr string, opts *imapclient.Options) *imapclient.Client {
	c, err := imapclient.DialInsecure(addr, opts)
	must(err)
	must(c.Login("alice", password).Wait())
	return c
}

func appendMsg(c *imapclient.Client, id string) {
	body := "From: a@example.org\r\nTo: alice@example.org\r\nSubject: " + id + "\r\nMessage-ID: <" + id + "@bench>\r\n\r\n" + id + "\r\n"
	cmd := c.Append("INBOX", int64(len(body)), nil)
	cmd.Write([]byte(body))
	cmd.Close()
	_, err := cmd.Wait()
	must(err)
}

func pct(ds []time.Duration, p float64) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

func main() {
	samples := flag.Int("samples", 100, "latency samples")
	appends := flag.Int("appends", 300, "APPENDs per rate block")
	rounds := flag.Int("rounds", 5, "rate blocks on each side (alternating)")
	writes := flag.Int("writes", 1000, "commits per node while partitioned")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the convergence phase (from the heal until one head) to this file")
	rateprofile := flag.String("rateprofile", "", "write CPU profiles of the APPEND rate phase's blocks to FILE.aloneN and FILE.peeredN (and the warm-up blocks'), and with -apart one of the peers' process to FILE.peers")
	flag.Parse()
	if spec := os.Getenv(childEnv); spec != "" {
		child(spec, *rateprofile)
		return
	}
	if *apart && runtime.NumCPU() < 2 {
		must(fmt.Errorf("-apart needs two CPUs or more, this machine has %d", runtime.NumCPU()))
	}
	root, err := os.MkdirTemp("", "nymote-replica-bench-")
	must(err)
	defer os.RemoveAll(root)

	// Latency: A appends, B idles.
	nodes, links, stop := cluster(root, 3, "l")
	exists := make(chan uint32, 16)
	b := dial(nodes[1].imap, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		}}})
	_, err = b.Select("INBOX", nil).Wait()
	must(err)
	a := dial(nodes[0].imap, nil)
	var lat []time.Duration
	for i := 0; i < *samples; i++ {
		idle, err := b.Idle()
		must(err)
		t0 := time.Now()
		appendMsg(a, fmt.Sprintf("lat%d", i))
		select {
		case <-exists:
			lat = append(lat, time.Since(t0))
		case <-time.After(time.Minute):
			must(fmt.Errorf("sample %d: no EXISTS on B within a minute", i))
		}
		must(idle.Close())
		must(idle.Wait())
	drain:
		for {
			select {
			case <-exists:
			default:
				break drain
			}
		}
	}
	fmt.Printf("latency APPEND on A -> IDLE EXISTS on B: n=%d p50=%v p99=%v max=%v\n", len(lat),
		pct(lat, 0.5).Round(time.Millisecond), pct(lat, 0.99).Round(time.Millisecond), pct(lat, 1).Round(time.Millisecond))

	// APPEND rate with two peers (node A of the cluster) against none:
	// blocks of -appends on each, alternating (the order flipped each
	// round) over -rounds rounds after one warm-up block each, so that
	// the machine's swings (GC, the page cache's writeback, other load)
	// fall on both alike; the ratio is of the medians.
	peered, stopPeered := nodes[0], func() {}
	peerIMAP := []string{nodes[1].imap, nodes[2].imap}
	peersCPU := func() time.Duration { return 0 }
	var nodeCores []int
	peersCore, diskCore := -1, -1
	if *apart {
		nodeCores, peersCore, diskCore = placeCores(root)
		must(pin(nodeCores...))
		rn, _ := build(root, 3, "r", false)
		for _, nd := range rn[1:] {
			nd.st.Close()
			if *peersdir != "" {
				// The peers' stores on a file system of their own
				// (their own disks, as other machines have).
				dir, err := os.MkdirTemp(*peersdir, "nymote-replica-peer-")
				must(err)
				defer os.RemoveAll(dir)
				if out, err := exec.Command("cp", "-a", nd.dir+"/.", dir).CombinedOutput(); err != nil {
					must(fmt.Errorf("copying %s to %s: %v: %s", nd.dir, dir, err, out))
				}
				must(os.RemoveAll(nd.dir))
				nd.dir = dir
			}
		}
		stopPeers, cpu := peersApart(rn[1:], peersCore)
		stopA := serve(rn[:1])
		peered, peersCPU = rn[0], cpu
		peerIMAP = []string{rn[1].imap, rn[2].imap}
		stopPeered = func() {
			stopA()
			rn[0].st.Close()
			stopPeers()
		}
	}
	if *blockprofile != "" {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
		runtime.SetMutexProfileFraction(1)
	}
	alone, _, stopAlone := cluster(root, 1, "s")
	ca, cp := dial(alone[0].imap, nil), dial(peered.imap, nil)
	var pcs []*imapclient.Client
	for _, addr := range peerIMAP {
		pcs = append(pcs, dial(addr, nil))
	}
	// held waits until both peers hold every message of the peered node's
	// INBOX (their IMAP STATUS says as many as its own), so that no block
	// starts while the peers still work on an earlier one.
	held := func() {
		count := func(c *imapclient.Client) uint32 {
			d, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
			must(err)
			return *d.NumMessages
		}
		want := count(cp)
		for t0 := time.Now(); ; time.Sleep(5 * time.Millisecond) {
			ok := true
			for _, c := range pcs {
				if count(c) < want {
					ok = false
				}
			}
			if ok {
				return
			}
			if time.Since(t0) > 5*time.Minute {
				must(fmt.Errorf("the peers do not hold %d messages after 5 minutes", want))
			}
		}
	}
	cpuPer := map[*imapclient.Client]time.Duration{}   // the process's CPU time in each side's blocks
	wrPer := map[*imapclient.Client]int64{}            // and what it wrote to disk
	latPer := map[*imapclient.Client][]time.Duration{} // each APPEND's time, client side
	var cpuPeers time.Duration                         // the peers' process's, in the peered blocks (-apart)
	var held2 []float64                                // peered blocks' rates counted until both peers hold them
	block := func(c *imapclient.Client, tag string) float64 {
		if *rateprofile != "" {
			// A profile of each block: FILE.aloneN and FILE.peeredN
			// (`go tool pprof -top BIN FILE.peered*` adds them up).
			f, err := os.Create(*rateprofile + "." + tag)
			must(err)
			must(pprof.StartCPUProfile(f))
			defer func() {
				pprof.StopCPUProfile()
				f.Close()
			}()
		}
		t0, c0, p0, w0 := time.Now(), cpuTime(), peersCPU(), written()
		for i := 0; i < *appends; i++ {
			ta := time.Now()
			// A region per APPEND in -ratetrace's trace, to find what
			// ran while slow ones waited.
			trace.WithRegion(context.Background(), "append-"+strings.TrimRight(strings.TrimPrefix(tag, "warm-"), "0123456789"),
				func() { appendMsg(c, fmt.Sprintf("%s-%d", tag, i)) })
			latPer[c] = append(latPer[c], time.Since(ta))
		}
		rate := float64(*appends) / time.Since(t0).Seconds()
		if c == cp {
			// The peers' work on the last pushes is this block's: it
			// ends when both peers hold every message (not counted in
			// the APPEND rate, which is what the client sees, but in
			// its CPU and in the rate until held).
			held()
			held2 = append(held2, float64(*appends)/time.Since(t0).Seconds())
			cpuPeers += peersCPU() - p0
		}
		cpuPer[c] += cpuTime() - c0
		wrPer[c] += written() - w0
		return rate
	}
	if *ratetrace != "" {
		f, err := os.Create(*ratetrace)
		must(err)
		must(trace.Start(f))
		defer func() {
			trace.Stop()
			f.Close()
		}()
	}
	block(ca, "warm-alone")
	block(cp, "warm-peered")
	clear(cpuPer)
	clear(wrPer)
	clear(latPer)
	held2, cpuPeers = nil, 0
	var r0, r2 []float64
	for r := 0; r < *rounds; r++ {
		if r%2 == 0 {
			r0 = append(r0, block(ca, fmt.Sprintf("alone%d", r)))
			r2 = append(r2, block(cp, fmt.Sprintf("peered%d", r)))
		} else {
			r2 = append(r2, block(cp, fmt.Sprintf("peered%d", r)))
			r0 = append(r0, block(ca, fmt.Sprintf("alone%d", r)))
		}
	}
	if *blockprofile != "" {
		for _, k := range []string{"block", "mutex"} {
			f, err := os.Create(*blockprofile + "." + k)
			must(err)
			must(pprof.Lookup(k).WriteTo(f, 0))
			f.Close()
		}
		runtime.SetBlockProfileRate(0)
		runtime.SetMutexProfileFraction(0)
	}
	ca.Logout()
	cp.Logout()
	for _, c := range pcs {
		c.Logout()
	}
	stopAlone()
	stopPeered()
	if *apart {
		must(pin(cores(0, runtime.NumCPU())...))
	}
	med := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	fmtRates := func(v []float64) string {
		var out []string
		for _, x := range v {
			out = append(out, fmt.Sprintf("%.0f", x))
		}
		return strings.Join(out, " ")
	}
	fmt.Printf("APPEND rate (%d rounds of %d): no peers median %.0f/s [%s], two peers median %.0f/s [%s], ratio %.2f\n",
		*rounds, *appends, med(r0), fmtRates(r0), med(r2), fmtRates(r2), med(r2)/med(r0))
	fmt.Printf("APPEND rate with two peers counted until both peers hold each block: median %.0f/s [%s], ratio %.2f\n",
		med(held2), fmtRates(held2), med(held2)/med(r0))
	n := time.Duration(*rounds * *appends)
	if *apart {
		disk := "unknown"
		if diskCore >= 0 {
			disk = fmt.Sprint(diskCore)
		}
		fmt.Printf("CPU per APPEND (the node and the client, on CPUs %v): no peers %v, two peers %v; the peers' process (CPU %d) %v; the disk's interrupts on CPU %s\n",
			nodeCores, (cpuPer[ca] / n).Round(10*time.Microsecond), (cpuPer[cp] / n).Round(10*time.Microsecond),
			peersCore, (cpuPeers / n).Round(10*time.Microsecond), disk)
	} else {
		fmt.Printf("CPU per APPEND (all nodes of the process): no peers %v, two peers %v\n",
			(cpuPer[ca] / n).Round(10*time.Microsecond), (cpuPer[cp] / n).Round(10*time.Microsecond))
	}
	// Where the rates differ: one client's APPENDs wait in turn, so a
	// mean well above the median is a tail of slow ones (a sync that
	// took long, a burst of other work ahead of the APPEND).
	latLine := func(ds []time.Duration) string {
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		return fmt.Sprintf("mean %v, p50 %v, p90 %v, p99 %v", (sum / time.Duration(len(ds))).Round(time.Microsecond),
			pct(ds, 0.5).Round(time.Microsecond), pct(ds, 0.9).Round(time.Microsecond), pct(ds, 0.99).Round(time.Microsecond))
	}
	fmt.Printf("APPEND latency, client side: no peers %s; two peers %s\n", latLine(latPer[ca]), latLine(latPer[cp]))
	if written() >= 0 {
		fmt.Printf("written to disk per APPEND (this process, /proc/self/io): no peers %.1f KB, two peers %.1f KB\n",
			float64(wrPer[ca])/float64(n)/1000, float64(wrPer[cp])/float64(n)/1000)
	}

	// Convergence after a partition with -writes commits per node.
	for i := range links {
		for j := range links[i] {
			if links[i][j] != nil {
				links[i][j].SetCut(true)
			}
		}
	}
	ctx := context.Background()
	for k, nd := range nodes {
		for i := 0; i < *writes; i++ {
			_, err := nd.st.Update(ctx, store.CommitOptions{Message: "bench"}, func(tx *store.Tx) error {
				return tx.Put(fmt.Sprintf("bench/%s/%d", nd.name, i), []byte(strings.Repeat("x", 100)+fmt.Sprint(k, i)))
			})
			must(err)
		}
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		must(err)
		must(pprof.StartCPUProfile(f))
		defer f.Close()
	}
	cpu0 := cpuTime()
	t0 := time.Now()
	for i := range links {
		for j := range links[i] {
			if links[i][j] != nil {
				links[i][j].SetCut(false)
			}
		}
	}
	for {
		h0, _ := nodes[0].st.Resolve("")
		same := true
		for _, nd := range nodes[1:] {
			if h, _ := nd.st.Resolve(""); h != h0 {
				same = false
			}
		}
		if same {
			break
		}
		if time.Since(t0) > 5*time.Minute {
			fmt.Println("convergence: not within 5 minutes")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("convergence after a partition, 3 nodes x %d commits: %v (CPU %v)\n", *writes, time.Since(t0).Round(time.Millisecond), (cpuTime() - cpu0).Round(100*time.Millisecond))
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	b.Close()
	a.Close()
	stop()
	_ = imap.FlagSeen
}

var ratetrace = flag.String("ratetrace", "", "write an execution trace of the rate phase (this process) to FILE, for go tool trace")

var logs = flag.Bool("log", false, "write the nodes' logs (debug level) to stderr")

var blockprofile = flag.String("blockprofile", "", "write the rate phase's blocking and mutex contention profiles (this process) to FILE.block and FILE.mutex")

var apart = flag.Bool("apart", false, "run the rate phase's two peers in a process of their own on the last CPU, the rest on the others (as if the peers were other machines)")

var peersdir = flag.String("peersdir", "/dev/shm", "with -apart, keep the peers' stores under this folder, on another file system than the node's (as if the peers had disks of their own); \"\" keeps them beside the node's")

var debounce = flag.Duration("debounce", 0, "the replica engine's Debounce (0: its default, 50 ms)")

var relay = flag.Duration("relay", 0, "the replica engine's Relay (0: its default, 1 s)")
