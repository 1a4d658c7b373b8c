package replica

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
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nymote/nymote/store"
)

// Options configure Start. Zero values are the defaults named.
type Options struct {
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Stdout receives the console lines, one per peer whose state changes
	// ("nymote: replica home: in sync"); nil discards them.
	Stdout io.Writer
	// Debounce is how long after a local commit the engine waits for more
	// before it pushes them all: 50 ms.
	Debounce time.Duration
	// Relay is how long a node waits before it passes on to a peer a head
	// that another peer pushed here (commits it did not make): the node
	// that made them pushes them to each of its peers itself, and a relay
	// in the meantime sent most of them twice (the peer's answer to the
	// relay's first request still lacked the push in flight from their
	// maker), to be received and indexed twice. After Relay the head is
	// pushed unless the peer holds it by then (store.SyncOptions.
	// SkipIfHeld), holds the head held back then, or has newer commits
	// from the head's pusher (SkipIfHas, SkipIfNewer: that pusher
	// reaches it, and brings it the rest); relays go out at most once per
	// Relay while commits keep coming, so that a peer that only this node
	// reaches still gets them: 1 s (at most Poll).
	Relay time.Duration
	// Poll is how often each peer is pulled from when nothing else made
	// the engine talk to it: 30 s.
	Poll time.Duration
	// Retry is the first wait after a failed sync, doubled on each failure
	// up to MaxRetry: 500 ms.
	Retry time.Duration
	// MaxRetry bounds the wait between tries of a peer that is down, so
	// that nodes find each other within about that long after a
	// partition heals (a try costs a connection attempt): the smaller of
	// Poll and 8 s.
	MaxRetry time.Duration
	// Timeout bounds one sync with a peer: 60 s.
	Timeout time.Duration
	// Rescan is how often the peer records and tokens are read again (the
	// host tool may change them from another process): 5 s.
	Rescan time.Duration
	// Tunnel, if set, is Signpost's tunnel between the person's nodes
	// (signpost.NewReplicaTunnel): a peer that is a node of the network is
	// reached through it, and the tunnel's authentication of the node's
	// key is its credential, so it needs no token (a token, where there is
	// one, works as well). See "Over the tunnel" in the package
	// documentation.
	Tunnel Tunnel
	// Dial, if set, connects to the peers not reached through the tunnel
	// (an appliance's own network stack); nil: the host's sockets.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Tunnel is what the engine needs of Signpost's tunnel.
type Tunnel interface {
	// DialContext connects to a peer's endpoint through the tunnel: the
	// host of its URL, a tunnel address or NODE.PERSON.nymote.
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
	// PeerAt returns the name of the node whose tunnel address remote is,
	// for a connection to local, this node's own tunnel address: it came
	// through the tunnel, from that node's key (WireGuard admits a packet
	// from a peer only with the source addresses of that peer's key, and
	// the appliance's stack takes a packet for the tunnel address only on
	// the tunnel). ok is false for an address that is no node's of the
	// network, a revoked node's, or a local address not this node's on
	// the tunnel.
	PeerAt(local, remote netip.Addr) (name string, ok bool)
	// Knows reports whether name is a node of the network, not revoked.
	Knows(name string) bool
	// A Tunnel may also have a method Stamp() string that changes when
	// its network does: the engine asks it four times a second and
	// rescans its peers at once on a change (a join, a revocation).
}

// viaTunnel reports whether peer name is reached through the tunnel.
func (e *Engine) viaTunnel(name string) bool {
	return e.opts.Tunnel != nil && e.opts.Tunnel.Knows(name)
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Debounce <= 0 {
		o.Debounce = 50 * time.Millisecond
	}
	if o.Poll <= 0 {
		o.Poll = 30 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = 500 * time.Millisecond
	}
	if o.Relay <= 0 || o.Relay > o.Poll {
		o.Relay = min(time.Second, o.Poll)
	}
	if o.MaxRetry <= 0 || o.MaxRetry > o.Poll {
		o.MaxRetry = min(o.Poll, 8*time.Second)
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.Rescan <= 0 {
		o.Rescan = 5 * time.Second
	}
}

// Status is what a node knows of one peer.
type Status struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// LastContact is the end of the last sync that reached the peer.
	LastContact time.Time `json:"last_contact,omitzero"`
	// Ahead counts the local commits the peer lacks, Behind the peer's
	// commits this node lacks, as of the last contact (capped at
	// countLimit).
	Ahead  int `json:"ahead"`
	Behind int `json:"behind"`
	// InSync is the end of the last sync that found both nodes with the
	// same commits (ahead and behind 0): the time since is the sync lag.
	InSync time.Time `json:"in_sync,omitzero"`
	// LastError is the last sync's error, "" after a good one.
	LastError string    `json:"last_error,omitempty"`
	ErrorAt   time.Time `json:"error_at,omitzero"`
	// Syncs and Failures count the syncs since the engine started.
	Syncs    int `json:"syncs"`
	Failures int `json:"failures"`
}

// Line is the status as one console line.
func (s Status) Line() string {
	switch {
	case s.LastError != "" && s.LastContact.IsZero():
		return fmt.Sprintf("replica %s: unreachable: %s", s.Name, s.LastError)
	case s.LastError != "":
		return fmt.Sprintf("replica %s: unreachable since %s (ahead %d): %s", s.Name, s.ErrorAt.Format(time.RFC3339), s.Ahead, s.LastError)
	case s.LastContact.IsZero():
		return fmt.Sprintf("replica %s: not contacted yet", s.Name)
	case s.Ahead == 0 && s.Behind == 0:
		return fmt.Sprintf("replica %s: in sync", s.Name)
	}
	return fmt.Sprintf("replica %s: ahead %d, behind %d", s.Name, s.Ahead, s.Behind)
}

const countLimit = 100000

// Engine keeps a store in sync with its peers: it pushes local commits to
// every peer shortly after they happen, pulls (and merges) when a push is
// refused because the peer has commits of its own, when a peer that was
// unreachable comes back, and every Poll.
type Engine struct {
	st   *store.Store
	opts Options
	log  *slog.Logger

	rescanMu sync.Mutex // one rescan at a time
	mu       sync.Mutex
	peers    map[string]*peerSync
	closed   bool
	written  time.Time // last status file write

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type peerSync struct {
	e    *Engine
	name string

	mu     sync.Mutex
	url    string
	status Status
	line   string     // last console line printed
	pushed store.Hash // the head last pushed to the peer (it holds it)
	// relayTimer, while set, fires when a relay held back is due
	// (Options.Relay); relayDue says it fired.
	relayTimer *time.Timer
	relayDue   bool
	relayHead  store.Hash // the head held back when relayTimer was set

	kick     chan struct{} // sync now (pull and push)
	dirty    chan struct{} // local commits to push
	incoming chan struct{} // the peer pushed to its branch here: merge it
	cancel   context.CancelFunc
	done     chan struct{}

	// pushesIn counts the peer's pushes to this node in flight, pushSeq
	// every one that began (see sync: a peer that pushes is not pulled).
	pushesIn atomic.Int32
	pushSeq  atomic.Uint64
}

// pushing reports whether the peer has pushed to this node since seq (a
// pushSeq read before), or is pushing now.
func (p *peerSync) pushing(seq uint64) bool {
	return p.pushesIn.Load() > 0 || p.pushSeq.Load() != seq
}

// Start starts replicating st to and from the peers recorded in it. Close
// stops it.
func Start(st *store.Store, opts Options) (*Engine, error) {
	opts.defaults()
	Register(st)
	w, err := st.Watch("", "")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{st: st, opts: opts, log: opts.Logger, peers: map[string]*peerSync{}, ctx: ctx, cancel: cancel}
	e.rescan()
	e.wg.Add(3)
	go e.watch(w)
	go e.rescanLoop()
	go e.credentialsLoop() // credentials.go
	return e, nil
}

// Close stops the engine and waits for syncs in flight to end.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	e.writeStatus(true)
}

func (e *Engine) watch(w *store.Watcher) {
	defer e.wg.Done()
	defer w.Close()
	for {
		ev, err := w.Next(e.ctx)
		if err != nil {
			return
		}
		for _, p := range ev.Paths {
			if strings.HasPrefix(p, PeersPrefix+"/") {
				e.rescan()
				break
			}
		}
		e.mu.Lock()
		for _, p := range e.peers {
			signal(p.dirty)
		}
		e.mu.Unlock()
	}
}

// tunnelCheck is how often the engine asks a Tunnel that has a Stamp
// whether the network changed (a join, a revocation), to start or stop the
// syncs of its nodes without waiting for the next rescan.
const tunnelCheck = 250 * time.Millisecond

func (e *Engine) rescanLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.opts.Rescan)
	defer t.Stop()
	var tc <-chan time.Time
	stamper, _ := e.opts.Tunnel.(interface{ Stamp() string })
	last := ""
	if stamper != nil {
		last = stamper.Stamp()
		ticker := time.NewTicker(tunnelCheck)
		defer ticker.Stop()
		tc = ticker.C
	}
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			e.rescan()
		case <-tc:
			if s := stamper.Stamp(); s != last {
				last = s
				e.rescan()
			}
		}
	}
}

