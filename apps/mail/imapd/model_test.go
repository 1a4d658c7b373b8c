package imapd

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	modelSeed     = flag.Uint64("imapmodel.seed", 0, "TestModelConcurrentSessions: random seed (0: from the clock)")
	modelSessions = flag.Int("imapmodel.sessions", 8, "TestModelConcurrentSessions: sessions on the one mailbox")
	modelRounds   = flag.Int("imapmodel.rounds", 4, "TestModelConcurrentSessions: rounds, each ending at a quiescent check")
	modelCommands = flag.Int("imapmodel.commands", 150, "TestModelConcurrentSessions: commands per session per round")
)

// TestModelConcurrentSessions runs many sessions on one mailbox at once,
// each doing a random (seeded, seed logged) mix of APPEND, STORE of flags
// and keywords, EXPUNGE, MOVE, FETCH, SEARCH, IDLE and NOOP, and checks
// every untagged response each session receives against a model of what
// that session was told so far (its sequence numbers, the UIDs and flags it
// knows, the flags announced in FLAGS):
//
//   - EXPUNGE names a sequence number the session has, and never comes while
//     a FETCH, STORE or SEARCH (not UID) is answered, nor outside a command
//     (RFC 3501 7.4.1, RFC 9051 7.5.1);
//   - EXISTS never shrinks the mailbox (only EXPUNGE does);
//   - FETCH names a sequence number the session has, with the UID it was
//     told for it before, and UIDs ascend with sequence numbers;
//   - a keyword in FETCH FLAGS was announced in FLAGS first (RFC 3501 7.2.6);
//   - no VANISHED (QRESYNC is not enabled);
//   - each session's own keyword ($own<i>, which only it stores) is in the
//     FLAGS its own STORE gets back exactly as it was stored, and UID SEARCH
//     KEYWORD finds only messages it is on;
//   - after UID EXPUNGE or UID MOVE of a UID answers OK, that UID is gone
//     from the session's view;
//   - at the end of each round, when all sessions are quiet, a NOOP brings
//     every session's view (count, every UID and flags it knows) to the
//     mailbox as a fresh EXAMINE sees it, and each session's own keyword is
//     on the messages it put it on.
//
// The defaults keep it to a few thousand commands; -imapmodel.rounds and
// -imapmodel.commands run more. Which session runs first is up to the
// scheduler, so a seed repeats each session's choices, not the interleaving.
func TestModelConcurrentSessions(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -imapmodel.seed=%d)", seed, seed)
	h := start(t)
	tg := imapTarget{name: "nymote", addr: h.addr, users: map[string]string{"alice": "password-alice"}}

	setup := dialModel(t, tg, -1, nil)
	setup.mustOK("CREATE Other")
	for i := range 20 {
		setup.appendMsg(fmt.Sprintf("seed %d", i), "")
	}
	observer := setup

	var ops, active, idling atomic.Int64
	sessions := make([]*modelSession, *modelSessions)
	for i := range sessions {
		s := dialModel(t, tg, i, rand.New(rand.NewPCG(seed, uint64(i))))
		s.ops, s.active, s.idling = &ops, &active, &idling
		s.selectInbox()
		sessions[i] = s
	}
	start := time.Now()
	total := 0
	for round := range *modelRounds {
		var wg sync.WaitGroup
		active.Store(int64(len(sessions)))
		for _, s := range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer active.Add(-1)
				for range *modelCommands {
					if s.broken || s.errs >= maxModelErrors {
						return
					}
					s.random()
					ops.Add(1)
				}
			}()
		}
		wg.Wait()
		total += len(sessions) * *modelCommands
		if t.Failed() {
			break
		}
		truth := observer.truth()
		for _, s := range sessions {
			s.quiescentCheck(fmt.Sprintf("round %d", round), truth)
		}
		if t.Failed() {
			break
		}
		t.Logf("round %d: %d messages in INBOX, all %d sessions agree", round, len(truth), len(sessions))
	}
	t.Logf("%d commands in %v", total, time.Since(start).Round(time.Millisecond))
}

const maxModelErrors = 10

