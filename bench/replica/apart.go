package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/store"
)

// With -apart, the rate phase's two peers run in a child process (this
// program again) pinned to one core, and this process (the node they sync
// with, the node without peers and the client) to the others: as when the
// peers are a person's other machines, their work of receiving does not
// take the appending node's CPU, and what the ratio measures is what
// syncing costs the node itself (its pushes). Both sides of the ratio run
// on the same cores.
//
// The peers' core is one that does not take the interrupts of the disk
// under the nodes' stores (placeCores): on this VM, whose disk interrupts
// all go to one vCPU, the node's fdatasyncs took longer while the peers
// ran there (ratio 0.59–0.83 in three runs; with the peers on the other
// core, 0.80–0.97 in three runs alternating with those), which peers on
// machines of their own would not do.

// childEnv names the nodes a child serves: name=dir pairs, comma
// separated; its listeners are its files 3 and up, IMAP and git of each.
// childCPUEnv is the core the child pins itself to.
const (
	childEnv    = "NYMOTE_REPLICA_BENCH_PEERS"
	childCPUEnv = "NYMOTE_REPLICA_BENCH_PEERS_CPU"
)

// placeCores chooses the peers' core and this process's cores for -apart:
// the peers on the last core that does not take the interrupts of the
// disk under dir, this process on all the others. disk is that disk's
// interrupt core, -1 when the system does not say (the peers then go on
// the last core).
func placeCores(dir string) (node []int, peers, disk int) {
	n := runtime.NumCPU()
	disk = diskCPU(dir)
	peers = n - 1
	if disk == peers && n > 1 {
		peers = n - 2
	}
	for c := range n {
		if c != peers {
			node = append(node, c)
		}
	}
	return node, peers, disk
}

// diskCPU returns the core that takes the interrupts of the disk that
// holds dir: of the disk's PCI device (found through /sys/dev/block), the
// MSI interrupt that fired most (/proc/interrupts) and the core it is
// delivered to (effective_affinity_list), when that is one core; -1 when
// any of it cannot be read (no PCI disk, no MSI, several cores).
func diskCPU(dir string) int {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return -1
	}
	dev, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return -1
	}
	var irqs []os.DirEntry
	for d := dev; d != "/" && d != "." && irqs == nil; d = filepath.Dir(d) {
		irqs, _ = os.ReadDir(filepath.Join(d, "msi_irqs"))
	}
	counts := map[string]int64{}
	if b, err := os.ReadFile("/proc/interrupts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.HasSuffix(f[0], ":") {
				continue
			}
			for _, x := range f[1:] {
				v, err := strconv.ParseInt(x, 10, 64)
				if err != nil {
					break
				}
				counts[strings.TrimSuffix(f[0], ":")] += v
			}
		}
	}
	best, cpu := int64(-1), -1
	for _, e := range irqs {
		b, err := os.ReadFile(filepath.Join("/proc/irq", e.Name(), "effective_affinity_list"))
		if err != nil {
			continue
		}
		c, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue // several cores
		}
		if counts[e.Name()] > best {
			best, cpu = counts[e.Name()], c
		}
	}
	return cpu
}

// pin sets the CPU affinity of every thread of this process to cpus
// (threads made later inherit it from the thread that makes them; the
// pass is repeated until no new thread showed up during one).
func pin(cpus ...int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	done := map[int]bool{}
	for {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		n := 0
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pinning thread %d to CPUs %v: %w", tid, cpus, err)
			}
			done[tid] = true
			n++
		}
		if n == 0 {
			return nil
		}
	}
}

// cores lists CPUs lo..hi-1.
func cores(lo, hi int) []int {
	var c []int
	for i := lo; i < hi; i++ {
		c = append(c, i)
	}
	return c
}

// peersApart serves nodes (stores closed by the caller after build) in a
// child process pinned to core cpu; the function it returns stops
// the child, and cpu reads the child's CPU time so far.
func peersApart(nodes []*node, core int) (stop func(), cpu func() time.Duration) {
	var pairs []string
	var files []*os.File
	for _, nd := range nodes {
		pairs = append(pairs, nd.name+"="+nd.dir)
		for _, ln := range []net.Listener{nd.ls.IMAP, nd.ls.Git} {
			f, err := ln.(*net.TCPListener).File()
			must(err)
			files = append(files, f)
			ln.Close()
		}
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(pairs, ","), childCPUEnv+"="+strconv.Itoa(core))
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	must(err)
	out, err := cmd.StdoutPipe()
	must(err)
	must(cmd.Start())
	for _, f := range files {
		f.Close()
	}
	// The child says "serving" once its stores are open.
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "serving\n" {
		must(fmt.Errorf("peers' process: %q, %v", line, err))
	}
	go io.Copy(os.Stderr, out)
	pid := cmd.Process.Pid
	return func() {
			in.Close()
			must(cmd.Wait())
		}, func() time.Duration {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			must(err)
			// Fields after the command's closing parenthesis: utime
			// and stime are the 12th and 13th, in clock ticks (100 Hz).
			f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			return time.Duration(u+s) * 10 * time.Millisecond
		}
}

// child serves the nodes childEnv names until its standard input closes.
func child(spec, profile string) {
	core, err := strconv.Atoi(os.Getenv(childCPUEnv))
	must(err)
	must(pin(core))
	var nodes []*node
	fd := uintptr(3)
	for _, pair := range strings.Split(spec, ",") {
		name, dir, _ := strings.Cut(pair, "=")
		nd := &node{name: name, dir: dir}
		var lns [2]net.Listener
		for i := range lns {
			ln, err := net.FileListener(os.NewFile(fd, name))
			must(err)
			lns[i] = ln
			fd++
		}
		nd.ls = mailsvc.Listeners{IMAP: lns[0], Git: lns[1]}
		st, err := store.OpenData(dir, store.Options{})
		must(err)
		nd.st = st
		nodes = append(nodes, nd)
	}
	stop := serve(nodes)
	if profile != "" {
		// The peers' side of the rate phase (warm-up included).
		f, err := os.Create(profile + ".peers")
		must(err)
		must(pprof.StartCPUProfile(f))
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	fmt.Println("serving")
	io.Copy(io.Discard, os.Stdin)
	stop()
	for _, nd := range nodes {
		nd.st.Close()
	}
}
