package jitsu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// State is where an appliance is in its life.
type State string

// States.
const (
	Stopped   State = "stopped"
	Booting   State = "booting"
	Running   State = "running"
	Suspended State = "suspended"
	Stopping  State = "stopping"
	// Suspending is on the way to Suspended.
	Suspending State = "suspending"
	// Failed is a stopped appliance whose last boot failed or that
	// crashed; it is tried again on a query after its back-off.
	Failed State = "failed"
)

// ErrBackoff is wrapped by the error of a query that comes while a failed
// appliance waits out its back-off.
var ErrBackoff = errors.New("waiting before the next boot after failures")

// op is a boot, resume or stop in progress; done is closed when it ends.
type op struct {
	done chan struct{}
	err  error
}

// appliance is the state of one configured appliance.
type appliance struct {
	cfg      ApplianceConfig
	launcher Launcher
	log      *slog.Logger
	srv      *Server

	mu        sync.Mutex
	state     State
	op        *op // while booting, resuming or stopping
	inst      Instance
	since     time.Time // when it entered its state
	lastQuery time.Time
	lastUse   time.Time             // last query, or last connection opened or closed
	conns     int                   // open client connections (spares are not)
	spares    map[string]*sparePool // by port name, while running
	boots     int
	failures  int // consecutive failed boots and early crashes
	retryAt   time.Time
	lastErr   error

	waiting   int            // queries waiting for a boot (parked or over TCP)
	parked    []pendingQuery // UDP queries waiting, answered by answerPending
	answering bool           // answerPending runs
}

// isRunning says whether the appliance is running (a query for it is
// answered at once).
func (a *appliance) isRunning() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state == Running
}

