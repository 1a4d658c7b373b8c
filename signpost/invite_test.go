package signpost

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hub returns the data directory of a node that has issued an invitation
// for name, and the invitation.
func hub(t *testing.T, name string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	inv, err := Issue(dir, name, "198.51.100.2:51820", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return dir, inv
}

// serve serves the join endpoint of dir and returns a dialer that reaches
// it whatever address is asked.
func serve(t *testing.T, dir string) DialFunc {
	srv := httptest.NewServer(JoinHandler(dir, nil))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
}

func stateBytes(t *testing.T, dir string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJoin(t *testing.T) {
	dirA, inv := hub(t, "b")
	dial := serve(t, dirA)
	dirB := t.TempDir()
	st, err := Join(context.Background(), dirB, inv, "", dial)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ReadState(dirA)
	idA, _ := LoadIdentity(dirA)
	idB, _ := LoadIdentity(dirB)
	if st.Network != a.Network || st.Name != "b" || len(st.Peers) != 1 || st.Peers[0].WG != idA.WG || !st.Peers[0].Hub || st.Peers[0].Endpoint != "198.51.100.2:51820" {
		t.Fatalf("B's state after join: %+v", st)
	}
	if p, ok := a.Peer("b"); !ok || p.WG != idB.WG {
		t.Fatalf("A's peers after join: %+v", a.Peers)
	}
	// The same addresses on both sides, inside the network's prefixes.
	v4, v6 := a.Addrs(idB.WG)
	w4, w6 := st.Addrs(idB.WG)
	if v4 != w4 || v6 != w6 || !a.Network.Prefix4().Contains(v4) || !a.Network.Prefix6().Contains(v6) {
		t.Fatalf("addresses %s %s vs %s %s", v4, v6, w4, w6)
	}
	conf, err := WGQuick(dirB)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PrivateKey = " + base64.StdEncoding.EncodeToString(idB.WGPrivate[:]), "PublicKey = " + idA.WG.String(), "Endpoint = 198.51.100.2:51820", a.Network.Prefix6().String(), "PersistentKeepalive = 25"} {
		if !strings.Contains(conf, want) {
			t.Errorf("wg-quick configuration lacks %q:\n%s", want, conf)
		}
	}
	// B cannot join again: it is in a network.
	if _, err := Join(context.Background(), dirB, inv, "", dial); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("second join: %v", err)
	}
}

