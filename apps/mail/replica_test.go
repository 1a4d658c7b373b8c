package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nymote/nymote/apps/calendar/caldav"
	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/apps/mail/mailstore/mailfill"
	"github.com/nymote/nymote/apps/mail/mailsvc"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/store"
)

// The partition test, in the spirit of Jepsen: three replicas (each a mail
// service and a CardDAV and a CalDAV service over one store, serving on
// loopback sockets, replicating through their real endpoints), every link
// between two of them through a FaultProxy that the test cuts and heals.
// Clients write to every node at once during random partitions (IMAP
// APPEND, STORE, EXPUNGE, MOVE; CardDAV and CalDAV PUT and DELETE). After
// the final heal every node must reach the same head, every acknowledged
// write must be there (but those deliberately deleted), the IMAP invariants
// must hold in each client's view, and git fsck --strict must pass.
// Seeded: seeds 1 and 2 run by default (about 10 to 20 s of CPU each);
// NYMOTE_REPLICA_PARTITION=1 runs seeds 1 to 3, NYMOTE_REPLICA_SEED=N seed
// N only. NYMOTE_REPLICA_KEEP=DIR copies a failed run's nodes' data
// folders to DIR/seedN/NODE. NYMOTE_REPLICA_DUMP=FILE writes every goroutine's stack to FILE
// if the replicas do not converge.

type rnode struct {
	name    string
	dir     string
	st      *store.Store
	addrs   map[string]string // imap, git, contacts, calendar
	ls      mailsvc.Listeners
	davLns  map[string]net.Listener
	cancel  context.CancelFunc
	done    chan struct{}
	imapC   *imapclient.Client
	uidVals map[string]uint32              // mailbox -> UIDVALIDITY first seen
	seen    map[string]map[imap.UID]string // mailbox -> UID -> Message-ID
}

type davKind struct {
	name string
	kind dav.Kind
	ext  string
	body func(id string) string
}

var davKinds = []davKind{
	{"contacts", carddav.New(dav.DefaultMaxObjectSize), ".vcf", func(id string) string {
		return "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:" + id + "\r\nFN:" + id + "\r\nN:" + id + ";;;;\r\nEND:VCARD\r\n"
	}},
	{"calendar", caldav.New(dav.DefaultMaxObjectSize), ".ics", func(id string) string {
		return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//nymote//test//EN\r\nBEGIN:VEVENT\r\nUID:" + id +
			"\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\nSUMMARY:" + id + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	}},
}

func registerDAV(st *store.Store) {
	for _, k := range davKinds {
		if m, ok := k.kind.(interface{ MergeFunc() store.MergeFunc }); ok {
			st.SetMergeFunc(k.kind.Name()+"/", m.MergeFunc())
		}
		st.SetValidateFunc(k.kind.Name()+"/", dav.ValidateFunc(k.kind, dav.DefaultMaxObjectSize))
	}
}

// TestReplicaPartition runs the partition test (above) for several seeds
// (even ones with INBOX in the layout of earlier versions: setupReplicas).
func TestReplicaPartition(t *testing.T) {
	seeds := []uint64{1, 2}
	if os.Getenv("NYMOTE_REPLICA_PARTITION") != "" {
		seeds = []uint64{1, 2, 3}
	}
	if s := os.Getenv("NYMOTE_REPLICA_SEED"); s != "" {
		var n uint64
		fmt.Sscan(s, &n)
		seeds = []uint64{n}
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed (apt-get install -y git); skipping")
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { partitionRun(t, seed) })
	}
}