// answerPending boots (or resumes) the appliance, once however many
// queries are parked, and answers the parked queries when it is up (or
// SERVFAIL when the boot failed); it goes on while queries come, and ends
// when none is left. It is the one goroutine that waits for a boot on
// behalf of UDP queries.
func (a *appliance) answerPending() {
	s := a.srv
	defer s.wg.Done()
	for {
		var err error
		if s.ctx.Err() != nil || s.isClosed() {
			err = errors.New("jitsu is shutting down")
		} else {
			// A little longer than a boot may take, so that the
			// queries get the boot's own error.
			ctx, cancel := context.WithTimeout(s.ctx, time.Duration(a.cfg.BootTimeout)+time.Second)
			_, err = a.ensure(ctx)
			cancel()
		}
		a.mu.Lock()
		batch := a.parked
		a.parked = nil
		a.waiting -= len(batch)
		if len(batch) == 0 {
			a.answering = false
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		s.pending.Add(-int64(len(batch)))
		if err != nil {
			s.log.Error("SERVFAIL", "name", a.cfg.Name, "queries", len(batch), "err", err)
		}
		for _, q := range batch {
			if err != nil {
				servfail(q.m)
			} else {
				s.addressAnswer(a, q.m, nil)
			}
			s.reply(q.w, q.r, q.m)
		}
		a.log.Debug("answered queries that waited", "queries", len(batch), "err", err)
	}
}

// ensure returns the running instance, booting or resuming it (once,
// however many callers wait) when it is not running. ctx bounds the wait,
// not the boot, which is bounded by the appliance's boot timeout.
func (a *appliance) ensure(ctx context.Context) (Instance, error) {
	for {
		a.mu.Lock()
		switch a.state {
		case Running:
			inst := a.inst
			a.mu.Unlock()
			return inst, nil
		case Booting, Stopping, Suspending:
			o, st := a.op, a.state
			a.mu.Unlock()
			select {
			case <-o.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("%s: still %s: %w", a.cfg.Name, st, ctx.Err())
			}
			if st == Booting && o.err != nil {
				return nil, o.err
			}
			continue // look again: running, or stopped after a stop
		case Suspended:
			a.startOp(Booting, a.resume)
		case Stopped, Failed:
			if now := a.srv.now(); a.state == Failed && now.Before(a.retryAt) {
				err := fmt.Errorf("%s: %w (%d so far; next try in %v): last: %v", a.cfg.Name, ErrBackoff,
					a.failures, a.retryAt.Sub(now).Round(time.Millisecond), a.lastErr)
				a.mu.Unlock()
				return nil, err
			}
			a.startOp(Booting, a.boot)
		}
		a.mu.Unlock()
	}
}

// startOp enters state st and runs f in the background; a.mu is held.
func (a *appliance) startOp(st State, f func(*op)) {
	o := &op{done: make(chan struct{})}
	a.state, a.op, a.since = st, o, a.srv.now()
	a.srv.wg.Add(1)
	go func() {
		defer a.srv.wg.Done()
		f(o)
		close(o.done)
	}()
}

func (a *appliance) boot(o *op) {
	ctx, cancel := context.WithTimeout(a.srv.ctx, time.Duration(a.cfg.BootTimeout))
	defer cancel()
	a.log.Info("booting", "reason", "query or connection")
	t0 := time.Now()
	inst, err := a.launcher.Start(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.op = nil
	if err != nil {
		o.err = a.failLocked(fmt.Errorf("boot failed: %w", err))
		return
	}
	a.boots++
	a.state, a.inst, a.since, a.lastUse = Running, inst, a.srv.now(), a.srv.now()
	a.log.Info("running", "boot_time", time.Since(t0).Round(time.Millisecond), "boots", a.boots)
	a.startSparesLocked()
	a.srv.wg.Add(1)
	go a.watch(inst)
}

// failLocked records a failed boot or a crash and sets the back-off.
func (a *appliance) failLocked(err error) error {
	a.failures++
	back := a.srv.opts.Backoff << (a.failures - 1)
	if back > a.srv.opts.MaxBackoff || back <= 0 {
		back = a.srv.opts.MaxBackoff
	}
	a.state, a.inst, a.since, a.lastErr = Failed, nil, a.srv.now(), err
	a.retryAt = a.srv.now().Add(back)
	a.log.Error("appliance failed: queries get SERVFAIL until the next try", "err", err,
		"failures", a.failures, "retry_in", back)
	return fmt.Errorf("%s: %w", a.cfg.Name, err)
}

// watch notices an instance that exits without being asked to.
func (a *appliance) watch(inst Instance) {
	defer a.srv.wg.Done()
	<-inst.Done()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inst != inst || a.state == Stopping {
		return // stopped by us
	}
	a.closeSparesLocked()
	up := a.srv.now().Sub(a.since)
	if up > time.Minute {
		a.failures = 0 // a crash after a good run is not a crash loop
	}
	a.failLocked(fmt.Errorf("crashed after %v: %v", up.Round(time.Millisecond), inst.Err()))
}

func (a *appliance) resume(o *op) {
	ctx, cancel := context.WithTimeout(a.srv.ctx, time.Duration(a.cfg.BootTimeout))
	defer cancel()
	a.mu.Lock()
	inst := a.inst
	a.mu.Unlock()
	err := inst.(Suspender).Resume(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.op = nil
	if err != nil {
		o.err = a.failLocked(fmt.Errorf("resume failed: %w", err))
		inst.Stop(ctx)
		return
	}
	a.state, a.since, a.lastUse = Running, a.srv.now(), a.srv.now()
	a.log.Info("resumed")
	a.startSparesLocked()
}

// stop powers the appliance off (from Running or Suspended); a.mu is held.
func (a *appliance) stopLocked(reason string) {
	inst := a.inst
	a.log.Info("stopping", "reason", reason)
	a.closeSparesLocked() // before the power-off: no connection of ours is left open
	a.startOp(Stopping, func(o *op) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(a.srv.ctx), a.srv.opts.StopTimeout)
		defer cancel()
		t0 := time.Now()
		err := inst.Stop(ctx)
		a.mu.Lock()
		defer a.mu.Unlock()
		a.op, a.inst, a.since = nil, nil, a.srv.now()
		if err != nil {
			a.state, a.lastErr = Stopped, err
			a.log.Error("stop was not clean", "err", err)
			return
		}
		a.state, a.failures = Stopped, 0
		a.log.Info("stopped cleanly", "took", time.Since(t0).Round(time.Millisecond))
	})
}

// idleCheck stops or suspends a running appliance idle for 2×TTL.
func (a *appliance) idleCheck(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != Running || a.conns > 0 || a.cfg.Idle == IdleNever {
		return
	}
	idle := now.Sub(a.lastUse)
	if idle < 2*time.Duration(a.cfg.TTL) {
		return
	}
	if a.cfg.Idle == IdleSuspend {
		if s, ok := a.inst.(Suspender); ok {
			// A paused appliance answers nothing: its spares go, and
			// the resume dials new ones.
			a.closeSparesLocked()
			// In the background: a QMP or API call may take a while,
			// and queries and status must not wait on a.mu meanwhile.
			a.startOp(Suspending, func(o *op) {
				ctx, cancel := context.WithTimeout(a.srv.ctx, a.srv.opts.StopTimeout)
				err := s.Suspend(ctx)
				cancel()
				a.mu.Lock()
				defer a.mu.Unlock()
				a.op = nil
				if err == nil {
					a.state, a.since = Suspended, a.srv.now()
					a.log.Info("suspended", "idle", idle.Round(time.Millisecond))
					return
				}
				a.log.Warn("suspend failed: stopping instead", "err", err)
				a.state = Running
				a.stopLocked("idle, and suspend failed")
			})
			return
		}
		a.log.Warn("this launcher cannot suspend: stopping instead")
	}
	a.stopLocked(fmt.Sprintf("idle for %v", idle.Round(time.Millisecond)))
}

// startSparesLocked starts a pool of spare connections for each port of
// the running instance (unless the configuration turns them off); a.mu
// is held.
func (a *appliance) startSparesLocked() {
	if a.cfg.Spare == SpareOff {
		return
	}
	age := time.Duration(a.cfg.Spare)
	if age <= 0 { // a configuration not from ParseConfig
		age = DefaultSpareAge
	}
	a.spares = map[string]*sparePool{}
	for _, p := range a.cfg.Ports {
		a.spares[p.Name] = startSparePool(a.srv.ctx, &a.srv.wg, a.log.With("port", p.Name), a.inst.Addr(p.Name), age)
	}
}

// closeSparesLocked closes the spare connections and waits for their
// pools' goroutines (which never take a.mu); a.mu is held.
func (a *appliance) closeSparesLocked() {
	for _, p := range a.spares {
		p.close()
	}
	a.spares = nil
}

// takeSpare returns a spare connection to port of inst and what the
// appliance sent on it so far, or nil when none is ready. It does not
// count as a connection: the client's connection it serves already does.
func (a *appliance) takeSpare(inst Instance, port string) (net.Conn, []byte) {
	a.mu.Lock()
	p := a.spares[port]
	if a.inst != inst || a.state != Running {
		p = nil
	}
	a.mu.Unlock()
	if p == nil {
		return nil, nil
	}
	return p.take()
}

// touch records a query (query true) or connection activity.
func (a *appliance) touch(query bool) {
	a.mu.Lock()
	now := a.srv.now()
	a.lastUse = now
	if query {
		a.lastQuery = now
	}
	a.mu.Unlock()
}

// connDelta counts open proxied connections.
func (a *appliance) connDelta(d int) {
	a.mu.Lock()
	a.conns += d
	a.lastUse = a.srv.now()
	a.mu.Unlock()
}

// Status is the state of one appliance, as nymote summon status shows it.
type Status struct {
	Name        string    `json:"name"`
	Address     string    `json:"address"`
	State       State     `json:"state"`
	Since       time.Time `json:"since"`
	Uptime      string    `json:"uptime,omitempty"`
	LastQuery   time.Time `json:"last_query,omitzero"`
	Connections int       `json:"connections"`
	// Spares is the number of spare connections ready (one per port
	// while running, unless turned off); they are not Connections.
	Spares int `json:"spares"`
	// Backends are the addresses (host:port) jitsu proxies each port to
	// while the appliance runs: a QEMU port forward, a loopback port of
	// a process, the guest's own address. For status displays and for
	// measuring the appliance without jitsu's hop (bench/jitsu).
	Backends  map[string]string `json:"backends,omitempty"`
	Boots     int               `json:"boots"`
	Failures  int               `json:"failures,omitempty"`
	LastError string            `json:"last_error,omitempty"`
}

func (a *appliance) status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{Name: a.cfg.Name, Address: a.cfg.Address, State: a.state, Since: a.since,
		LastQuery: a.lastQuery, Connections: a.conns, Boots: a.boots, Failures: a.failures}
	if a.state == Running {
		st.Uptime = a.srv.now().Sub(a.since).Round(time.Millisecond).String()
		for _, p := range a.spares {
			st.Spares += p.readyCount()
		}
		st.Backends = map[string]string{}
		for _, p := range a.cfg.Ports {
			st.Backends[p.Name] = a.inst.Addr(p.Name)
		}
	}
	if a.lastErr != nil {
		st.LastError = a.lastErr.Error()
	}
	return st
}

// shutdown stops a running or suspended appliance and waits for the stop.
func (a *appliance) shutdown() {
	a.mu.Lock()
	var o *op
	switch a.state {
	case Running, Suspended:
		a.stopLocked("jitsu is shutting down")
		o = a.op
	case Booting, Stopping, Suspending:
		o = a.op
	}
	a.mu.Unlock()
	if o != nil {
		<-o.done
	}
	a.mu.Lock()
	if a.state == Running || a.state == Suspended { // a boot that finished
		a.stopLocked("jitsu is shutting down")
		o = a.op
		a.mu.Unlock()
		<-o.done
		return
	}
	a.mu.Unlock()
}
