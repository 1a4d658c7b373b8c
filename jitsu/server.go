package jitsu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/pires/go-proxyproto"
)

// Options tune a Server. The zero value is usable.
type Options struct {
	// Log receives structured events; nil discards them.
	Log *slog.Logger
	// Launcher makes the launcher of an appliance; nil means NewLauncher.
	Launcher func(ApplianceConfig, *slog.Logger) (Launcher, error)
	// Backoff is the wait after a first failed boot or crash before the
	// next try; it doubles with each further failure up to MaxBackoff.
	// Zero means 2s (MaxBackoff: 1m).
	Backoff, MaxBackoff time.Duration
	// StopTimeout bounds a clean power-off before the appliance is
	// killed. Zero means 90s.
	StopTimeout time.Duration
	// IdleCheck is how often idle appliances are looked for; zero means
	// a quarter of the shortest TTL, at most 1s.
	IdleCheck time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxPendingPerName bounds the queries for one appliance's name that
	// wait for its boot (or resume); MaxPending bounds them over all
	// names. A query beyond either bound gets SERVFAIL at once, counted
	// in the log. A waiting query over UDP holds no goroutine: it is
	// kept as its message and reply address and answered when the boot
	// ends. Zero means 256 and 2048.
	MaxPendingPerName, MaxPending int
	// MaxForwarding bounds the queries being forwarded at once (see
	// Config.Forward); beyond it a query gets SERVFAIL. Zero means 128.
	MaxForwarding int
}

// Defaults of Options' bounds. A waiting UDP query costs its message and
// its reply's address, a few hundred bytes: 2048 of them about 1 MB.
const (
	defaultMaxPendingPerName = 256
	defaultMaxPending        = 2048
	defaultMaxForwarding     = 128
)

// Server is a jitsu server: an authoritative DNS server for the
// configured zones that summons appliances, plus the TCP listeners that
// hold their ports (see the package documentation). Create it with New,
// run it with Start, end it with Close.
type Server struct {
	cfg  *Config
	opts Options
	log  *slog.Logger

	apps  map[string]*appliance // by canonical name
	order []*appliance

	names *signpostNames          // the person's network (Config.Signpost), or nil
	mail  map[string]*mailRecords // by zone name (Zone.Mail)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	udp       net.PacketConn
	tcp       net.Listener
	dnsSrv    []*dns.Server
	listeners []net.Listener
	control   *http.Server
	controlLn net.Listener
	closed    bool

	// pending counts the queries waiting for boots (under mu of no
	// one: atomically); refused counts those refused beyond the
	// bounds since the last log line.
	pending    atomic.Int64
	refused    atomic.Int64
	forwarding chan struct{} // a slot per query being forwarded
}