// setupReplicas makes n replicas of one store holding user alice (her
// mailboxes and DAV collections made on the first, before it is cloned,
// as a node is set up from another), each peer of the others through
// per-link proxies (links[i][j] carries i's requests to j).
func setupReplicas(t *testing.T, n int, seed uint64, ropts replica.Options) ([]*rnode, [][]*replica.FaultProxy) {
	t.Helper()
	ctx := context.Background()
	nodes := make([]*rnode, n)
	for i := range nodes {
		nd := &rnode{name: fmt.Sprintf("n%d", i), dir: t.TempDir(), uidVals: map[string]uint32{}, seen: map[string]map[imap.UID]string{}}
		var ls mailsvc.Listeners
		ls, nd.addrs = listen(t, nil)
		nd.ls = ls
		nd.davLns = map[string]net.Listener{}
		for _, k := range davKinds {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			nd.davLns[k.name] = ln
			nd.addrs[k.name] = ln.Addr().String()
		}
		nodes[i] = nd
	}
	// The first node: alice, her mailboxes, her DAV collections, and the
	// peer records (which replicate).
	st0, err := store.InitData(nodes[0].dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st0.AddUser(ctx, "alice", testPassword, store.GitNone); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		if _, err := replica.AddPeer(ctx, st0, nd.name, "http://"+nd.addrs["git"]+"/replica", replica.AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	registerDAV(st0)
	for _, k := range davKinds {
		h := dav.NewHandler(dav.Options{Store: st0, Kind: k.kind})
		req, _ := http.NewRequest("PUT", "/alice/default/init"+k.ext, strings.NewReader(k.body("init-"+k.name)))
		req.SetBasicAuth("alice", testPassword)
		rec := &respRecorder{h: http.Header{}}
		h.ServeHTTP(rec, req)
		if rec.code != http.StatusCreated {
			t.Fatalf("%s: first PUT: %d %s", k.name, rec.code, rec.body.String())
		}
	}
	ms, err := mailstore.Open(st0, mailstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := ms.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := u.Mailbox("INBOX")
	ms.Close()
	if seed%2 == 0 {
		// Even seeds: INBOX as an earlier version made it (messages in
		// two levels of 256 folders, mailstore.Layout256), which nodes
		// with peers keep; its messages MOVE to Archive (Layout16), so
		// that merges, moves, flags and expunges meet both layouts.
		if err := mailfill.ToLayout256(ctx, st0, "alice", inbox.ID); err != nil {
			t.Fatal(err)
		}
	}
	// The hashes a new node gets from its peer at first sync (as the
	// replica engine's credentials exchange gives them).
	creds, err := st0.PeerCredentials()
	if err != nil {
		t.Fatal(err)
	}
	// Closed before it is cloned: a second Store on a repository that
	// this process has open would empty its commit log under it.
	src := st0.Path()
	st0.Close()
	for _, nd := range nodes[1:] {
		st, err := store.Clone(ctx, store.Remote{URL: src}, filepath.Join(nd.dir, store.RepoDir), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.AcceptPeerCredentials(ctx, creds); err != nil {
			t.Fatal(err)
		}
		nd.st = st
	}
	if st0, err = store.OpenData(nodes[0].dir, store.Options{}); err != nil {
		t.Fatal(err)
	}
	nodes[0].st = st0
	for _, nd := range nodes {
		t.Cleanup(func() { nd.st.Close() })
		if err := replica.SetSelf(nd.st, nd.name); err != nil {
			t.Fatal(err)
		}
		registerDAV(nd.st)
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
				p, err := replica.NewFaultProxy(b.addrs["git"], seed*100+uint64(d[0]*10+d[1]))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(p.Close)
				links[d[0]][d[1]] = p
				if err := replica.SetToken(a.st, b.name, tok); err != nil {
					t.Fatal(err)
				}
				if err := replica.SetLocalURL(a.st, b.name, "http://"+p.Addr()+"/replica"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, nd := range nodes {
		startReplica(t, nd, ropts)
	}
	return nodes, links
}

type respRecorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *respRecorder) Header() http.Header         { return r.h }
func (r *respRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *respRecorder) WriteHeader(c int)           { r.code = c }

func startReplica(t *testing.T, nd *rnode, ropts replica.Options) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel, nd.done = cancel, make(chan struct{})
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", nd.name)
	var wg sync.WaitGroup
	wg.Add(1 + len(davKinds))
	go func() {
		defer wg.Done()
		err := mailsvc.Serve(ctx, mailsvc.Config{Store: nd.st, Domains: []string{"example.org"}, InsecureAuth: true,
			Logger: log, Replica: ropts}, nd.ls)
		if err != nil {
			t.Errorf("%s: mail: %v", nd.name, err)
		}
	}()
	for _, k := range davKinds {
		go func() {
			defer wg.Done()
			err := dav.Serve(ctx, dav.Config{Options: dav.Options{Store: nd.st, Kind: k.kind, Logger: log}, InsecureHTTP: true},
				[]dav.Listener{{Proto: "http", Listener: nd.davLns[k.name]}})
			if err != nil {
				t.Errorf("%s: %s: %v", nd.name, k.name, err)
			}
		}()
	}
	go func() { wg.Wait(); close(nd.done) }()
	t.Cleanup(func() {
		if nd.imapC != nil {
			nd.imapC.Close()
		}
		cancel()
		select {
		case <-nd.done:
		case <-time.After(hung):
			t.Errorf("%s did not stop", nd.name)
		}
	})
	nd.imapC = dialIMAP(t, nd.addrs["imap"])
}

func dialIMAP(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("alice", testPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// model is what the clients were told: the acknowledged writes.
type model struct {
	mu      sync.Mutex
	mail    map[string]*mailFact // Message-ID -> fact
	objects map[string]bool      // kind/name -> exists
}

type mailFact struct {
	owner   int
	box     string // INBOX or Archive
	deleted bool
	flags   map[imap.Flag]bool // flags acknowledged (they follow a MOVE)
	moved   bool
}

func partitionRun(t *testing.T, seed uint64) {
	const n = 3
	ropts := replica.Options{Debounce: 20 * time.Millisecond, Poll: time.Second, Retry: 100 * time.Millisecond, Rescan: time.Hour}
	nodes, links := setupReplicas(t, n, seed, ropts)
	rnd := rand.New(rand.NewPCG(seed, seed*7919))
	m := &model{mail: map[string]*mailFact{}, objects: map[string]bool{}}
	for _, k := range davKinds {
		m.objects[k.name+"/init"+k.ext] = true
	}
	const phases, opsPerPhase = 4, 12
	for phase := 0; phase < phases; phase++ {
		// A random partition: each node in group 0 or 1 (all together
		// sometimes); links across groups cut, delays on some others.
		groups := make([]int, n)
		if rnd.IntN(4) != 0 {
			for i := range groups {
				groups[i] = rnd.IntN(2)
			}
		}
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				if i != j {
					links[i][j].SetCut(groups[i] != groups[j])
					links[i][j].SetDelay(time.Duration(rnd.IntN(3)) * time.Millisecond)
				}
			}
		}
		t.Logf("phase %d: groups %v", phase, groups)
		// Each node's client gets its own random stream, drawn now so
		// that the run is repeatable whatever the interleaving.
		var wg sync.WaitGroup
		for i, nd := range nodes {
			r := rand.New(rand.NewPCG(rnd.Uint64(), rnd.Uint64()))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for op := 0; op < opsPerPhase; op++ {
					clientOp(t, nd, i, r, m, fmt.Sprintf("s%d-p%d-n%d-o%d", seed, phase, i, op))
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	// Heal.
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i != j {
				links[i][j].SetCut(false)
				links[i][j].SetDelay(0)
			}
		}
	}
	var views []map[string]string
	why := ""
	deadline := time.Now().Add(hung)
	for {
		h0, _ := nodes[0].st.Resolve("")
		same := true
		why = ""
		for _, nd := range nodes[1:] {
			if h, _ := nd.st.Resolve(""); h != h0 {
				same = false
				why = fmt.Sprintf("heads differ: %s %s; status %v", h0, h, peerLines(nd))
			}
		}
		if same {
			views = views[:0]
			for _, nd := range nodes {
				views = append(views, mailView(t, nd))
			}
			for i, v := range views[1:] {
				if fmt.Sprint(byBox(v)) != fmt.Sprint(byBox(views[0])) {
					same = false
					why = fmt.Sprintf("views differ: n0 %v, n%d %v", byBox(views[0]), i+1, byBox(v))
				}
			}
		}
		if same {
			break
		}
		if time.Now().After(deadline) {
			if p := os.Getenv("NYMOTE_REPLICA_DUMP"); p != "" {
				buf := make([]byte, 64<<20)
				os.WriteFile(p, buf[:runtime.Stack(buf, true)], 0o644)
			}
			t.Fatalf("the replicas did not converge within %v: %s", hung, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// No acknowledged write lost; deletions stay deleted; flags merged.
	for i, nd := range nodes {
		v := views[i]
		byID := map[string][]string{}
		for k, id := range v {
			byID[id] = append(byID[id], k)
		}
		for id, f := range m.mail {
			locs := byID[id]
			switch {
			case f.deleted:
				if len(locs) != 0 {
					t.Errorf("%s: expunged message %s is still there: %v", nd.name, id, locs)
				}
			case len(locs) != 1:
				t.Errorf("%s: acknowledged message %s: found %d times (%v), want once in %s", nd.name, id, len(locs), locs, f.box)
			case !strings.HasPrefix(locs[0], f.box+" "):
				t.Errorf("%s: message %s is at %s, want in %s", nd.name, id, locs[0], f.box)
			}
		}
		for k, want := range m.objects {
			kind, name, _ := strings.Cut(k, "/")
			code := davGet(t, nd, kind, name)
			if want && code != 200 || !want && code != 404 {
				t.Errorf("%s: GET %s: %d, want it %s", nd.name, k, code, map[bool]string{true: "there", false: "deleted"}[want])
			}
		}
		// Flags acknowledged on a message, wherever it was moved (a MOVE
		// keeps flags added elsewhere meanwhile).
		flags := mailFlags(t, nd)
		for id, f := range m.mail {
			if f.deleted {
				continue
			}
			for fl := range f.flags {
				if !flags[id][fl] {
					t.Errorf("%s: message %s lacks flag %s (has %v)", nd.name, id, fl, flags[id])
				}
			}
		}
		out, err := exec.Command("git", "-C", nd.st.Path(), "fsck", "--strict", "--no-progress").CombinedOutput()
		if err != nil {
			t.Errorf("%s: git fsck --strict: %v\n%s", nd.name, err, out)
		}
		// Where the messages are: INBOX keeps its layout on nodes with
		// peers (even seeds: Layout256), Archive is in Layout16.
		sn, err := nd.st.Snapshot("")
		if err != nil {
			t.Fatal(err)
		}
		for _, box := range []string{"INBOX", "Archive"} {
			b, err := mailstore.FindStoredMailbox(sn, "alice", box)
			if err != nil {
				t.Fatal(err)
			}
			n, err := mailfill.ItemsByLayout(nd.st, "alice", b.ID)
			if err != nil {
				t.Fatal(err)
			}
			other := mailstore.Layout256
			if box == "INBOX" && seed%2 == 0 {
				other = mailstore.Layout16
			}
			if n[other] != 0 {
				t.Errorf("%s: %s: %d items in layout %d (%v)", nd.name, box, n[other], other, n)
			}
			t.Logf("%s: %s: items by layout %v", nd.name, box, n)
		}
	}
	for _, nd := range nodes {
		t.Logf("%s: %d messages; replica status %v", nd.name, len(views[0]), peerLines(nd))
	}
	if keep := os.Getenv("NYMOTE_REPLICA_KEEP"); keep != "" && t.Failed() {
		for _, nd := range nodes {
			dst := filepath.Join(keep, fmt.Sprintf("seed%d", seed), nd.name)
			os.MkdirAll(filepath.Dir(dst), 0o755)
			if out, err := exec.Command("cp", "-a", nd.dir, dst).CombinedOutput(); err != nil {
				t.Logf("keeping %s: %v %s", nd.dir, err, out)
			} else {
				t.Logf("%s's data kept in %s", nd.name, dst)
			}
		}
	}
}

func peerLines(nd *rnode) []string {
	_, sts, _ := replica.ReadStatus(nd.st)
	var out []string
	for _, s := range sts {
		out = append(out, s.Line())
	}
	return out
}

// clientOp does one random client operation on node nd and records what
// was acknowledged.
func clientOp(t *testing.T, nd *rnode, idx int, r *rand.Rand, m *model, id string) {
	c := nd.imapC
	switch x := r.IntN(10); {
	case x < 4: // APPEND
		msgID := "<" + id + "@replica.test>"
		body := "From: a@example.org\r\nTo: alice@example.org\r\nSubject: " + id + "\r\nMessage-ID: " + msgID + "\r\n\r\n" + id + "\r\n"
		cmd := c.Append("INBOX", int64(len(body)), nil)
		cmd.Write([]byte(body))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Errorf("%s: APPEND: %v", nd.name, err)
			return
		}
		m.mu.Lock()
		m.mail[msgID] = &mailFact{owner: idx, box: "INBOX", flags: map[imap.Flag]bool{}}
		m.mu.Unlock()
	case x < 8: // STORE, EXPUNGE or MOVE of one of this client's messages, or STORE on another's
		m.mu.Lock()
		var own, others []string
		for k, f := range m.mail {
			if f.deleted || f.box != "INBOX" {
				continue
			}
			if f.owner == idx {
				own = append(own, k)
			} else {
				others = append(others, k)
			}
		}
		m.mu.Unlock()
		slices.Sort(own)
		slices.Sort(others)
		target, mine := "", true
		if len(others) > 0 && (len(own) == 0 || r.IntN(3) == 0) {
			target, mine = others[r.IntN(len(others))], false
		} else if len(own) > 0 {
			target = own[r.IntN(len(own))]
		}
		if target == "" {
			return
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Errorf("%s: SELECT: %v", nd.name, err)
			return
		}
		uid := findUID(t, c, target)
		if uid == 0 {
			return // not here yet (another node's, not replicated yet)
		}
		op := r.IntN(3)
		if !mine {
			op = 0
		}
		switch op {
		case 0:
			flag := imap.Flag(fmt.Sprintf("$n%d", idx))
			if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{flag}}, nil).Close(); err != nil {
				t.Errorf("%s: STORE: %v", nd.name, err)
				return
			}
			if now := findUID(t, c, target); now != uid {
				t.Errorf("%s: %s had UID %d, now %d", nd.name, target, uid, now)
				return
			}
			m.mu.Lock()
			m.mail[target].flags[flag] = true
			m.mu.Unlock()
		case 1:
			if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				t.Errorf("%s: STORE \\Deleted: %v", nd.name, err)
				return
			}
			if err := c.UIDExpunge(imap.UIDSetNum(uid)).Close(); err != nil {
				t.Errorf("%s: UID EXPUNGE: %v", nd.name, err)
				return
			}
			if now := findUID(t, c, target); now != 0 {
				t.Errorf("%s: %s still there (UID %d, was %d) after its expunge", nd.name, target, now, uid)
				return
			}
			m.mu.Lock()
			m.mail[target].deleted = true
			m.mu.Unlock()
		case 2:
			if _, err := c.Move(imap.UIDSetNum(uid), "Archive").Wait(); err != nil {
				t.Errorf("%s: MOVE: %v", nd.name, err)
				return
			}
			if now := findUID(t, c, target); now != 0 {
				t.Errorf("%s: %s still in INBOX (UID %d, was %d) after its MOVE", nd.name, target, now, uid)
				return
			}
			m.mu.Lock()
			m.mail[target].box, m.mail[target].moved = "Archive", true
			m.mu.Unlock()
		}
	default: // DAV PUT or DELETE
		k := davKinds[r.IntN(len(davKinds))]
		m.mu.Lock()
		var mineObjs []string
		for key, ok := range m.objects {
			if ok && strings.HasPrefix(key, k.name+"/"+nd.name+"-") {
				mineObjs = append(mineObjs, key)
			}
		}
		m.mu.Unlock()
		slices.Sort(mineObjs)
		if len(mineObjs) > 0 && r.IntN(3) == 0 {
			key := mineObjs[r.IntN(len(mineObjs))]
			_, name, _ := strings.Cut(key, "/")
			if code := davDo(t, nd, k.name, "DELETE", name, ""); code != http.StatusNoContent && code != http.StatusOK {
				t.Errorf("%s: DELETE %s: %d", nd.name, key, code)
				return
			}
			m.mu.Lock()
			m.objects[key] = false
			m.mu.Unlock()
			return
		}
		name := nd.name + "-" + id + k.ext
		if code := davDo(t, nd, k.name, "PUT", name, k.body(id)); code != http.StatusCreated {
			t.Errorf("%s: PUT %s: %d", nd.name, name, code)
			return
		}
		m.mu.Lock()
		m.objects[k.name+"/"+name] = true
		m.mu.Unlock()
	}
}

// findUID returns the UID of the message with msgID in the selected
// mailbox, 0 if there is none.
func findUID(t *testing.T, c *imapclient.Client, msgID string) imap.UID {
	data, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: msgID}}}, nil).Wait()
	if err != nil {
		t.Errorf("UID SEARCH: %v", err)
		return 0
	}
	uids := data.AllUIDs()
	if len(uids) == 0 {
		return 0
	}
	return uids[0]
}

