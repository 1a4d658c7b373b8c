//go:build linux

package netstackbench

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/netstack/netstacktest"
)

const chunk = 64 << 10

// serve answers the benchmark protocol: a request is one byte and a
// uint64 n. 'U': read n chunks, then write one byte. 'D': write n chunks.
// 'C': write one byte and close.
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var req [9]byte
			if _, err := io.ReadFull(c, req[:]); err != nil {
				return
			}
			n := int64(binary.BigEndian.Uint64(req[1:]))
			switch req[0] {
			case 'U':
				if _, err := io.CopyN(io.Discard, c, n*chunk); err == nil {
					c.Write([]byte{1})
				}
			case 'D':
				buf := make([]byte, chunk)
				for range n {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			case 'C':
				c.Write([]byte{1})
			}
		}()
	}
}

type env struct {
	nsN, nsK, ifN, ifK string
}

func request(c net.Conn, op byte, n int) error {
	var req [9]byte
	req[0] = op
	binary.BigEndian.PutUint64(req[1:], uint64(n))
	_, err := c.Write(req[:])
	return err
}

func (e *env) dial(b *testing.B, addr string) net.Conn {
	c, err := netstacktest.Dial(e.nsK, "tcp", addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// cpuTime returns the CPU time (user and system) the process has used:
// client and server alike, since both run here, and the kernel's
// network processing done in their system calls.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time since start per unit of work
// (n units). On a machine shared with other work the rates swing with the
// neighbours' load; CPU time per unit swings much less, and the kernel
// and netstack runs share the client's part of it.
func reportCPU(b *testing.B, start time.Duration, n float64, unit string) {
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/n, unit)
}

func benchUpload(b *testing.B, e *env, addr string) {
	c := e.dial(b, addr)
	defer c.Close()
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { reportCPU(b, cpu0, float64(b.N)*chunk/(1<<20), "cpu-µs/MiB") }()
	if err := request(c, 'U', b.N); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		b.Fatal(err)
	}
}

func benchDownload(b *testing.B, e *env, addr string) {
	c := e.dial(b, addr)
	defer c.Close()
	b.SetBytes(chunk)
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { reportCPU(b, cpu0, float64(b.N)*chunk/(1<<20), "cpu-µs/MiB") }()
	if err := request(c, 'D', b.N); err != nil {
		b.Fatal(err)
	}
	if n, err := io.CopyN(io.Discard, c, int64(b.N)*chunk); err != nil {
		b.Fatalf("read %d bytes: %v", n, err)
	}
}

// benchConnect opens, uses and closes b.N connections, from 8 client
// goroutines at a time.
func benchConnect(b *testing.B, e *env, addr string) {
	b.SetParallelism(4) // 4 × GOMAXPROCS clients
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		var one [1]byte
		for pb.Next() {
			c, err := netstacktest.Dial(e.nsK, "tcp", addr, 5*time.Second)
			if err != nil {
				b.Error(err)
				return
			}
			if err := request(c, 'C', 0); err != nil {
				b.Error(err)
			}
			if _, err := io.ReadFull(c, one[:]); err != nil {
				b.Error(err)
			}
			c.Close()
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
	reportCPU(b, cpu0, float64(b.N), "cpu-µs/conn")
}

var (
	kernelAddr   = netip.MustParseAddr("10.77.0.3")
	netstackAddr = netip.MustParseAddr("10.77.0.2")
	clientAddr   = netip.MustParseAddr("10.77.0.1")
)

// BenchmarkTCP runs each measurement against the kernel's stack, then
// against a netstack, on the same veth end.
func BenchmarkTCP(b *testing.B) {
	netstacktest.NeedRoot(b)
	e := &env{}
	e.nsN, e.nsK = netstacktest.NewNS(b), netstacktest.NewNS(b)
	e.ifN, e.ifK = netstacktest.Veth(b, e.nsN, e.nsK)
	// By default the client keeps its transmit offloads (checksum, TSO),
	// as a host's stack does; with NYMOTE_BENCH_OFFLOAD=off it sends
	// every frame complete, as frames arrive from a wire. Both servers
	// see the same frames.
	if os.Getenv("NYMOTE_BENCH_OFFLOAD") == "off" {
		if err := netstacktest.DisableTXChecksumOffload(e.nsK, e.ifK); err != nil {
			b.Fatal(err)
		}
	}
	netstacktest.Run(b, "ip", "-n", e.nsK, "addr", "add", clientAddr.String()+"/24", "dev", e.ifK)
	netstacktest.Run(b, "ip", "-n", e.nsK, "link", "set", e.ifK, "up")

	benches := []struct {
		name string
		f    func(*testing.B, *env, string)
	}{
		{"upload", benchUpload},
		{"download", benchDownload},
		{"connect", benchConnect},
	}

	// The kernel's stack on the server end.
	netstacktest.Run(b, "ip", "-n", e.nsN, "addr", "add", kernelAddr.String()+"/24", "dev", e.ifN)
	netstacktest.Run(b, "ip", "-n", e.nsN, "link", "set", e.ifN, "up")
	ln, err := netstacktest.Listen(e.nsN, "tcp", ":5001")
	if err != nil {
		b.Fatal(err)
	}
	go serve(ln)
	addr := netip.AddrPortFrom(kernelAddr, 5001).String()
	waitDial(b, e, addr)
	for _, bb := range benches {
		b.Run("kernel/"+bb.name, func(b *testing.B) { bb.f(b, e, addr) })
	}
	ln.Close()
	// Take the kernel off the link: it shares the interface's MAC with
	// the netstack and would otherwise also see every frame.
	netstacktest.Run(b, "ip", "-n", e.nsN, "addr", "flush", "dev", e.ifN)

	// A netstack on the same end.
	var link *netstack.Link
	if err := netstacktest.Do(e.nsN, func() error {
		var err error
		link, err = netstack.OpenPacket(e.ifN)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	// Warnings and errors only (a link reader that stops, say).
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := netstack.New(netstack.Options{Link: link, Logger: logger, IPv4: netip.PrefixFrom(netstackAddr, 24), NoDHCP: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	nln, err := st.Listen("tcp", ":5001")
	if err != nil {
		b.Fatal(err)
	}
	defer nln.Close()
	go serve(nln)
	addr = netip.AddrPortFrom(netstackAddr, 5001).String()
	waitDial(b, e, addr)
	for _, bb := range benches {
		b.Run("netstack/"+bb.name, func(b *testing.B) { bb.f(b, e, addr) })
	}
	s := st.Stats()
	b.Logf("netstack stats: %+v", s)
}

// waitDial waits until a connection to addr succeeds.
func waitDial(b *testing.B, e *env, addr string) {
	var err error
	for range 50 {
		var c net.Conn
		c, err = netstacktest.Dial(e.nsK, "tcp", addr, time.Second)
		if err == nil {
			request(c, 'C', 0)
			io.ReadAll(c)
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("server %s not reachable: %v", addr, err)
}