// New checks cfg and makes the launchers; it starts nothing.
func New(cfg *Config, opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Launcher == nil {
		opts.Launcher = NewLauncher
	}
	if opts.Backoff == 0 {
		opts.Backoff = 2 * time.Second
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = time.Minute
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 90 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxPendingPerName <= 0 {
		opts.MaxPendingPerName = defaultMaxPendingPerName
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = defaultMaxPending
	}
	if opts.MaxForwarding <= 0 {
		opts.MaxForwarding = defaultMaxForwarding
	}
	s := &Server{cfg: cfg, opts: opts, log: opts.Log, apps: map[string]*appliance{},
		forwarding: make(chan struct{}, opts.MaxForwarding)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	minTTL := time.Duration(0)
	for _, ac := range cfg.Appliances {
		l, err := opts.Launcher(ac, opts.Log)
		if err != nil {
			return nil, fmt.Errorf("jitsu: %s: %w", ac.Name, err)
		}
		a := &appliance{cfg: ac, launcher: l, srv: s, state: Stopped, since: s.now(),
			log: opts.Log.With("appliance", ac.Name)}
		s.apps[ac.Name] = a
		s.order = append(s.order, a)
		if ttl := time.Duration(ac.TTL); minTTL == 0 || ttl < minTTL {
			minTTL = ttl
		}
	}
	if cfg.Signpost != nil {
		n, err := newSignpostNames(cfg.Signpost)
		if err != nil {
			return nil, err
		}
		s.names = n
	}
	s.mail = map[string]*mailRecords{}
	for i := range cfg.Zones {
		z := &cfg.Zones[i]
		if z.Mail == nil {
			continue
		}
		skip := map[string]bool{}
		for name := range s.apps {
			skip[name] = true
		}
		mr := &mailRecords{cfg: z.Mail, skip: skip, now: opts.Now, log: opts.Log}
		mr.records() // built now, so that a problem shows in the log at once
		s.mail[z.Name] = mr
	}
	if s.opts.IdleCheck == 0 {
		s.opts.IdleCheck = min(minTTL/4, time.Second)
		if s.opts.IdleCheck <= 0 {
			s.opts.IdleCheck = time.Second
		}
	}
	return s, nil
}

func (s *Server) now() time.Time { return s.opts.Now() }

// Start opens the DNS server (UDP and TCP), the appliances' ports and the
// control endpoint and serves them in the background until Close. On
// error it closes what it opened.
func (s *Server) Start() (err error) {
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	var lc net.ListenConfig
	// UDP and TCP on the same port; when the port is 0, the one the
	// system picked for UDP may be taken for TCP: try again.
	for try := 0; ; try++ {
		s.udp, err = lc.ListenPacket(s.ctx, "udp", s.cfg.DNS)
		if err != nil {
			return fmt.Errorf("jitsu: DNS: %w", err)
		}
		tcpAddr := s.cfg.DNS
		_, p, _ := net.SplitHostPort(s.cfg.DNS)
		if p == "0" {
			tcpAddr = s.udp.LocalAddr().String()
		}
		s.tcp, err = lc.Listen(s.ctx, "tcp", tcpAddr)
		if err == nil {
			break
		}
		s.udp.Close()
		s.udp = nil
		if p != "0" || try == 10 {
			return fmt.Errorf("jitsu: DNS over TCP: %w", err)
		}
	}
	h := dns.HandlerFunc(s.serveDNS)
	s.dnsSrv = []*dns.Server{
		{PacketConn: s.udp, Handler: h},
		{Listener: s.tcp, Handler: h, ReadTimeout: 5 * time.Second},
	}
	for _, a := range s.order {
		for _, p := range a.cfg.Ports {
			addr := net.JoinHostPort(a.cfg.Address, strconv.Itoa(p.Port))
			ln, err := lc.Listen(s.ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("jitsu: %s port %s: %w", a.cfg.Name, p.Name, err)
			}
			s.listeners = append(s.listeners, ln)
			s.wg.Add(1)
			go s.acceptLoop(a, p.Name, ln)
		}
	}
	if s.cfg.Control != "" {
		s.controlLn, err = lc.Listen(s.ctx, "tcp", s.cfg.Control)
		if err != nil {
			return fmt.Errorf("jitsu: control: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(s.Status())
		})
		s.control = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.control.Serve(s.controlLn)
		}()
	}
	for _, d := range s.dnsSrv {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := d.ActivateAndServe(); err != nil && s.ctx.Err() == nil {
				s.log.Error("DNS server stopped", "err", err)
			}
		}()
	}
	s.wg.Add(1)
	go s.idleLoop()
	s.log.Info("jitsu serving", "dns", s.udp.LocalAddr().String(), "appliances", len(s.order))
	return nil
}

// DNSAddr is the address the DNS server listens on (UDP and TCP).
func (s *Server) DNSAddr() string { return s.udp.LocalAddr().String() }

// ControlAddr is the control endpoint's address, "" when there is none.
func (s *Server) ControlAddr() string {
	if s.controlLn == nil {
		return ""
	}
	return s.controlLn.Addr().String()
}

// Status returns the state of every appliance, in configuration order.
func (s *Server) Status() []Status {
	var st []Status
	for _, a := range s.order {
		st = append(st, a.status())
	}
	return st
}

// isClosed says whether Close has been called.
func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops serving, powers off the running appliances cleanly and
// waits for everything it started.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	for _, d := range s.dnsSrv {
		d.Shutdown()
	}
	for _, ln := range s.listeners {
		ln.Close()
	}
	if s.control != nil {
		s.control.Close()
	}
	if s.udp != nil {
		s.udp.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
	var wg sync.WaitGroup
	for _, a := range s.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.shutdown()
		}()
	}
	wg.Wait()
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Server) idleLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.IdleCheck)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			now := s.now()
			for _, a := range s.order {
				a.idleCheck(now)
			}
			// One line per tick at most, however many were refused.
			if n := s.refused.Swap(0); n > 0 {
				s.log.Warn("DNS queries refused (SERVFAIL): too many waiting for boots or being forwarded", "count", n,
					"max_pending_per_name", s.opts.MaxPendingPerName, "max_pending", s.opts.MaxPending,
					"max_forwarding", s.opts.MaxForwarding)
			}
		}
	}
}

// serveDNS answers one query, or parks it until its appliance's boot
// ends (then the appliance's answerPending answers it).
func (s *Server) serveDNS(w dns.ResponseWriter, r *dns.Msg) {
	if m := s.answer(w, r); m != nil {
		s.reply(w, r, m)
	}
}

// reply sends m, the answer to r, truncated to what the client can take
// over UDP.
func (s *Server) reply(w dns.ResponseWriter, r, m *dns.Msg) {
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := uint16(dns.MinMsgSize)
		if o := r.IsEdns0(); o != nil {
			size = max(o.UDPSize(), size)
		}
		m.Truncate(int(size))
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("DNS reply not sent", "err", err)
	}
}