// byBox is a mail view's Message-IDs by mailbox, sorted: UIDs are each
// node's own, what must be alike on every node is which messages each
// mailbox holds.
func byBox(v map[string]string) map[string][]string {
	out := map[string][]string{}
	for k, id := range v {
		box, _, _ := strings.Cut(k, " ")
		out[box] = append(out[box], id)
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// mailView is "MAILBOX UID" -> Message-ID of INBOX and Archive as node
// nd's client sees them, checking the IMAP invariants against what the
// node's clients saw before: UIDVALIDITY never changes, a UID never names
// two messages nor changes for a message, and a message seen for the first
// time has a UID above every UID seen before in the mailbox (UIDs ascend
// in arrival order on a node).
func mailView(t *testing.T, nd *rnode) map[string]string {
	t.Helper()
	c := nd.imapC
	v := map[string]string{}
	for _, box := range []string{"INBOX", "Archive"} {
		sel, err := c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("%s: SELECT %s: %v", nd.name, box, err)
		}
		if uv, ok := nd.uidVals[box]; ok && uv != sel.UIDValidity {
			t.Errorf("%s: %s: UIDVALIDITY changed from %d to %d", nd.name, box, uv, sel.UIDValidity)
		}
		nd.uidVals[box] = sel.UIDValidity
		if sel.NumMessages == 0 {
			continue
		}
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
		if err != nil {
			t.Fatalf("%s: FETCH %s: %v", nd.name, box, err)
		}
		if nd.seen[box] == nil {
			nd.seen[box] = map[imap.UID]string{}
		}
		var top imap.UID
		byID := map[string]imap.UID{}
		for uid, id := range nd.seen[box] {
			top = max(top, uid)
			byID[id] = uid
		}
		for _, msg := range msgs {
			id := ""
			if msg.Envelope != nil {
				id = "<" + msg.Envelope.MessageID + ">"
			}
			if old, ok := nd.seen[box][msg.UID]; ok && old != id {
				t.Errorf("%s: %s UID %d named %s, now %s", nd.name, box, msg.UID, old, id)
			}
			if old, ok := byID[id]; ok && old != msg.UID {
				t.Errorf("%s: %s: %s had UID %d, now %d", nd.name, box, id, old, msg.UID)
			}
			if _, ok := byID[id]; !ok && msg.UID <= top {
				t.Errorf("%s: %s: %s is new to this client with UID %d, not above %d seen before", nd.name, box, id, msg.UID, top)
			}
			nd.seen[box][msg.UID] = id
			key := fmt.Sprintf("%s %d", box, msg.UID)
			if _, dup := v[key]; dup {
				t.Errorf("%s: %s: UID %d twice", nd.name, box, msg.UID)
			}
			v[key] = id
		}
	}
	return v
}

// mailFlags is Message-ID -> flags in INBOX and Archive.
func mailFlags(t *testing.T, nd *rnode) map[string]map[imap.Flag]bool {
	c := nd.imapC
	out := map[string]map[imap.Flag]bool{}
	for _, box := range []string{"INBOX", "Archive"} {
		sel, err := c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sel.NumMessages == 0 {
			continue
		}
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
		if err != nil {
			t.Fatalf("%s: FETCH: %v", nd.name, err)
		}
		for _, msg := range msgs {
			fs := map[imap.Flag]bool{}
			for _, f := range msg.Flags {
				fs[f] = true
			}
			out["<"+msg.Envelope.MessageID+">"] = fs
		}
	}
	return out
}

var davClient = &http.Client{Timeout: time.Minute}

func davDo(t *testing.T, nd *rnode, kind, method, name, body string) int {
	req, _ := http.NewRequest(method, "http://"+nd.addrs[kind]+"/alice/default/"+name, strings.NewReader(body))
	req.SetBasicAuth("alice", testPassword)
	if kind == "contacts" {
		req.Header.Set("Content-Type", "text/vcard")
	} else {
		req.Header.Set("Content-Type", "text/calendar")
	}
	resp, err := davClient.Do(req)
	if err != nil {
		t.Errorf("%s: %s %s: %v", nd.name, method, name, err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func davGet(t *testing.T, nd *rnode, kind, name string) int {
	return davDo(t, nd, kind, "GET", name, "")
}