// modelSession is one raw IMAP connection and its model of the selected
// INBOX, built only from the untagged responses it received.
type modelSession struct {
	t      *testing.T
	id     int
	c      net.Conn
	lines  chan modelLine
	rnd    *rand.Rand
	n      int
	errs   int
	broken bool

	ops, active, idling *atomic.Int64

	// inCmd is the command being answered ("" outside one); noExpunge is
	// set while EXPUNGE must not be sent.
	inCmd     string
	lastCmd   string
	noExpunge bool

	uids      []uint32          // by sequence number - 1; 0: not told
	flags     []map[string]bool // by sequence number - 1; nil: not told
	announced map[string]bool   // from FLAGS
	own       string            // this session's keyword
	ownOn     map[uint32]bool   // UIDs with own set (as of our last STORE of it)
}

type modelLine struct {
	s   string
	err error
}

func dialModel(t *testing.T, tg imapTarget, id int, rnd *rand.Rand) *modelSession {
	t.Helper()
	c, err := net.Dial("tcp", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &modelSession{t: t, id: id, c: c, rnd: rnd, lines: make(chan modelLine, 64), own: fmt.Sprintf("$own%d", id), ownOn: map[uint32]bool{}}
	go func() {
		r := bufio.NewReader(c)
		for {
			l, err := readLine(r)
			s.lines <- modelLine{l, err}
			if err != nil {
				return
			}
		}
	}()
	if l := s.next(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting: %q", l)
	}
	if st := s.do("LOGIN alice %s", tg.users["alice"]); !strings.HasPrefix(st, "OK") {
		t.Fatalf("login: %s", st)
	}
	return s
}

// readLine reads one response line without its CRLF, literals inlined.
func readLine(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return b.String() + l, err
		}
		l = strings.TrimRight(l, "\r\n")
		b.WriteString(l)
		m := literalAtEnd.FindStringSubmatch(l)
		if m == nil {
			return b.String(), nil
		}
		n, _ := strconv.Atoi(m[1])
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return b.String(), err
		}
		b.Write(buf)
	}
}

func (s *modelSession) errorf(format string, args ...any) {
	s.t.Helper()
	s.errs++
	if s.errs <= maxModelErrors {
		s.t.Errorf("session %d: %s", s.id, fmt.Sprintf(format, args...))
	}
}

// next is the next line from the server; a hung server fails the test
// after a generous bound.
func (s *modelSession) next() string {
	select {
	case l := <-s.lines:
		if l.err != nil {
			s.broken = true
			s.t.Errorf("session %d: connection: %v (after %q, in %q)", s.id, l.err, l.s, s.inCmd)
			return ""
		}
		return l.s
	case <-time.After(2 * time.Minute):
		s.broken = true
		s.t.Errorf("session %d: no answer to %q in 2 minutes", s.id, s.inCmd)
		return ""
	}
}

func (s *modelSession) send(format string, args ...any) string {
	s.n++
	tag := fmt.Sprintf("m%d", s.n)
	cmd := fmt.Sprintf(format, args...)
	s.inCmd = cmd
	up := strings.ToUpper(cmd)
	s.noExpunge = strings.HasPrefix(up, "FETCH") || strings.HasPrefix(up, "STORE") || strings.HasPrefix(up, "SEARCH")
	if _, err := fmt.Fprintf(s.c, "%s %s\r\n", tag, cmd); err != nil {
		s.broken = true
		s.t.Errorf("session %d: send %q: %v", s.id, cmd, err)
	}
	return tag
}

// wait handles the responses up to tag's and returns its status (without
// the tag); the untagged responses that are not model updates are
// returned too.
func (s *modelSession) wait(tag string) (status string, other []string) {
	for !s.broken {
		l := s.next()
		if strings.HasPrefix(l, tag+" ") {
			s.lastCmd, s.inCmd = s.inCmd, ""
			s.noExpunge = false
			return strings.TrimPrefix(l, tag+" "), other
		}
		if !s.untagged(l) {
			other = append(other, l)
		}
	}
	return "BROKEN", other
}

func (s *modelSession) do(format string, args ...any) string {
	st, _ := s.wait(s.send(format, args...))
	return st
}

func (s *modelSession) mustOK(format string, args ...any) []string {
	s.t.Helper()
	st, other := s.wait(s.send(format, args...))
	if !strings.HasPrefix(st, "OK") && !s.broken {
		s.errorf("%s: got %s, want OK", fmt.Sprintf(format, args...), st)
	}
	return other
}

