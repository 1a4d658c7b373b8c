package jitsu

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Spare connections (see "Spare connections" in the package
// documentation): while an appliance runs, each of its ports has one
// connection to the appliance that jitsu opened ahead of any client and
// reads from (the greeting of a server-first protocol is buffered). The
// next client connection to the port is spliced onto it at once and the
// buffered bytes are written to the client, so a warm client never waits
// for the appliance's accept and greeting; a new spare is dialed in the
// background.

const (
	// DefaultSpareAge is how long a spare is kept before it is replaced
	// by a fresh one. It must stay below the shortest time a service
	// waits for a new connection's first command before closing it, so
	// that jitsu always closes a spare before the appliance would: the
	// DAV server's ReadHeaderTimeout is 20 s, imapserver's command
	// timeout and the git HTTP server's 30 s, smtpd's 5 min. A spare
	// the appliance closes first is noticed and replaced too, but a
	// client handed a spare at the very moment the appliance closes it
	// would see its connection closed; replacing spares early keeps that
	// from happening. The cost: one connection to each port of a running
	// appliance every 10 s.
	DefaultSpareAge = 10 * time.Second
	// minSpareAge keeps a configuration from turning the spare into a
	// dial loop.
	minSpareAge = 100 * time.Millisecond
	// spareMaxBuffer bounds what a spare buffers before a client takes
	// it. A service that sends more than this unasked is not one spares
	// are for: its pool stops.
	spareMaxBuffer = 64 << 10
	// spareRetry is the first wait after a failed dial or a spare the
	// appliance closed within spareShortLife; it doubles up to the
	// spare age.
	spareRetry     = 100 * time.Millisecond
	spareShortLife = time.Second
)

var errSpareTooMuch = errors.New("the appliance sent more than 64 KiB on a connection before any client")

// sparePool keeps one spare connection to one port of one running
// instance. Its goroutine dials a spare, reads from it until a client
// takes it (take), the appliance closes it, or it reaches its age, and
// then dials the next. A pool lives from the instance's start (or
// resume) to its stop (or suspend): close ends it and closes its spare.
type sparePool struct {
	log  *slog.Logger
	addr string
	age  time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	ready  *spare // nil while none is ready
	closed bool
}

// spare is one spare connection. Its pool's goroutine reads from it
// until taken is set, then hands what it read over on handoff.
type spare struct {
	c       net.Conn
	taken   bool // under the pool's mu
	handoff chan handoff
}

// handoff is what a spare had read when it was taken, and why its read
// ended (a deadline when it is alive).
type handoff struct {
	buf []byte
	err error
}

// startSparePool starts keeping a spare for addr; wg counts its
// goroutine.
func startSparePool(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, addr string, age time.Duration) *sparePool {
	p := &sparePool{log: log, addr: addr, age: age, done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(p.done)
		p.run()
	}()
	return p
}

// outcome is how a spare ended.
type outcome int

const (
	spareTaken    outcome = iota // a client took it
	spareAged                    // replaced after its age
	spareLost                    // the dial failed or the appliance closed it
	spareClosed                  // the pool was closed
	spareDisabled                // the service sent too much: no more spares
)

func (p *sparePool) run() {
	wait := time.Duration(0)
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-p.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if p.ctx.Err() != nil {
			return
		}
		born := time.Now()
		o, err := p.one()
		switch o {
		case spareTaken, spareAged:
			wait = 0
		case spareLost:
			if time.Since(born) >= spareShortLife {
				wait = 0 // a service's own timeout, shorter than the age
			} else {
				wait = min(max(2*wait, spareRetry), p.age)
			}
			p.log.Debug("spare connection lost", "addr", p.addr, "err", err, "retry_in", wait)
		case spareClosed:
			return
		case spareDisabled:
			p.log.Warn("no spare connections for this port", "addr", p.addr, "err", err)
			return
		}
	}
}

// one dials a spare and reads from it until it ends.
func (p *sparePool) one() (outcome, error) {
	var d net.Dialer
	c, err := d.DialContext(p.ctx, "tcp", p.addr)
	if err != nil {
		if p.ctx.Err() != nil {
			return spareClosed, err
		}
		return spareLost, err
	}
	sp := &spare{c: c, handoff: make(chan handoff, 1)}
	// The age is a read deadline, so that this goroutine needs no
	// timer: a spare nobody took ends its read and is replaced.
	c.SetReadDeadline(time.Now().Add(p.age))
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return spareClosed, nil
	}
	p.ready = sp
	p.mu.Unlock()
	var buf []byte
	rb := make([]byte, 4096)
	for {
		n, err := c.Read(rb)
		buf = append(buf, rb[:n]...)
		if err == nil && len(buf) > spareMaxBuffer {
			err = errSpareTooMuch
		}
		if err == nil {
			continue
		}
		p.mu.Lock()
		taken, closed := sp.taken, p.closed
		if p.ready == sp {
			p.ready = nil
		}
		p.mu.Unlock()
		if taken {
			sp.handoff <- handoff{buf: buf, err: err}
			return spareTaken, nil
		}
		c.Close()
		switch {
		case closed:
			return spareClosed, nil
		case errors.Is(err, errSpareTooMuch):
			return spareDisabled, err
		case errors.Is(err, os.ErrDeadlineExceeded):
			return spareAged, nil
		}
		return spareLost, err
	}
}

// aLongTimeAgo is a deadline that has passed: it ends a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// take returns the ready spare and what the appliance has sent on it so
// far (a greeting), or nil when none is ready or the one that was turned
// out to be closed by the appliance. The pool dials the next spare.
func (p *sparePool) take() (net.Conn, []byte) {
	p.mu.Lock()
	sp := p.ready
	if sp == nil || p.closed {
		p.mu.Unlock()
		return nil, nil
	}
	p.ready = nil
	sp.taken = true
	p.mu.Unlock()
	sp.c.SetReadDeadline(aLongTimeAgo) // ends the pool's read
	h := <-sp.handoff
	if h.err != nil && !errors.Is(h.err, os.ErrDeadlineExceeded) {
		// Closed by the appliance (or too much) just now: not for a
		// client.
		sp.c.Close()
		return nil, nil
	}
	sp.c.SetReadDeadline(time.Time{})
	return sp.c, h.buf
}

// readyCount is 1 when a spare is ready, else 0.
func (p *sparePool) readyCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready != nil {
		return 1
	}
	return 0
}

// close ends the pool: it closes the ready spare, stops a dial in
// progress and waits for the pool's goroutine. A spare already taken
// belongs to its client's proxy.
func (p *sparePool) close() {
	p.mu.Lock()
	p.closed = true
	sp := p.ready
	p.ready = nil
	p.mu.Unlock()
	p.cancel()
	if sp != nil {
		sp.c.Close()
	}
	<-p.done
}
