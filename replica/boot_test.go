package replica

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/store"
)

const testToken = "0123456789abcdef0123456789abcdef"

func bootGet(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
func bootOpt(k string) string                         { return "nymote." + k }

// TestParseBoot: the boot options are read, and bad ones refused with the
// option named.
func TestParseBoot(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tok"), []byte(testToken+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "short"), []byte("abc\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "notpem"), []byte("hello\n"), 0o600)

	b, err := ParseBoot(bootGet(map[string]string{"peer": "home=https://home.example.org:443/replica", "peer-as": "cloud",
		"peer-token": "tok", "peer-ca": "ca.pem"}), bootOpt, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Peers) != 1 || b.Peers[0].Name != "home" || b.Peers[0].URL != "https://home.example.org:443/replica" ||
		b.As != "cloud" || string(b.Token) != testToken || !bytes.Contains(b.CA, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("parsed %+v", b)
	}
	b, err = ParseBoot(bootGet(map[string]string{"peer": "a=https://a.example.org/replica, b=http://10.0.2.2:8080/replica"}), bootOpt, dir)
	if err != nil || len(b.Peers) != 2 || b.Peers[1].Name != "b" || b.Peers[1].URL != "http://10.0.2.2:8080/replica" {
		t.Errorf("two peers: %+v, %v", b, err)
	}
	if b, err := ParseBoot(bootGet(nil), bootOpt, dir); b != nil || err != nil {
		t.Errorf("no options: %+v, %v; want nil, nil", b, err)
	}

	for _, tc := range []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"peer": "home"}, "nymote.peer=home: want NAME=URL"},
		{map[string]string{"peer": "home="}, "nymote.peer=home=: want NAME=URL"},
		{map[string]string{"peer": "home=ftp://x/replica"}, "nymote.peer=home=ftp://x/replica: replica: peer URL"},
		{map[string]string{"peer": "home=https://alice:pw@x/replica"}, "no user name or password"},
		{map[string]string{"peer": "home=https:///replica"}, "no host"},
		{map[string]string{"peer": "Home=https://x/replica"}, "node name"},
		{map[string]string{"peer": "a=https://x/replica,a=https://y/replica"}, "nymote.peer: peer a given twice"},
		{map[string]string{"peer": "a=https://x/replica", "peer-as": "a"}, "nymote.peer-as=a: this node's own name"},
		{map[string]string{"peer": "a=https://x/replica", "peer-as": "B!"}, "nymote.peer-as: replica: node name"},
		{map[string]string{"peer-as": "b"}, "nymote.peer-as needs nymote.peer=NAME=URL"},
		{map[string]string{"peer-token": "tok"}, "nymote.peer-token needs nymote.peer"},
		{map[string]string{"peer": "a=https://x/replica", "peer-token": "missing"}, "nymote.peer-token: open " + filepath.Join(dir, "missing")},
		{map[string]string{"peer": "a=https://x/replica", "peer-token": "short"}, "nymote.peer-token: replica: a token is at least 16"},
		{map[string]string{"peer": "a=https://x/replica,b=https://y/replica", "peer-token": "tok"}, "nymote.peer-token: one file for 2 peers"},
		{map[string]string{"peer": "a=https://x/replica", "peer-ca": "notpem"}, "nymote.peer-ca: the file holds no PEM certificate"},
		{map[string]string{"peer": "a=https://x/replica", "peer-ca": "nope.pem"}, "nymote.peer-ca: open"},
	} {
		b, err := ParseBoot(bootGet(tc.opts), bootOpt, dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %+v, %v; want an error with %q", tc.opts, b, err, tc.want)
		}
	}
}

