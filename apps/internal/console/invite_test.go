package console

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nymote/nymote/signpost"
)

// TestInviteAPI: an admin issues a Signpost invitation through the API of
// a running app; a new node joins with it through the node's join handler
// (which reads the same data directory), once: a replay is refused. Users
// who are not admins, bad requests, and an app without a node are refused.
func TestInviteAPI(t *testing.T) {
	hub := t.TempDir()
	join := httptest.NewServer(signpost.JoinHandler(hub, nil))
	defer join.Close()
	endpoint := strings.TrimPrefix(join.URL, "http://")

	e := newEnv(t, func(o *Options) { o.SignpostDir = hub })
	r := e.api("POST", "/api/v1/admin/invitations", "alice", `{"name":"laptop","endpoint":"`+endpoint+`","person":"alice","ttl":"1h"}`)
	if r.status != 201 {
		t.Fatalf("invite: %d %s", r.status, r.body)
	}
	var got struct{ Name, Expires, Invitation string }
	r.json(t, &got)
	if got.Name != "laptop" || !strings.HasPrefix(got.Invitation, "nymote-invite:") {
		t.Fatalf("invite answered %+v", got)
	}
	laptop := t.TempDir()
	st, err := signpost.Join(context.Background(), laptop, got.Invitation, "", nil)
	if err != nil {
		t.Fatalf("join with the API's invitation: %v", err)
	}
	if len(st.Peers) == 0 {
		t.Fatalf("joined, but no peer recorded: %+v", st)
	}
	if _, err := signpost.Join(context.Background(), t.TempDir(), got.Invitation, "", nil); err == nil {
		t.Error("the invitation was accepted twice")
	}

	for _, tc := range []struct {
		user, body string
		want       int
	}{
		{"bob", `{"name":"phone"}`, 403}, // not an admin
		{"", `{"name":"phone"}`, 401},
		{"alice", `{"name":""}`, 400},
		{"alice", `{"name":"bad name!"}`, 400},
		{"alice", `{"name":"phone","ttl":"forever"}`, 400},
		{"alice", `{"name":"phone","ttl":"9000h"}`, 400},
		{"alice", `{"nam`, 400},
	} {
		if r := e.api("POST", "/api/v1/admin/invitations", tc.user, tc.body); r.status != tc.want {
			t.Errorf("invite %s as %q: %d %s, want %d", tc.body, tc.user, r.status, r.body, tc.want)
		}
	}
	none := newEnv(t)
	if r := none.api("POST", "/api/v1/admin/invitations", "alice", `{"name":"phone"}`); r.status != 404 {
		t.Errorf("an app without a node: %d %s, want 404", r.status, r.body)
	}
}
