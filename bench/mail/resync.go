package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// The resync phases: a client that knows a mailbox of -resync-n small
// messages reconnects after another client changed the flags of 100 of
// them, and brings its copy up to date, with CONDSTORE (RFC 7162: SELECT
// (CONDSTORE), then FETCH 1:* (FLAGS) (CHANGEDSINCE its HIGHESTMODSEQ)),
// with QRESYNC (ENABLE QRESYNC, then SELECT (QRESYNC (uidvalidity
// modseq)), which sends the changes itself) and, for comparison, without (SELECT, then FETCH 1:* (UID FLAGS)). The
// mailbox is filled (pipelined APPENDs, not timed) and changed once;
// each resync runs once to warm up, then five times, and the median run
// is reported.
var (
	resyncN    = flag.Int("resync-n", 10000, "messages in the resync phases' mailbox (0: no resync phases)")
	onlyResync = flag.Bool("only-resync", false, "run the resync phases only")
)

// resyncChanges is how many messages change while the client is away.
const resyncChanges = 100

// settle runs after the APPENDs (see phases).
func resyncPhases(addr string, n int, seed uint64, settle func()) ([]result, error) {
	if n < resyncChanges {
		return nil, fmt.Errorf("-resync-n %d: want at least %d", n, resyncChanges)
	}
	c, err := login(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	const box = "Resync"
	if err := c.Create(box, nil).Wait(); err != nil {
		return nil, fmt.Errorf("CREATE %s: %w", box, err)
	}
	for i := 0; i < n; {
		var cmds []*imapclient.AppendCommand
		for k := 0; k < 200 && i < n; k, i = k+1, i+1 {
			m := []byte(fmt.Sprintf("From: a@example.org\r\nSubject: resync %d\r\n\r\nbody %d\r\n", i, i))
			cmd := c.Append(box, int64(len(m)), nil)
			cmd.Write(m)
			cmd.Close()
			cmds = append(cmds, cmd)
		}
		for _, cmd := range cmds {
			if _, err := cmd.Wait(); err != nil {
				return nil, fmt.Errorf("APPEND to %s: %w", box, err)
			}
		}
	}
	settle()
	sel, err := c.Select(box, &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil {
		return nil, err
	}
	if sel.HighestModSeq == 0 {
		return nil, fmt.Errorf("SELECT %s (CONDSTORE): no HIGHESTMODSEQ", box)
	}
	known := sel.HighestModSeq
	// Another client changes 100 messages, one STORE each.
	r := rand.New(rand.NewPCG(seed, 7162))
	for _, i := range r.Perm(n)[:resyncChanges] {
		uid := imap.UID(i + 1)
		if _, err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
			return nil, err
		}
	}
	var res []result
	add := func(r result, err error) error {
		if err == nil {
			fmt.Fprintf(os.Stderr, "  %s: %s\n", r.name, figure(r))
			res = append(res, r)
		}
		return err
	}
	if err := add(warmMedian(fmt.Sprintf("resync %d msgs after %d flag changes: login, SELECT (CONDSTORE), FETCH 1:* (FLAGS) (CHANGEDSINCE)", n, resyncChanges), func() (int64, int, error) {
		cc, err := login(addr)
		if err != nil {
			return 0, 0, err
		}
		defer cc.Close()
		if _, err := cc.Select(box, &imap.SelectOptions{ReadOnly: true, CondStore: true}).Wait(); err != nil {
			return 0, 0, err
		}
		ms, err := cc.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, UID: true, ChangedSince: known}).Collect()
		if err == nil && len(ms) != resyncChanges {
			err = fmt.Errorf("FETCH CHANGEDSINCE: %d messages, want %d", len(ms), resyncChanges)
		}
		return 0, len(ms), err
	})); err != nil {
		return nil, err
	}
	if err := add(warmMedian(fmt.Sprintf("resync %d msgs after %d flag changes: login, ENABLE QRESYNC, SELECT (QRESYNC (uidvalidity modseq))", n, resyncChanges), func() (int64, int, error) {
		k, err := qresyncSelect(addr, box, sel.UIDValidity, known)
		if err == nil && k != resyncChanges {
			err = fmt.Errorf("SELECT (QRESYNC): %d FETCH responses, want %d", k, resyncChanges)
		}
		return 0, k, err
	})); err != nil {
		return nil, err
	}
	if err := add(warmMedian(fmt.Sprintf("resync %d msgs without CONDSTORE: login, SELECT, FETCH 1:* (UID FLAGS)", n), func() (int64, int, error) {
		cc, err := login(addr)
		if err != nil {
			return 0, 0, err
		}
		defer cc.Close()
		if _, err := cc.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			return 0, 0, err
		}
		ms, err := cc.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, UID: true}).Collect()
		if err == nil && len(ms) != n {
			err = fmt.Errorf("FETCH: %d messages, want %d", len(ms), n)
		}
		return 0, len(ms), err
	})); err != nil {
		return nil, err
	}
	return res, nil
}

// qresyncSelect logs in, enables QRESYNC and selects box with QRESYNC
// parameters, over raw protocol lines (go-imap's client has no QRESYNC),
// and returns how many FETCH responses came.
func qresyncSelect(addr, box string, uidValidity uint32, modSeq uint64) (int, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	read := func(tag string) ([]string, error) {
		var lines []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			l = strings.TrimRight(l, "\r\n")
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					return nil, fmt.Errorf("%s", l)
				}
				return lines, nil
			}
			lines = append(lines, l)
		}
	}
	if _, err := r.ReadString('\n'); err != nil { // greeting
		return 0, err
	}
	fmt.Fprintf(c, "a LOGIN bench %q\r\nb ENABLE QRESYNC\r\nc EXAMINE %s (QRESYNC (%d %d))\r\n", password, box, uidValidity, modSeq)
	for _, tag := range []string{"a", "b"} {
		if _, err := read(tag); err != nil {
			return 0, err
		}
	}
	lines, err := read("c")
	if err != nil {
		return 0, err
	}
	k := 0
	for _, l := range lines {
		if strings.Contains(l, " FETCH (") {
			k++
		}
	}
	return k, nil
}