// rescan reads the peer records and starts or stops their syncs. A peer
// without a token on this node, or this node itself, is not synced.
func (e *Engine) rescan() {
	ps, err := Peers(e.st)
	if err != nil {
		e.log.Warn("replica: reading the peers failed", "err", err)
		return
	}
	self, _ := Self(e.st)
	want := map[string]Peer{}
	for _, p := range ps {
		if p.Name != self && (token(e.st, p.Name) != "" || e.viaTunnel(p.Name)) {
			p.URL = localURL(e.st, p)
			want[p.Name] = p
		}
	}
	e.rescanMu.Lock()
	defer e.rescanMu.Unlock()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	var stopped []*peerSync
	for name, p := range e.peers {
		if np, ok := want[name]; !ok || np.URL != p.url {
			p.cancel()
			stopped = append(stopped, p)
			delete(e.peers, name)
		}
	}
	e.mu.Unlock()
	for _, p := range stopped {
		<-p.done
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	for name, p := range want {
		if _, ok := e.peers[name]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(e.ctx)
		ps := &peerSync{e: e, name: name, url: p.URL, status: Status{Name: name, URL: p.URL},
			kick: make(chan struct{}, 1), dirty: make(chan struct{}, 1), incoming: make(chan struct{}, 1),
			cancel: cancel, done: make(chan struct{})}
		w, err := e.st.Watch(FromBranch(name), "")
		if err != nil {
			e.log.Warn("replica: watching a peer's branch failed", "peer", name, "err", err)
			cancel()
			continue
		}
		e.peers[name] = ps
		signal(ps.kick)
		signal(ps.incoming)
		e.wg.Add(2)
		go func() {
			defer e.wg.Done()
			ps.run(ctx)
		}()
		go func() {
			defer e.wg.Done()
			defer w.Close()
			for {
				if _, err := w.Next(ctx); err != nil {
					return
				}
				signal(ps.incoming)
			}
		}()
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Kick makes the engine sync with peer name now (all peers for "").
func (e *Engine) Kick(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for n, p := range e.peers {
		if name == "" || n == name {
			signal(p.kick)
		}
	}
}

// Status returns the status of every peer, by name.
func (e *Engine) Status() []Status {
	e.mu.Lock()
	ps := make([]*peerSync, 0, len(e.peers))
	for _, p := range e.peers {
		ps = append(ps, p)
	}
	e.mu.Unlock()
	out := make([]Status, 0, len(ps))
	for _, p := range ps {
		p.mu.Lock()
		out = append(out, p.status)
		p.mu.Unlock()
	}
	sortStatus(out)
	return out
}

func sortStatus(s []Status) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Name < s[j-1].Name; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// writeStatus writes the status node file for `nymote peer status`, at
// most once a second unless force is set.
func (e *Engine) writeStatus(force bool) {
	e.mu.Lock()
	if !force && time.Since(e.written) < time.Second {
		e.mu.Unlock()
		return
	}
	e.written = time.Now()
	e.mu.Unlock()
	b, err := json.MarshalIndent(struct {
		Written time.Time `json:"written"`
		Peers   []Status  `json:"peers"`
	}{time.Now().UTC(), e.Status()}, "", "  ")
	if err == nil {
		err = e.st.WriteNodeFile(statusFile, b)
	}
	if err != nil && !errors.Is(err, store.ErrClosed) {
		e.log.Warn("replica: writing the status file failed", "err", err)
	}
}

// ReadStatus reads the status that a running engine last wrote for st.
func ReadStatus(st *store.Store) (written time.Time, peers []Status, err error) {
	b, err := st.ReadNodeFile(statusFile)
	if errors.Is(err, store.ErrNotExist) {
		return time.Time{}, nil, nil
	}
	if err != nil {
		return time.Time{}, nil, err
	}
	var f struct {
		Written time.Time `json:"written"`
		Peers   []Status  `json:"peers"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return time.Time{}, nil, fmt.Errorf("replica: %s: %w", statusFile, err)
	}
	return f.Written, f.Peers, nil
}

// retryAfter is the wait after the nth failed sync in a row: Retry,
// doubled after each further failure, up to MaxRetry.
func (o *Options) retryAfter(n int) time.Duration {
	w := o.Retry
	for i := 1; i < n && w < o.MaxRetry; i++ {
		w *= 2
	}
	return min(w, o.MaxRetry)
}

// waitAfter is the wait after the nth failed sync in a row, which failed
// with err: retryAfter(n), or longer if the peer asked for it (a push
// answered 503 with Retry-After, by a peer still copying its store), up
// to Poll.
func (o *Options) waitAfter(err error, n int) time.Duration {
	w := o.retryAfter(n)
	if busy, ok := errors.AsType[*store.BusyError](err); ok {
		w = max(w, min(busy.After, o.Poll))
	}
	return w
}

// run is one peer's loop: wait for local commits (pushed after Debounce),
// a kick or the poll timer (pull, then push), then sync.
func (p *peerSync) run(ctx context.Context) {
	defer close(p.done)
	e := p.e
	wait := e.opts.Poll
	failed := 0 // failed syncs in a row
	for {
		pull := false
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.kick:
			pull = true
		case <-p.incoming:
			t.Stop()
			if err := p.mergeIncoming(ctx); err != nil && ctx.Err() == nil {
				p.fail(err)
			}
			continue
		case <-p.dirty:
			// Batch what follows within Debounce.
			select {
			case <-ctx.Done():
			case <-time.After(e.opts.Debounce):
			}
			select {
			case <-p.dirty:
			default:
			}
		case <-t.C:
			pull = true
		}
		t.Stop()
		if ctx.Err() != nil {
			return
		}
		err := p.sync(ctx, pull)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		if err != nil {
			p.status.Failures++
			p.status.LastError = err.Error()
			p.status.ErrorAt = time.Now().UTC()
			failed++
			wait = e.opts.waitAfter(err, failed)
		} else {
			p.status.Syncs++
			p.status.LastError = ""
			p.status.ErrorAt = time.Time{}
			wait, failed = e.opts.Poll, 0
		}
		line := p.status.Line()
		changed := line != p.line
		p.line = line
		p.mu.Unlock()
		if changed {
			fmt.Fprintf(e.opts.Stdout, "nymote: %s\n", line)
			if err != nil {
				e.log.Warn("replica: sync failed", "peer", p.name, "err", err)
			} else {
				e.log.Info("replica: synced", "peer", p.name, "status", line)
			}
		}
		e.writeStatus(false)
	}
}

func (p *peerSync) remote() store.Remote {
	self, _ := Self(p.e.st)
	return remoteFor(p.e.st, p.name, p.url, self, p.e.opts)
}

// remoteFor is peer name's endpoint at url, as this node (self) reaches
// it: with the token and CA kept for it, dialed with opts.Dial, or through
// the tunnel where name is a node of the network.
func remoteFor(st *store.Store, name, url, self string, opts Options) store.Remote {
	if self == "" {
		self = "replica"
	}
	ca, _ := st.ReadNodeFile(caFile(name))
	r := store.Remote{URL: strings.TrimSuffix(url, "/") + "/git", Username: self,
		Password: token(st, name), Name: "peer-" + name, CABundle: ca, Dial: opts.Dial}
	if opts.Tunnel != nil && opts.Tunnel.Knows(name) {
		r.Dial = opts.Tunnel.DialContext
	}
	return r
}

// FromBranch is the branch of a node's store that peer name pushes its
// main branch to: every node writes only its own main and its own branch
// on its peers, so a push never races a peer's writes (it always
// fast-forwards), and each node merges what its peers push locally.
func FromBranch(name string) string { return "replica/" + name }

// mergeIncoming merges the branch the peer pushes to into main, with a
// deterministic merge commit (see the package doc).
func (p *peerSync) mergeIncoming(ctx context.Context) error {
	e := p.e
	h, err := e.st.BranchHead(FromBranch(p.name))
	if err != nil || h.IsZero() {
		return nil // nothing pushed yet
	}
	if _, err := e.st.Merge(ctx, FromBranch(p.name), store.CommitOptions{Deterministic: true}); err != nil {
		return err
	}
	p.contact(h)
	return nil
}

func (p *peerSync) fail(err error) {
	p.mu.Lock()
	p.status.Failures++
	p.status.LastError = err.Error()
	p.status.ErrorAt = time.Now().UTC()
	p.mu.Unlock()
	p.e.log.Warn("replica: merge failed", "peer", p.name, "err", err)
}

// sync pushes the local branch to the peer's branch for this node; with
// pull set it then fetches the peer's main and merges it (the periodic
// fallback, and the first contact). A conflict that the merge functions
// cannot resolve fails the sync and changes nothing.
//
// The push goes first, and the pull is skipped when the peer pushed to this
// node meanwhile (or is pushing): a peer that pushes brings its commits
// itself, and pulling them too made every commit cross each link twice
// after a partition healed, when both sides sync at once. The pull is for
// a peer that cannot reach this node (or has not yet); the merge of what
// the peer pushes moves main, which is pushed back in turn.
func (p *peerSync) sync(ctx context.Context, pull bool) error {
	err := p.syncOnce(ctx, pull)
	if err != nil && strings.Contains(err.Error(), "unrelated history") {
		// Refused by the peer (push) or here (pull): say what to do.
		err = fmt.Errorf("%w (this node and %s were begun apart: make one of them anew as a clone of the other, a node whose store is empty or holds only peer records, booted with nymote.peer=%s=URL or --peer %s=URL)",
			err, p.name, p.name, p.name)
	}
	return err
}

func (p *peerSync) syncOnce(ctx context.Context, pull bool) error {
	e := p.e
	ctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	rem := p.remote()
	seq := p.pushSeq.Load()
	// Branch heads by BranchHead, not Resolve: Resolve takes a branch
	// that does not exist (the peer's, before it first pushes here) to
	// go-git's storage, which first waits until every pending commit is
	// written into the repository's files; under a steady stream of
	// commits the sync waited there for the stream to pause, and forced
	// a pack per commit or two meanwhile.
	ours, _ := e.st.BranchHead("")
	in, _ := e.st.BranchHead(FromBranch(p.name))
	p.mu.Lock()
	pushed := p.pushed
	p.mu.Unlock()
	// A head that the peer pushed here (main moved to it by a
	// fast-forward) or that it took from us already is not pushed again:
	// such echoes were a third of a node's sync work while a client
	// wrote to one node, and they took the writer lock of the node that
	// the client was writing to. The poll pushes what the peer took
	// before again (a peer restored from a backup lacks it).
	//
	// Nor is a head that the peer's later push here reaches: the peer
	// pushed again while this node merged its previous push, and the
	// push of that merged head carried the peer's own commits back to
	// it, after every batch of a client's writes on the peer (as much
	// sync work on the writing node as on each of its peers). What the
	// peer holds otherwise (a head it took from a third node) its
	// advertised branches say: store.SyncOptions.SkipIfHeld.
	push := ours.IsZero() || (ours != in && (pull || (ours != pushed && !e.st.Reaches(in, ours))))
	var from string         // the peer that pushed here the head relayed
	var heldBack store.Hash // the head held back a Relay ago
	if due, held := p.takeRelayDue(); push && !pull {
		from = e.heldByOther(p, ours)
		if !due && from != "" {
			p.relayLater(e.opts.Relay, ours)
			push = false
		}
		if due {
			heldBack = held
		}
	}
	if push {
		opts := store.SyncOptions{RemoteBranch: FromBranch(rem.Username), SkipIfAt: store.DefaultBranch, SkipIfHeld: true}
		if !pull {
			// What the peer pushed here it holds (the poll does not
			// count on it: a peer restored from a backup lacks it).
			opts.Haves = []store.Hash{in}
		}
		if from != "" {
			// A relay: not to a peer that the head's pusher reached
			// after us, nor to one that got the head held back
			// meanwhile (store.SyncOptions.SkipIfNewer, SkipIfHas):
			// its maker reaches it, and brings it the rest too.
			opts.SkipIfNewer = FromBranch(from)
			if !heldBack.IsZero() {
				opts.SkipIfHas = []store.Hash{heldBack}
			}
		}
		err := e.st.Push(ctx, rem, opts)
		if err != nil && !errors.Is(err, store.ErrNotExist) {
			return err
		}
		if err == nil {
			p.mu.Lock()
			p.pushed = ours // (at least: a later head may have gone)
			p.mu.Unlock()
		}
	}
	var theirs store.Hash
	if pull && !p.pushing(seq) {
		opts := store.SyncOptions{Validate: true, SharedHistory: true, Commit: store.CommitOptions{Deterministic: true}}
		if _, err := e.st.Pull(ctx, rem, opts); err != nil {
			return err
		}
		theirs, _ = e.st.Resolve("refs/remotes/" + rem.Name + "/" + store.DefaultBranch)
	}
	if in, _ := e.st.BranchHead(FromBranch(p.name)); !in.IsZero() {
		theirs = in
	}
	p.contact(theirs)
	return nil
}

// heldByOther names a peer other than p that pushed here a head that
// reaches h ("" if none): h is that peer's, relayed (see Options.Relay).
func (e *Engine) heldByOther(p *peerSync, h store.Hash) string {
	e.mu.Lock()
	var others []string
	for name := range e.peers {
		if name != p.name {
			others = append(others, name)
		}
	}
	e.mu.Unlock()
	sort.Strings(others)
	for _, name := range others {
		if in, _ := e.st.BranchHead(FromBranch(name)); e.st.Reaches(in, h) {
			return name
		}
	}
	return ""
}

// relayLater has the peer's loop sync again after d, with the relay held
// back now then due; a relay held back already is not put off further.
func (p *peerSync) relayLater(d time.Duration, head store.Hash) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.relayTimer != nil {
		return
	}
	p.relayHead = head
	p.relayTimer = time.AfterFunc(d, func() {
		p.mu.Lock()
		p.relayTimer, p.relayDue = nil, true
		p.mu.Unlock()
		signal(p.dirty)
	})
}

// takeRelayDue reports whether a relay held back is due, and the head held
// back then, and clears it.
func (p *peerSync) takeRelayDue() (bool, store.Hash) {
	p.mu.Lock()
	defer p.mu.Unlock()
	due, head := p.relayDue, p.relayHead
	p.relayDue = false
	if due {
		p.relayHead = store.Hash{}
	}
	return due, head
}

// contact records a good sync and counts ahead and behind against the
// peer's head as last seen (theirs), and what the peer last took from
// this node (p.pushed).
func (p *peerSync) contact(theirs store.Hash) {
	ours, _ := p.e.st.BranchHead("")
	p.mu.Lock()
	known := []store.Hash{theirs}
	if !p.pushed.IsZero() {
		known = append(known, p.pushed)
	}
	p.mu.Unlock()
	var ahead, behind int
	if !ours.IsZero() && !theirs.IsZero() && ours != theirs {
		ahead, _ = p.e.st.CountNew(ours, known, countLimit)
		behind, _ = p.e.st.CountNew(theirs, []store.Hash{ours}, countLimit)
	}
	p.mu.Lock()
	p.status.LastContact = time.Now().UTC()
	p.status.Ahead, p.status.Behind = ahead, behind
	if ahead == 0 && behind == 0 {
		p.status.InSync = p.status.LastContact
	}
	p.mu.Unlock()
}

// tunnelPeer reports whether r came through the tunnel from the node
// called name, a peer of this store: the tunnel has authenticated its key.
func (e *Engine) tunnelPeer(r *http.Request, name string) bool {
	if e.opts.Tunnel == nil || ValidateName(name) != nil {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	lp, err := netip.ParseAddrPort(la.String())
	if err != nil {
		return false
	}
	from, ok := e.opts.Tunnel.PeerAt(lp.Addr().Unmap(), ap.Addr().Unmap())
	if !ok || from != name {
		return false
	}
	ps, err := Peers(e.st)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(ps, func(p Peer) bool { return p.Name == name })
}

// Handler serves this node's replication endpoint: git smart HTTP (fetch
// and push) under .../git for peers that present their name and the token
// shared with this node (HTTP basic authentication), and nothing else.
// Mount it under a prefix, such as /replica/. A peer that was unreachable
// and calls again is synced with at once.
func (e *Engine) Handler() http.Handler {
	gh := e.st.GitHandler(e.log, store.WithGitAuthenticator(func(r *http.Request, name, password string) (store.User, error) {
		if !checkToken(e.st, name, password) && !e.tunnelPeer(r, name) {
			e.log.Warn("replica: refused a request with a wrong peer name or token", "peer", name, "remote", r.RemoteAddr)
			return store.User{}, fmt.Errorf("replica: peer %q: %w", name, store.ErrAuthFailed)
		}
		e.mu.Lock()
		p := e.peers[name]
		e.mu.Unlock()
		if p != nil {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
				p.pushSeq.Add(1)
				p.pushesIn.Add(1)
				context.AfterFunc(r.Context(), func() { p.pushesIn.Add(-1) })
			}
			p.mu.Lock()
			down := p.status.LastError != ""
			p.mu.Unlock()
			if down {
				signal(p.kick)
			}
		}
		return store.User{Name: "peer " + name, Git: store.GitWrite}, nil
	}), store.WithGitPushFilter(func(u store.User, branch string) error {
		name := strings.TrimPrefix(u.Name, "peer ")
		if branch != FromBranch(name) {
			e.log.Warn("replica: refused a peer's push to a branch not its own", "peer", name, "branch", branch)
			return fmt.Errorf("peer %s may push to %s only", name, FromBranch(name))
		}
		return nil
	}), store.WithGitSharedHistory())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, credentialsPath) {
			e.serveCredentials(w, r) // credentials.go
			return
		}
		if !strings.Contains(r.URL.Path, "/git/") {
			http.NotFound(w, r)
			return
		}
		gh.ServeHTTP(w, r)
	})
}