// answer returns the answer to r, or nil when the query was parked to be
// answered when its appliance's boot ends.
func (s *Server) answer(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
	from := w.RemoteAddr()
	m := new(dns.Msg)
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		m.SetRcode(r, dns.RcodeNotImplemented)
		return m
	}
	q := r.Question[0]
	if s.names != nil {
		if m, ok := s.names.answer(r, from); ok {
			return m
		}
	}
	name := dns.CanonicalName(q.Name)
	z := s.cfg.zoneOf(name)
	if z == nil || q.Qclass != dns.ClassINET {
		return s.forward(r, from)
	}
	m.SetReply(r)
	m.Authoritative = true
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(max(o.UDPSize(), dns.MinMsgSize), false)
	}
	soa := s.soa(z)
	a, ok := s.apps[name]
	mail := s.mail[z.Name]
	switch {
	case ok:
		a.touch(true)
		ip := netip.MustParseAddr(a.cfg.Address)
		want := (q.Qtype == dns.TypeA && ip.Is4()) || (q.Qtype == dns.TypeAAAA && ip.Is6()) || q.Qtype == dns.TypeANY
		if !want {
			m.Ns = []dns.RR{soa} // NOERROR, no data
			return m
		}
		if a.isRunning() {
			s.addressAnswer(a, m, nil)
			return m
		}
		if _, udp := from.(*net.UDPAddr); udp {
			// No goroutine waits for the boot per query: the query
			// is kept and answered when the boot ends.
			if !s.park(a, w, r, m) {
				s.refused.Add(1)
				return servfail(m)
			}
			return nil
		}
		// Over TCP the connection's own goroutine (miekg/dns keeps
		// one per connection) waits, within the same bounds.
		if !s.reserve(a) {
			s.refused.Add(1)
			return servfail(m)
		}
		defer s.unreserve(a)
		// A little longer than a boot may take, so that the query
		// gets the boot's own error.
		ctx, cancel := context.WithTimeout(s.ctx, time.Duration(a.cfg.BootTimeout)+time.Second)
		defer cancel()
		_, err := a.ensure(ctx)
		s.addressAnswer(a, m, err)
	case name == z.Name:
		switch q.Qtype {
		case dns.TypeSOA:
			m.Answer = []dns.RR{soa}
		case dns.TypeNS, dns.TypeANY:
			for _, ns := range z.NS {
				m.Answer = append(m.Answer, &dns.NS{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeNS,
					Class: dns.ClassINET, Ttl: uint32(time.Duration(z.TTL) / time.Second)}, Ns: ns})
			}
			if q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, soa)
				if mail != nil {
					mail.answer(q, m)
				}
			}
		default:
			if mail != nil {
				mail.answer(q, m)
			}
			if len(m.Answer) == 0 {
				m.Ns = []dns.RR{soa}
			}
		}
	case mail != nil && mail.answer(q, m):
		if len(m.Answer) == 0 {
			m.Ns = []dns.RR{soa} // NOERROR, no data
		}
	default:
		m.Rcode = dns.RcodeNameError
		// A name with appliances below it exists (an empty
		// non-terminal): NOERROR with no data.
		for n := range s.apps {
			if dns.IsSubDomain(name, n) {
				m.Rcode = dns.RcodeSuccess
				break
			}
		}
		m.Ns = []dns.RR{soa}
	}
	return m
}

func (s *Server) soa(z *Zone) *dns.SOA {
	ttl := uint32(time.Duration(z.TTL) / time.Second)
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: z.Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:  z.NS[0], Mbox: z.Hostmaster, Serial: 1,
		Refresh: 3600, Retry: 600, Expire: 86400,
		// Negative answers are cached for a minute at most, so that a
		// name added to the configuration is not hidden for long.
		Minttl: min(ttl, 60),
	}
}

// servfail turns m into a SERVFAIL answer and returns it.
func servfail(m *dns.Msg) *dns.Msg {
	m.Answer, m.Ns = nil, nil
	m.Rcode = dns.RcodeServerFailure
	return m
}

// addressAnswer fills m (a reply to a query for a's name, of type A, AAAA
// or ANY) with a's address, or makes it SERVFAIL when ensureErr says the
// appliance is not up.
func (s *Server) addressAnswer(a *appliance, m *dns.Msg, ensureErr error) {
	q := m.Question[0]
	if ensureErr != nil {
		s.log.Error("SERVFAIL", "name", a.cfg.Name, "type", dns.TypeToString[q.Qtype], "err", ensureErr)
		servfail(m)
		return
	}
	ip := netip.MustParseAddr(a.cfg.Address)
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: uint32(time.Duration(a.cfg.TTL) / time.Second)}
	if ip.Is4() {
		hdr.Rrtype = dns.TypeA
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: ip.AsSlice()}}
	} else {
		hdr.Rrtype = dns.TypeAAAA
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()}}
	}
}

