package replica

import (
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// FaultProxy is a TCP proxy whose faults a test controls: it forwards each
// connection to a target, and while it is cut it drops the connections it
// has and refuses new ones (a partition); Delay slows every chunk. It is
// exported for the partition tests of the apps and the benchmarks.
type FaultProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	delay time.Duration
	conns map[net.Conn]bool
	rnd   *rand.Rand
	drop  float64 // chance that a new connection is dropped at once
}

// NewFaultProxy listens on a loopback port and forwards to target.
func NewFaultProxy(target string, seed uint64) (*FaultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &FaultProxy{ln: ln, target: target, conns: map[net.Conn]bool{}, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	go p.serve()
	return p, nil
}

// Addr is the proxy's address.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// Close stops the proxy and its connections.
func (p *FaultProxy) Close() {
	p.ln.Close()
	p.SetCut(true)
}

// SetCut cuts the link (closing its connections) or heals it.
func (p *FaultProxy) SetCut(cut bool) {
	p.mu.Lock()
	p.cut = cut
	var cs []net.Conn
	if cut {
		for c := range p.conns {
			cs = append(cs, c)
		}
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// SetDelay delays each chunk forwarded by d.
func (p *FaultProxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// SetDrop makes the proxy drop a new connection at once with chance f.
func (p *FaultProxy) SetDrop(f float64) {
	p.mu.Lock()
	p.drop = f
	p.mu.Unlock()
}

func (p *FaultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.cut || (p.drop > 0 && p.rnd.Float64() < p.drop)
		if !refuse {
			p.conns[c] = true
		}
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *FaultProxy) forward(c net.Conn) {
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		c.Close()
	}()
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		u.Close()
		return
	}
	p.conns[u] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, u)
		p.mu.Unlock()
		u.Close()
	}()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				d := p.delay
				p.mu.Unlock()
				if d > 0 {
					time.Sleep(d)
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(u, c)
	go cp(c, u)
	<-done
	<-done
}