// TestJoinClone: a node with an empty store and a peer from the boot
// options clones the peer's main (the same head), names itself, keeps the
// token as a node file, records the peer (a commit that the peer then
// merges), and syncs live; joining again (a later boot, a node with data)
// changes nothing but the URL the peer is reached at.
func TestJoinClone(t *testing.T) {
	ctx := context.Background()
	a := newNode(t, "a")
	for i := range 3 {
		if _, err := a.st.Update(ctx, store.CommitOptions{Message: "w"}, func(tx *store.Tx) error {
			return tx.Put("data/"+string(rune('x'+i)), []byte("from a"))
		}); err != nil {
			t.Fatal(err)
		}
	}
	// a knows b (b's endpoint is not served here: a takes b's pushes).
	if _, err := AddPeer(ctx, a.st, "b", "http://127.0.0.1:9/replica", AddOptions{Token: testToken}); err != nil {
		t.Fatal(err)
	}
	a.start(t, Options{Poll: time.Hour, Retry: time.Hour})
	aHead, _ := a.st.Resolve("")

	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "a.token"), []byte(testToken+"\n"), 0o600)
	b, err := ParseBoot(bootGet(map[string]string{"peer": "a=" + a.srv.URL + "/replica", "peer-as": "b", "peer-token": "a.token"}), bootOpt, data)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.InitData(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out bytes.Buffer
	if err := Join(ctx, st, b, Options{Stdout: &out}); err != nil {
		t.Fatalf("Join: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "nymote: replica: cloned from a: head "+aHead.String()) {
		t.Errorf("console:\n%s\nwant the clone line with a's head %s", out.String(), aHead)
	}
	if self, _ := Self(st); self != "b" {
		t.Errorf("self %q, want b", self)
	}
	if token(st, "a") != testToken {
		t.Errorf("token of a not kept as a node file")
	}
	log, err := st.Log(store.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 5 || log[1].Hash != aHead {
		// a's 3 writes and record of b, then b's record of a.
		t.Errorf("b's history: %d commits %v, want a's 4 and the peer record on top of a's head %s", len(log), log, aHead)
	}
	if got, err := st.Read("", "data/x"); err != nil || string(got) != "from a" {
		t.Errorf("cloned data/x: %q, %v", got, err)
	}
	ps, _ := Peers(st)
	if len(ps) != 2 || ps[0].Name != "a" || ps[0].URL != a.srv.URL+"/replica" || ps[1].Name != "b" {
		t.Errorf("peers %+v", ps)
	}

	// Live sync from here: b's record of a reaches a, a's writes reach b.
	e, err := Start(st, Options{Poll: time.Hour, Retry: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	waitFor(t, "a to have b's peer record", func() bool {
		_, err := a.st.Read("", PeersPrefix+"/a.json")
		return err == nil
	})
	if _, err := a.st.Update(ctx, store.CommitOptions{Message: "w"}, func(tx *store.Tx) error {
		return tx.Put("data/later", []byte("later"))
	}); err != nil {
		t.Fatal(err)
	}
	// a cannot reach b here: b pulls when kicked (its poll is an hour).
	waitFor(t, "b to have a's later write", func() bool {
		e.Kick("a")
		_, err := st.Read("", "data/later")
		return err == nil
	})
	e.Close()

	// A later boot with the same options: no clone, no commit.
	head, _ := st.Resolve("")
	out.Reset()
	if err := Join(ctx, st, b, Options{Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if h, _ := st.Resolve(""); h != head || strings.Contains(out.String(), "clon") {
		t.Errorf("second Join: head %s → %s, console %q; want nothing done", head, h, out.String())
	}
	// Another URL for a: reached there, the record unchanged.
	b2, _ := ParseBoot(bootGet(map[string]string{"peer": "a=https://a.example.org/replica"}), bootOpt, data)
	if err := Join(ctx, st, b2, Options{}); err != nil {
		t.Fatal(err)
	}
	if u := localURL(st, Peer{Name: "a", URL: a.srv.URL + "/replica"}); u != "https://a.example.org/replica" {
		t.Errorf("a reached at %s after a boot option with another URL", u)
	}
	if h, _ := st.Resolve(""); h != head {
		t.Errorf("a boot option's other URL made a commit")
	}
}

// TestJoinPeerRecordsOnly: a new node whose data directory got a plain
// `nymote peer add` (a commit of the peer's record, the token a node file)
// is still cloned at its first boot: it takes the peer's history (merged
// with its record), so that the two share history and sync; a store with
// data besides is not.
func TestJoinPeerRecordsOnly(t *testing.T) {
	ctx := context.Background()
	a := newNode(t, "a")
	put(t, a.st, "data/x", "from a")
	if _, err := AddPeer(ctx, a.st, "b", "http://127.0.0.1:9/replica", AddOptions{Token: testToken}); err != nil {
		t.Fatal(err)
	}
	a.start(t, Options{Poll: time.Hour, Retry: time.Hour})
	aHead, _ := a.st.Resolve("")
	url := a.srv.URL + "/replica"

	for _, withData := range []bool{false, true} {
		st, err := store.InitData(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := SetSelf(st, "b"); err != nil {
			t.Fatal(err)
		}
		if _, err := AddPeer(ctx, st, "a", url, AddOptions{Token: testToken}); err != nil {
			t.Fatal(err)
		}
		if withData {
			put(t, st, "data/own", "b's own")
		}
		before, _ := st.Resolve("")
		b, err := ParseBoot(bootGet(map[string]string{"peer": "a=" + url}), bootOpt, "")
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cctx, cancel := context.WithTimeout(ctx, time.Minute) // only a hung test
		err = Join(cctx, st, b, Options{Stdout: &out, Retry: 10 * time.Millisecond})
		cancel()
		if err != nil {
			t.Fatalf("Join: %v\n%s", err, out.String())
		}
		head, _ := st.Resolve("")
		if withData {
			if head != before || strings.Contains(out.String(), "clon") {
				t.Errorf("a store with data: head %s → %s, console %q; want nothing done", before, head, out.String())
			}
			continue
		}
		if !strings.Contains(out.String(), "holds only peer records") || !strings.Contains(out.String(), "cloned from a") {
			t.Errorf("console:\n%s\nwant the peer-records line and the clone", out.String())
		}
		if ok, _ := isAncestorOf(st, aHead, head); !ok {
			t.Errorf("b's main %s does not hold a's head %s", head, aHead)
		}
		if ok, _ := isAncestorOf(st, before, head); !ok {
			t.Errorf("b's main %s dropped its own record commit %s", head, before)
		}
		if read(st, "data/x") != "from a" {
			t.Error("b lacks a's data")
		}
		if ps, _ := Peers(st); len(ps) != 2 {
			t.Errorf("peers %+v, want a and b", ps)
		}
		// a takes b's push now (shared history).
		if err := st.Push(ctx, store.Remote{URL: url + "/git", Username: "b", Password: testToken}, store.SyncOptions{RemoteBranch: FromBranch("b")}); err != nil {
			t.Errorf("b's push to a after the clone: %v", err)
		}
		// A second boot does nothing.
		out.Reset()
		if err := Join(ctx, st, b, Options{Stdout: &out}); err != nil {
			t.Fatal(err)
		}
		if h, _ := st.Resolve(""); h != head || strings.Contains(out.String(), "clon") {
			t.Errorf("second Join: head %s → %s, console %q; want nothing done", head, h, out.String())
		}
	}
}

// TestJoinRefusals: no name for this node, a peer without a token, a peer
// that is this node: refused before anything is written, naming the option.
func TestJoinRefusals(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		opts map[string]string
		self string
		want string
	}{
		{map[string]string{"peer": "a=https://a.invalid/replica"}, "", "nymote.peer: this node has no name yet: give it one with nymote.peer-as=NAME"},
		{map[string]string{"peer": "a=https://a.invalid/replica", "peer-as": "b"}, "", "nymote.peer: peer a: no token on this node: give nymote.peer-token=FILE"},
		{map[string]string{"peer": "a=https://a.invalid/replica"}, "a", `nymote.peer: "a" is this node's own name`},
	} {
		st, err := store.InitData(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if tc.self != "" {
			SetSelf(st, tc.self)
		}
		b, err := ParseBoot(bootGet(tc.opts), bootOpt, "")
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute) // only a hung test
		err = Join(cctx, st, b, Options{})
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.opts, err, tc.want)
		}
		if h, _ := st.Resolve(""); !h.IsZero() {
			t.Errorf("%v: a commit was made", tc.opts)
		}
		st.Close()
	}
}
