package dav_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/nymote/nymote/store"
)

// An app password logs a DAV client in, the commits it makes name it, and
// it stops working once revoked; another user cannot use it.
func TestAppPassword(t *testing.T) {
	s := start(t)
	ctx := context.Background()
	_, pw, err := s.Store.AddAppPassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	do := func(user, password, method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		req.SetBasicAuth(user, password)
		req.Header.Set("Depth", "0")
		req.Header.Set("User-Agent", "DAVx5/4.4")
		if method == "PUT" {
			req.Header.Set("Content-Type", vcardType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := do("alice", pw, "PROPFIND", "/alice/", ""); got != 207 {
		t.Fatalf("PROPFIND with alice's app password: %d, want 207", got)
	}
	if got := do("alice", pw, "PUT", "/alice/default/j.vcf", vcf("j", "Jane Doe")); got != 201 {
		t.Fatalf("PUT with alice's app password: %d, want 201", got)
	}
	log, err := s.Store.Log(store.LogOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log[0].Message, "\nClient: DAVx5/4.4 (app password phone)\n") {
		t.Errorf("the PUT's commit does not name the app password:\n%s", log[0].Message)
	}
	if got := do("bob", pw, "PROPFIND", "/bob/", ""); got != 401 {
		t.Errorf("bob with alice's app password: %d, want 401", got)
	}
	if err := s.Store.DeleteAppPassword(ctx, "alice", "phone"); err != nil {
		t.Fatal(err)
	}
	if got := do("alice", pw, "PROPFIND", "/alice/", ""); got != 401 {
		t.Errorf("revoked app password: %d, want 401", got)
	}
}