var (
	reNumResp = regexp.MustCompile(`^\* (\d+) (EXISTS|EXPUNGE|RECENT|FETCH)(?: \((.*)\))?$`)
	reUID     = regexp.MustCompile(`(?:^| )UID (\d+)`)
	reFlags   = regexp.MustCompile(`(?:^| )FLAGS \(([^)]*)\)`)
	reFlagsR  = regexp.MustCompile(`^\* FLAGS \(([^)]*)\)$`)
)

func flagSet(list string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(list) {
		if !strings.EqualFold(f, `\Recent`) {
			m[f] = true
		}
	}
	return m
}

func flagString(m map[string]bool) string {
	if m == nil {
		return "(unknown)"
	}
	var l []string
	for f := range m {
		l = append(l, f)
	}
	sort.Strings(l)
	return "(" + strings.Join(l, " ") + ")"
}

func isKeyword(f string) bool { return !strings.HasPrefix(f, `\`) }

// untagged applies one untagged response to the model, checking it; it
// reports whether it was a model update.
func (s *modelSession) untagged(l string) bool {
	s.t.Helper()
	if s.inCmd == "" {
		s.errorf("response outside a command: %q", l)
	}
	if strings.HasPrefix(l, "* VANISHED") {
		s.errorf("VANISHED without QRESYNC: %q (in %q)", l, s.inCmd)
		return true
	}
	if m := reFlagsR.FindStringSubmatch(l); m != nil {
		s.announced = flagSet(m[1])
		return true
	}
	m := reNumResp.FindStringSubmatch(l)
	if m == nil {
		return false
	}
	n, _ := strconv.Atoi(m[1])
	switch m[2] {
	case "RECENT":
		return true
	case "EXISTS":
		if n < len(s.uids) {
			s.errorf("EXISTS %d shrinks the mailbox from %d (in %q)", n, len(s.uids), s.inCmd)
			return true
		}
		for len(s.uids) < n {
			s.uids = append(s.uids, 0)
			s.flags = append(s.flags, nil)
		}
	case "EXPUNGE":
		if s.noExpunge {
			s.errorf("EXPUNGE %d while answering %q", n, s.inCmd)
		}
		if n < 1 || n > len(s.uids) {
			s.errorf("EXPUNGE %d out of range 1:%d (in %q)", n, len(s.uids), s.inCmd)
			return true
		}
		s.uids = slices.Delete(s.uids, n-1, n)
		s.flags = slices.Delete(s.flags, n-1, n)
	case "FETCH":
		if n < 1 || n > len(s.uids) {
			s.errorf("FETCH for %d out of range 1:%d: %q (in %q)", n, len(s.uids), l, s.inCmd)
			return true
		}
		i := n - 1
		if u := reUID.FindStringSubmatch(m[3]); u != nil {
			uid64, _ := strconv.ParseUint(u[1], 10, 32)
			uid := uint32(uid64)
			switch {
			case s.uids[i] != 0 && s.uids[i] != uid:
				s.errorf("FETCH %d says UID %d, told UID %d before (in %q)", n, uid, s.uids[i], s.inCmd)
			case s.uids[i] == 0:
				for j := i - 1; j >= 0; j-- {
					if s.uids[j] != 0 {
						if s.uids[j] >= uid {
							s.errorf("FETCH %d says UID %d, but %d has UID %d", n, uid, j+1, s.uids[j])
						}
						break
					}
				}
				for j := i + 1; j < len(s.uids); j++ {
					if s.uids[j] != 0 {
						if s.uids[j] <= uid {
							s.errorf("FETCH %d says UID %d, but %d has UID %d", n, uid, j+1, s.uids[j])
						}
						break
					}
				}
				s.uids[i] = uid
			}
		}
		if f := reFlags.FindStringSubmatch(m[3]); f != nil {
			set := flagSet(f[1])
			for k := range set {
				if isKeyword(k) && !s.announced[k] {
					s.errorf("FETCH %d FLAGS has keyword %s not announced in FLAGS %s (in %q)", n, k, flagString(s.announced), s.inCmd)
				}
			}
			s.flags[i] = set
		}
	}
	return true
}

func (s *modelSession) selectInbox() {
	s.mustOK("SELECT INBOX")
	if len(s.uids) > 0 {
		s.mustOK("FETCH 1:* (UID FLAGS)")
	}
}

var modelFlags = []string{`\Seen`, `\Flagged`, `\Answered`, `$shared`, `$Label1`}

// appendMsg APPENDs a small message to INBOX with a synchronizing literal
// and returns the UID of APPENDUID.
func (s *modelSession) appendMsg(subject, flags string) uint32 {
	s.t.Helper()
	msg := fmt.Sprintf("From: a@example.org\r\nTo: alice@example.org\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\nhello from %s\r\n", subject, strings.ReplaceAll(subject, " ", "."), subject)
	if flags != "" {
		flags = "(" + flags + ") "
	}
	tag := s.send("APPEND INBOX %s{%d}", flags, len(msg))
	for !s.broken {
		l := s.next()
		if strings.HasPrefix(l, "+") {
			break
		}
		if strings.HasPrefix(l, tag+" ") {
			s.errorf("APPEND: %s", l)
			return 0
		}
		s.untagged(l)
	}
	fmt.Fprintf(s.c, "%s\r\n", msg)
	st, _ := s.wait(tag)
	m := regexp.MustCompile(`^OK \[APPENDUID \d+ (\d+)\]`).FindStringSubmatch(st)
	if m == nil {
		if !s.broken {
			s.errorf("APPEND: got %q, want OK [APPENDUID ...]", st)
		}
		return 0
	}
	uid, _ := strconv.ParseUint(m[1], 10, 32)
	return uint32(uid)
}

// pick returns a random sequence number of the view and its UID (0 if not
// told), or 0, 0 if the view is empty.
func (s *modelSession) pick() (int, uint32) {
	if len(s.uids) == 0 {
		return 0, 0
	}
	i := s.rnd.IntN(len(s.uids))
	return i + 1, s.uids[i]
}

// pickUID returns a UID the session was told, or 0.
func (s *modelSession) pickUID() uint32 {
	for range 4 {
		if _, u := s.pick(); u != 0 {
			return u
		}
	}
	return 0
}

func (s *modelSession) seqOf(uid uint32) int {
	for i, u := range s.uids {
		if u == uid {
			return i + 1
		}
	}
	return 0
}

// checkOwn checks the FLAGS the session's own STORE of its keyword got
// back for uid.
func (s *modelSession) checkOwn(uid uint32, on bool) {
	if uid == 0 {
		return
	}
	seq := s.seqOf(uid)
	if seq == 0 || s.flags[seq-1] == nil {
		return // expunged meanwhile, or its FLAGS not sent
	}
	if s.flags[seq-1][s.own] != on {
		s.errorf("after %q, UID %d has FLAGS %s, want %s set=%v", s.lastCmd, uid, flagString(s.flags[seq-1]), s.own, on)
	}
}

// random runs one random command.
func (s *modelSession) random() {
	switch r := s.rnd.IntN(100); {
	case r < 14: // APPEND, sometimes with flags
		flags := ""
		own := s.rnd.IntN(3) == 0
		if own {
			flags = s.own + ` \Seen`
		} else if s.rnd.IntN(2) == 0 {
			flags = modelFlags[s.rnd.IntN(len(modelFlags))]
		}
		if uid := s.appendMsg(fmt.Sprintf("s%d m%d", s.id, s.n), flags); uid != 0 && own {
			s.ownOn[uid] = true
		}
	case r < 30: // UID STORE of a shared flag or keyword
		uid := s.pickUID()
		if uid == 0 {
			s.mustOK("NOOP")
			return
		}
		// Not FLAGS (replace): that would take other sessions' own
		// keywords off.
		op := []string{"+", "-"}[s.rnd.IntN(2)]
		f := modelFlags[s.rnd.IntN(len(modelFlags))]
		s.mustOK("UID STORE %d %sFLAGS (%s)", uid, op, f)
	case r < 42: // own keyword, by UID or by sequence number
		on := s.rnd.IntN(2) == 0
		op := map[bool]string{true: "+", false: "-"}[on]
		if s.rnd.IntN(2) == 0 {
			uid := s.pickUID()
			if uid == 0 {
				return
			}
			st := s.do("UID STORE %d %sFLAGS (%s)", uid, op, s.own)
			if strings.HasPrefix(st, "OK") {
				s.ownOn[uid] = on
				s.checkOwn(uid, on)
			} else {
				s.errorf("%q: %s", s.lastCmd, st)
			}
			return
		}
		seq, uid := s.pick()
		if seq == 0 {
			return
		}
		st := s.do("STORE %d %sFLAGS (%s)", seq, op, s.own)
		if !strings.HasPrefix(st, "OK") {
			s.errorf("%q: %s", s.lastCmd, st)
			return
		}
		if uid == 0 {
			uid = s.uids[seq-1] // no EXPUNGE during STORE: seq still means it
		}
		// Not checkOwn: after a STORE by sequence number (no EXPUNGE
		// may be sent) an older update of the message queued behind an
		// EXPUNGE for this session can follow the response; the next
		// command that may expunge brings the new flags (the quiescent
		// check sees them).
		if uid != 0 {
			s.ownOn[uid] = on
		}
	case r < 50: // FETCH by sequence numbers, sometimes bodies
		seq, _ := s.pick()
		if seq == 0 {
			s.mustOK("NOOP")
			return
		}
		hi := min(seq+s.rnd.IntN(5), len(s.uids))
		items := "(UID FLAGS)"
		if s.rnd.IntN(3) == 0 {
			items = "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)"
		}
		s.mustOK("FETCH %d:%d %s", seq, hi, items)
	case r < 55: // UID FETCH
		if uid := s.pickUID(); uid != 0 {
			s.mustOK("UID FETCH %d (FLAGS BODY.PEEK[])", uid)
		}
	case r < 63: // \Deleted and UID EXPUNGE
		uid := s.pickUID()
		if uid == 0 {
			return
		}
		s.mustOK(`UID STORE %d +FLAGS (\Deleted)`, uid)
		if st := s.do("UID EXPUNGE %d", uid); !strings.HasPrefix(st, "OK") {
			s.errorf("%q: %s", s.lastCmd, st)
		}
		if s.seqOf(uid) != 0 {
			s.errorf("after %q answered OK, UID %d is still in the view", s.lastCmd, uid)
		}
		delete(s.ownOn, uid)
	case r < 66: // EXPUNGE of whatever is \Deleted
		s.mustOK("EXPUNGE")
	case r < 74: // UID MOVE to Other
		uid := s.pickUID()
		if uid == 0 {
			return
		}
		st := s.do("UID MOVE %d Other", uid)
		switch {
		case strings.HasPrefix(st, "OK"):
			if s.seqOf(uid) != 0 {
				s.errorf("after %q answered OK, UID %d is still in the view", s.lastCmd, uid)
			}
			delete(s.ownOn, uid)
		case !strings.HasPrefix(st, "NO"):
			// Another session may have moved or expunged it first:
			// OK without COPYUID, or NO, are both right then.
			s.errorf("%q: %s", s.lastCmd, st)
		}
	case r < 78: // MOVE by sequence number
		seq, uid := s.pick()
		if seq == 0 {
			return
		}
		st := s.do("MOVE %d Other", seq)
		switch {
		case strings.HasPrefix(st, "OK"):
			delete(s.ownOn, uid)
		case !strings.HasPrefix(st, "NO"):
			s.errorf("%q: %s", s.lastCmd, st)
		}
	case r < 84: // searches
		if s.rnd.IntN(2) == 0 {
			st, other := s.wait(s.send("UID SEARCH KEYWORD %s", s.own))
			if !strings.HasPrefix(st, "OK") {
				s.errorf("%q: %s", s.lastCmd, st)
				return
			}
			for _, l := range other {
				if !strings.HasPrefix(l, "* SEARCH") {
					continue
				}
				for _, f := range strings.Fields(strings.TrimPrefix(l, "* SEARCH")) {
					u, _ := strconv.ParseUint(f, 10, 32)
					if !s.ownOn[uint32(u)] {
						s.errorf("%q found UID %d, which %s was never stored on or was taken off", s.lastCmd, u, s.own)
					}
				}
			}
			return
		}
		st, other := s.wait(s.send(`SEARCH UNSEEN`))
		if !strings.HasPrefix(st, "OK") {
			s.errorf("%q: %s", s.lastCmd, st)
		}
		for _, l := range other {
			if !strings.HasPrefix(l, "* SEARCH") {
				continue
			}
			for _, f := range strings.Fields(strings.TrimPrefix(l, "* SEARCH")) {
				if n, _ := strconv.Atoi(f); n < 1 || n > len(s.uids) {
					s.errorf("SEARCH found %d, out of range 1:%d", n, len(s.uids))
				}
			}
		}
	case r < 92: // IDLE until something comes or others got on
		s.idle()
	default:
		s.mustOK("NOOP")
	}
}

// idle runs IDLE until an update arrives, or other sessions completed a
// few commands, or all sessions still running are idle.
func (s *modelSession) idle() {
	tag := s.send("IDLE")
	for !s.broken {
		l := s.next()
		if strings.HasPrefix(l, "+") {
			break
		}
		if strings.HasPrefix(l, tag+" ") {
			s.errorf("IDLE: %s", l)
			return
		}
		s.untagged(l)
	}
	from := s.ops.Load()
	s.idling.Add(1)
	defer s.idling.Add(-1)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	hung := time.After(2 * time.Minute)
wait:
	for !s.broken {
		select {
		case l := <-s.lines:
			if l.err != nil {
				s.broken = true
				s.t.Errorf("session %d: in IDLE: %v", s.id, l.err)
				return
			}
			if strings.HasPrefix(l.s, tag+" ") {
				s.errorf("IDLE ended by the server: %s", l.s)
				return
			}
			s.untagged(l.s)
			break wait
		case <-tick.C:
			// Others got on, or all that still run are idle too.
			if s.ops.Load() >= from+10 || s.active.Load() <= s.idling.Load() {
				break wait
			}
		case <-hung:
			s.errorf("IDLE: nothing came in 2 minutes, and others did not end")
			break wait
		}
	}
	fmt.Fprintf(s.c, "DONE\r\n")
	if st, _ := s.wait(tag); !strings.HasPrefix(st, "OK") && !s.broken {
		s.errorf("IDLE: %s", st)
	}
}

type truthMsg struct {
	uid   uint32
	flags map[string]bool
}

// truth is INBOX as a fresh EXAMINE sees it.
func (s *modelSession) truth() []truthMsg {
	s.t.Helper()
	s.uids, s.flags = nil, nil
	s.mustOK("EXAMINE INBOX")
	var out []truthMsg
	if len(s.uids) > 0 {
		s.mustOK("FETCH 1:* (UID FLAGS)")
	}
	for i, u := range s.uids {
		if u == 0 || s.flags[i] == nil {
			s.t.Fatalf("truth: FETCH 1:* (UID FLAGS) did not tell %d: uid %d flags %v", i+1, u, s.flags[i])
		}
		out = append(out, truthMsg{u, s.flags[i]})
	}
	return out
}

// quiescentCheck runs NOOP and compares the session's view with truth,
// then fetches everything it does not know and compares again.
func (s *modelSession) quiescentCheck(when string, truth []truthMsg) {
	s.t.Helper()
	s.mustOK("NOOP")
	s.compare(when+", after NOOP", truth)
	if len(s.uids) > 0 {
		s.mustOK("FETCH 1:* (UID FLAGS)")
	}
	s.compare(when+", after FETCH 1:*", truth)
	for _, m := range truth {
		if m.flags[s.own] != s.ownOn[m.uid] {
			s.errorf("%s: UID %d has FLAGS %s, want %s set=%v as last stored", when, m.uid, flagString(m.flags), s.own, s.ownOn[m.uid])
		}
	}
}

func (s *modelSession) compare(when string, truth []truthMsg) {
	s.t.Helper()
	if len(s.uids) != len(truth) {
		s.errorf("%s: view has %d messages, mailbox has %d", when, len(s.uids), len(truth))
		return
	}
	for i, m := range truth {
		if s.uids[i] != 0 && s.uids[i] != m.uid {
			s.errorf("%s: %d is UID %d in the view, UID %d in the mailbox", when, i+1, s.uids[i], m.uid)
			continue
		}
		if s.flags[i] != nil && flagString(s.flags[i]) != flagString(m.flags) {
			s.errorf("%s: UID %d has FLAGS %s in the view, %s in the mailbox", when, m.uid, flagString(s.flags[i]), flagString(m.flags))
		}
	}
}
