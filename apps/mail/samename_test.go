package main

import (
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/nymote/nymote/replica"
)

// TestReplicaSameMailboxName: while two nodes are cut off from each other,
// an IMAP client on each CREATEs "Projects" and APPENDs a message there.
// After the heal both nodes list the same two mailboxes, Projects and
// Projects-ID (the one with the higher id renamed), each holding one node's
// message under the UIDVALIDITY that node's client saw (host processes, the
// nodes' real replication endpoints through proxies).
func TestReplicaSameMailboxName(t *testing.T) {
	ropts := replica.Options{Debounce: 20 * time.Millisecond, Poll: time.Second, Retry: 100 * time.Millisecond, Rescan: time.Hour}
	nodes, links := setupReplicas(t, 2, 3, ropts)
	links[0][1].SetCut(true)
	links[1][0].SetCut(true)
	uv := map[*rnode]uint32{}
	for _, nd := range nodes {
		if err := nd.imapC.Create("Projects", nil).Wait(); err != nil {
			t.Fatalf("%s: CREATE: %v", nd.name, err)
		}
		msg := testMessage("from "+nd.name, "hello")
		cmd := nd.imapC.Append("Projects", int64(len(msg)), nil)
		cmd.Write([]byte(msg))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("%s: APPEND: %v", nd.name, err)
		}
		st, err := nd.imapC.Status("Projects", &imap.StatusOptions{UIDValidity: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		uv[nd] = st.UIDValidity
	}
	links[0][1].SetCut(false)
	links[1][0].SetCut(false)

	renamed := regexp.MustCompile(`^Projects-[0-9a-f]{8}$`)
	// projects lists the Projects mailboxes of nd: name → subjects, and
	// name → UIDVALIDITY.
	projects := func(nd *rnode) (map[string][]string, map[string]uint32) {
		c := dialIMAP(t, nd.addrs["imap"])
		defer c.Close()
		list, err := c.List("", "Projects*", nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		subj, uvs := map[string][]string{}, map[string]uint32{}
		for _, l := range list {
			sel, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			uvs[l.Mailbox] = sel.UIDValidity
			subj[l.Mailbox] = []string{}
			if sel.NumMessages > 0 {
				msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true}).Collect()
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range msgs {
					subj[l.Mailbox] = append(subj[l.Mailbox], m.Envelope.Subject)
				}
			}
		}
		return subj, uvs
	}
	names := func(m map[string][]string) []string {
		var out []string
		for n := range m {
			out = append(out, n)
		}
		sort.Strings(out)
		return out
	}
	var first []string
	for _, nd := range nodes {
		var subj map[string][]string
		var uvs map[string]uint32
		waitFor(t, nd.name+" to list Projects and Projects-ID with one message each", hung, func() bool {
			subj, uvs = projects(nd)
			ns := names(subj)
			return len(ns) == 2 && ns[0] == "Projects" && renamed.MatchString(ns[1]) &&
				len(subj[ns[0]]) == 1 && len(subj[ns[1]]) == 1
		})
		ns := names(subj)
		if first == nil {
			first = ns
		} else if strings.Join(ns, " ") != strings.Join(first, " ") {
			t.Errorf("%s lists %v, the other node %v", nd.name, ns, first)
		}
		// This node's client's mailbox: its message, its UIDVALIDITY.
		own := ""
		for _, n := range ns {
			if subj[n][0] == "from "+nd.name {
				own = n
			}
		}
		if own == "" {
			t.Errorf("%s: no mailbox holds its own message: %v", nd.name, subj)
		} else if uvs[own] != uv[nd] {
			t.Errorf("%s: %s has UIDVALIDITY %d, its client saw %d", nd.name, own, uvs[own], uv[nd])
		}
	}
}