// pendingQuery is a UDP query waiting for its appliance's boot: the
// writer to answer on, the query and its answer so far.
type pendingQuery struct {
	w dns.ResponseWriter
	r *dns.Msg
	m *dns.Msg
}

// reserve takes a place for a query waiting for a's boot, within the
// bounds; unreserve gives it back.
func (s *Server) reserve(a *appliance) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return s.reserveLocked(a)
}

func (s *Server) reserveLocked(a *appliance) bool {
	if a.waiting >= s.opts.MaxPendingPerName {
		return false
	}
	if s.pending.Add(1) > int64(s.opts.MaxPending) {
		s.pending.Add(-1)
		return false
	}
	a.waiting++
	return true
}

func (s *Server) unreserve(a *appliance) {
	a.mu.Lock()
	a.waiting--
	a.mu.Unlock()
	s.pending.Add(-1)
}

// park keeps a UDP query for a's boot; false when the bounds are reached.
// The first parked query starts the appliance's answerPending, which
// boots it (once) and answers every parked query.
func (s *Server) park(a *appliance, w dns.ResponseWriter, r, m *dns.Msg) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !s.reserveLocked(a) {
		return false
	}
	a.parked = append(a.parked, pendingQuery{w: w, r: r, m: m})
	if !a.answering {
		a.answering = true
		s.wg.Add(1)
		go a.answerPending()
	}
	return true
}

// forward sends a query outside the zones to the configured resolver, or
// refuses it: when there is none, or the client is not in
// forward_clients.
func (s *Server) forward(r *dns.Msg, from net.Addr) *dns.Msg {
	if s.cfg.Forward == "" || !s.cfg.forwardsFor(from) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		return m
	}
	select {
	case s.forwarding <- struct{}{}:
		defer func() { <-s.forwarding }()
	default:
		s.refused.Add(1)
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		return m
	}
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	if _, tcp := from.(*net.TCPAddr); tcp {
		c.Net = "tcp"
	}
	resp, _, err := c.ExchangeContext(s.ctx, r, s.cfg.Forward)
	if err == nil && resp.Truncated && c.Net == "udp" {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(s.ctx, r, s.cfg.Forward)
	}
	if err != nil {
		s.log.Warn("forwarding failed", "name", r.Question[0].Name, "to", s.cfg.Forward, "err", err)
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		return m
	}
	resp.Id = r.Id
	return resp
}

// acceptLoop holds one port of an appliance: connections are accepted by
// the host kernel at once, whatever the appliance's state, and proxied to
// the appliance once it accepts (booting or resuming it if need be).
func (s *Server) acceptLoop(a *appliance, port string, ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept", "appliance", a.cfg.Name, "port", port, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		a.connDelta(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer a.connDelta(-1)
			s.proxy(a, port, c)
		}()
	}
}

func (s *Server) proxy(a *appliance, port string, c net.Conn) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(a.cfg.BootTimeout)+time.Second)
	inst, err := a.ensure(ctx)
	var b net.Conn
	var early []byte // what the appliance sent on a spare before this client came
	if err == nil {
		if b, early = a.takeSpare(inst, port); b == nil {
			var d net.Dialer
			b, err = d.DialContext(ctx, "tcp", inst.Addr(port))
		}
	}
	cancel()
	if err != nil {
		s.log.Error("connection dropped: the appliance is not up", "appliance", a.cfg.Name, "port", port,
			"from", c.RemoteAddr().String(), "err", err)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset: the client sees the failure at once
		}
		return
	}
	defer b.Close()
	if a.cfg.ProxyProtocol != nil && *a.cfg.ProxyProtocol {
		// The first bytes jitsu sends on the connection, a spare's
		// too: the appliance accepts a spare only once its header
		// has come (see "Client addresses" in the package
		// documentation).
		h := proxyproto.HeaderProxyFromAddrs(2, c.RemoteAddr(), c.LocalAddr())
		if _, err := h.WriteTo(b); err != nil {
			s.log.Warn("connection dropped: sending the PROXY header", "appliance", a.cfg.Name, "port", port,
				"from", c.RemoteAddr().String(), "err", err)
			return
		}
	}
	if len(early) > 0 {
		if _, err := c.Write(early); err != nil {
			return
		}
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		// TCPConn to TCPConn: io.Copy splices in the kernel on Linux.
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	select {
	case <-done:
		// One side finished; give the other a moment to drain its
		// half-closed direction, unless the appliance goes away.
		select {
		case <-done:
		case <-inst.Done():
		case <-s.ctx.Done():
		}
	case <-inst.Done():
	case <-s.ctx.Done():
	}
}
