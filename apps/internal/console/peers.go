package console

import (
	"net/http"
	"time"

	"github.com/nymote/nymote/internal/metrics"
	"github.com/nymote/nymote/replica"
)

// Peers: the nodes this store replicates with (package replica), each
// with its sync state: the last contact, commits ahead and behind as of
// then, since when the nodes were last seen in sync, the last error. For
// admins, on /console/peers and /api/v1/admin/peers, and as metrics.

// PeerInfo is one peer as the console shows it: its record (replicated
// to every node) and what this node's engine knows of it.
type PeerInfo struct {
	replica.Status
	// Synced is false for a peer whose record is here but whose token is
	// not (a record that replicated from another node): it is listed, not
	// synced with, until it is paired with this node (nymote peer add).
	Synced bool `json:"synced"`
	// State is the status in words ("in sync", "ahead 2, behind 0",
	// "unreachable since ...").
	State string `json:"state"`
	// LagSeconds is the time since the nodes were last seen in sync
	// (absent when they never were).
	LagSeconds *float64 `json:"lag_seconds,omitempty"`
}

// peerStatus is the engine's status, or, without an engine in this
// process, the status file a running one last wrote.
func (c *Console) peerStatus() []replica.Status {
	if c.opts.Peers != nil {
		return c.opts.Peers()
	}
	_, ps, err := replica.ReadStatus(c.st)
	if err != nil {
		c.log.Warn("console: reading the replica status", "err", err)
	}
	return ps
}

// peers lists every peer record with its status, by name.
func (c *Console) peers() (self string, out []PeerInfo, err error) {
	self, err = replica.Self(c.st)
	if err != nil {
		return "", nil, err
	}
	recs, err := replica.Peers(c.st)
	if err != nil {
		return "", nil, err
	}
	status := map[string]replica.Status{}
	for _, s := range c.peerStatus() {
		status[s.Name] = s
	}
	now := time.Now()
	out = []PeerInfo{}
	for _, p := range recs {
		if p.Name == self {
			continue
		}
		s, ok := status[p.Name]
		if !ok {
			s = replica.Status{Name: p.Name, URL: p.URL}
		}
		pi := PeerInfo{Status: s, Synced: replica.HasToken(c.st, p.Name)}
		switch {
		case !pi.Synced:
			pi.State = "not paired with this node (no token here)"
		default:
			pi.State = trimReplica(s.Line(), p.Name)
		}
		if !s.InSync.IsZero() {
			lag := now.Sub(s.InSync).Seconds()
			pi.LagSeconds = &lag
		}
		out = append(out, pi)
	}
	return self, out, nil
}

// trimReplica drops the "replica NAME: " of Status.Line.
func trimReplica(line, name string) string {
	p := "replica " + name + ": "
	if len(line) > len(p) && line[:len(p)] == p {
		return line[len(p):]
	}
	return line
}

func (c *Console) apiPeers(w http.ResponseWriter, r *http.Request, user string) error {
	self, ps, err := c.peers()
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"self": self, "peers": ps})
	return nil
}

func (c *Console) peersPage(w http.ResponseWriter, r *http.Request, s *session) error {
	if !c.isAdmin(s.user) {
		return &httpError{403, "peers are for admins (users with git write access)"}
	}
	self, ps, err := c.peers()
	if err != nil {
		return err
	}
	c.render(w, 200, "peers", s, "Peers", struct {
		Self  string
		Peers []PeerInfo
	}{self, ps})
	return nil
}

// syncCollector exports each peer's sync state on every scrape.
type syncCollector struct{ c *Console }

func newSyncCollector(c *Console) *syncCollector { return &syncCollector{c: c} }

func (sc *syncCollector) Collect(emit func(metrics.Family)) {
	fam := func(name, help string, t metrics.Type) metrics.Family {
		return metrics.Family{Name: name, Help: help, Type: t, Labels: []string{"peer"}}
	}
	ahead := fam("nymote_replica_ahead_commits", "Local commits the peer lacked at the last contact.", metrics.TypeGauge)
	behind := fam("nymote_replica_behind_commits", "The peer's commits this node lacked at the last contact.", metrics.TypeGauge)
	lag := fam("nymote_replica_sync_lag_seconds", "Time since this node and the peer were last seen in sync (no series until they have been).", metrics.TypeGauge)
	contact := fam("nymote_replica_last_contact_age_seconds", "Time since the last sync that reached the peer (no series until one has).", metrics.TypeGauge)
	failure := fam("nymote_replica_sync_failures_total", "Failed syncs with the peer since the app started.", metrics.TypeCounter)
	add := func(f *metrics.Family, peer string, v float64) {
		f.Metrics = append(f.Metrics, metrics.Metric{LabelValues: []string{peer}, Value: v})
	}
	now := time.Now()
	for _, s := range sc.c.peerStatus() {
		add(&ahead, s.Name, float64(s.Ahead))
		add(&behind, s.Name, float64(s.Behind))
		add(&failure, s.Name, float64(s.Failures))
		if !s.InSync.IsZero() {
			add(&lag, s.Name, now.Sub(s.InSync).Seconds())
		}
		if !s.LastContact.IsZero() {
			add(&contact, s.Name, now.Sub(s.LastContact).Seconds())
		}
	}
	for _, f := range []metrics.Family{ahead, behind, lag, contact, failure} {
		emit(f) // no series (no peers): the family is left out
	}
}