// TestJoinRefused: every bad join is refused with its reason, and leaves
// the issuer's state as it was.
func TestJoinRefused(t *testing.T) {
	dirA, inv := hub(t, "b")
	dial := serve(t, dirA)
	// A used invitation.
	if _, err := Join(context.Background(), t.TempDir(), inv, "", dial); err != nil {
		t.Fatal(err)
	}
	parsed, _ := ParseInvite(inv)
	other, otherInv := hub(t, "c") // an invitation of another node
	_ = other
	expired := func() string {
		id, _ := LoadIdentity(dirA)
		x := *parsed
		x.Name = "late"
		x.Expiry = time.Now().Add(-time.Minute).Truncate(time.Second)
		return x.encode(id.Ed)
	}()
	fresh, err := Issue(dirA, "d", "", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(fresh, InvitePrefix))
	raw[30] ^= 1 // flip a bit of the issuer's key
	tampered := InvitePrefix + base64.RawURLEncoding.EncodeToString(raw)
	raw2, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(fresh, InvitePrefix))
	renamed := bytes.Replace(raw2, []byte("\x01d"), []byte("\x01e"), 1) // another name, same signature
	raw3, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(fresh, InvitePrefix))
	raw3[len(raw3)-1] ^= 1 // the secret: not signed, but checked by the issuer
	wrongSecret := InvitePrefix + base64.RawURLEncoding.EncodeToString(raw3)

	cases := []struct{ name, inv, want string }{
		{"replayed", inv, "used already"},
		{"other issuer", otherInv, "not issued by this node"},
		{"tampered", tampered, "signature does not match"},
		{"renamed", InvitePrefix + base64.RawURLEncoding.EncodeToString(renamed), "signature does not match"},
		{"wrong secret", wrongSecret, "secret is wrong"},
		{"garbage", "nymote-invite:!!!", "not base64url"},
		{"no prefix", "hello", "does not start with"},
		{"short", InvitePrefix + "AAAA", "too short"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := stateBytes(t, dirA)
			_, err := Join(context.Background(), t.TempDir(), c.inv, "", dial)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
			if !bytes.Equal(before, stateBytes(t, dirA)) {
				t.Fatal("a refused join changed the issuer's state")
			}
		})
	}
	// The joiner refuses an expired invitation itself; the issuer refuses
	// it too when asked directly.
	if _, err := Join(context.Background(), t.TempDir(), expired, "", dial); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired invitation: %v", err)
	}
	before := stateBytes(t, dirA)
	_, _, err = Accept(dirA, joinRequestFor(t, expired), time.Now())
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("issuer on an expired invitation: %v", err)
	}
	// A request whose proof was not made with the invitation's nonce.
	req := joinRequestFor(t, fresh)
	var r joinRequest
	json.Unmarshal(req, &r)
	r.Proof[0] ^= 1
	bad, _ := json.Marshal(r)
	if _, _, err := Accept(dirA, bad, time.Now()); err == nil || !strings.Contains(err.Error(), "proof does not match") {
		t.Fatalf("bad proof: %v", err)
	}
	if _, _, err := Accept(dirA, []byte("{"), time.Now()); err == nil || !strings.Contains(err.Error(), "malformed request") {
		t.Fatalf("malformed request: %v", err)
	}
	if !bytes.Equal(before, stateBytes(t, dirA)) {
		t.Fatal("a refused join changed the issuer's state")
	}
	// Only POST.
	srv := httptest.NewServer(JoinHandler(dirA, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + JoinPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %s", resp.Status)
	}
}

// joinRequestFor makes a valid join request for invitation inv from a new
// key.
func joinRequestFor(t *testing.T, inv string) []byte {
	t.Helper()
	parsed, err := ParseInvite(inv)
	if err != nil {
		t.Fatal(err)
	}
	id, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := joinRequest{Ticket: parsed.ticket(), WG: id.WG, Ed: id.EdPublic()}
	mac := hmac.New(sha256.New, parsed.Secret[:])
	mac.Write(r.proofMessage())
	r.Proof = mac.Sum(nil)
	r.Sig = ed25519.Sign(id.Ed, r.proofMessage())
	b, _ := json.Marshal(r)
	return b
}

func TestRevoke(t *testing.T) {
	dirA, inv := hub(t, "b")
	dial := serve(t, dirA)
	dirB := t.TempDir()
	if _, err := Join(context.Background(), dirB, inv, "", dial); err != nil {
		t.Fatal(err)
	}
	idB, _ := LoadIdentity(dirB)
	if _, err := Revoke(dirA, "nobody"); !errors.Is(err, ErrNoPeer) {
		t.Fatalf("revoke an unknown name: %v", err)
	}
	p, err := Revoke(dirA, "b")
	if err != nil || p.WG != idB.WG {
		t.Fatalf("Revoke: %v %+v", err, p)
	}
	st, _ := ReadState(dirA)
	if _, ok := st.Peer("b"); ok || !st.IsRevoked(idB.WG) {
		t.Fatalf("after revoke: %+v", st)
	}
	// The revoked key cannot come back with a new invitation.
	inv2, err := Issue(dirA, "b2", "", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dirB, stateFile))
	if _, err := Join(context.Background(), dirB, inv2, "", dial); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked key joins: %v", err)
	}
}

func TestIdentityStable(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.WG != b.WG || !a.Ed.Equal(b.Ed) {
		t.Fatal("a second load made new keys")
	}
	fi, err := os.Stat(filepath.Join(dir, identityFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", fi.Mode(), err)
	}
	if _, err := Issue(dir, "Bad_Name", "h:1", "", time.Hour); err == nil {
		t.Fatal("a bad name was accepted")
	}
	if _, err := Issue(dir, "x", "", "", time.Hour); err == nil || !strings.Contains(err.Error(), "endpoint") {
		t.Fatalf("no endpoint: %v", err)
	}
}
