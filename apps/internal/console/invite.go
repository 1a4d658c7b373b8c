package console

import (
	"errors"
	"io/fs"
	"net/http"
	"time"

	"github.com/nymote/nymote/signpost"
)

// Invitations: an admin pairs a new device with this node's Signpost
// network while the appliance runs (the host tool's `nymote peer invite`
// needs the node's data directory, which a running appliance holds on its
// disk). The invitation is signed by this node and single-use, as the
// host tool's; the running node's join handler reads it from the same
// data directory.

type inviteRequest struct {
	Name     string `json:"name"`               // the new node's name
	Endpoint string `json:"endpoint,omitempty"` // this node's public WireGuard endpoint; default: the one recorded
	Person   string `json:"person,omitempty"`   // the network's person, while only its founder is in it
	TTL      string `json:"ttl,omitempty"`      // Go duration; default 24h, at most 30 days
}

func (c *Console) apiInvite(w http.ResponseWriter, r *http.Request, user string) error {
	if c.opts.SignpostDir == "" {
		return &httpError{404, "this app has no Signpost node (no data directory)"}
	}
	var req inviteRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return &httpError{400, `"name": the new node's name is missing`}
	}
	ttl := 24 * time.Hour
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return &httpError{400, `"ttl": ` + err.Error()}
		}
		ttl = d
	}
	inv, err := signpost.Issue(c.opts.SignpostDir, req.Name, req.Endpoint, req.Person, ttl)
	var pathErr *fs.PathError
	switch {
	case errors.As(err, &pathErr):
		return err // the node's files: a 500, logged
	case err != nil:
		// Bad names, endpoints, lifetimes, a node without an endpoint:
		// the request's fault, said as signpost says it.
		return &httpError{400, err.Error()}
	}
	c.log.Info("console: signpost invitation issued", "by", user, "node", req.Name, "ttl", ttl)
	writeJSON(w, 201, map[string]any{"name": req.Name, "expires": time.Now().Add(ttl).UTC().Format(time.RFC3339), "invitation": inv})
	return nil
}
