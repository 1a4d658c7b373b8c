package images

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/internal/testutil"
	"github.com/nymote/nymote/launch"
	"github.com/nymote/nymote/replica"
)

// TestBootDAVReplicas (issue 16): the contacts and the calendar
// appliances under QEMU (TCG) as replicas, as TestBootReplicas does for
// mail. For each app, node a has a data disk with the user alice and b
// recorded as its peer; node b is new (its certificate, the token shared
// with a and a's CA on its data disk) and boots with nymote.peer=a=URL
// nymote.peer-as=b nymote.peer-token=FILE nymote.peer-ca=FILE, so that its
// first sync clones a's store. An object PUT over CardDAV (CalDAV) on a
// is served by b, and one PUT on b is served by a, with alice's password
// set on a (its hash reaches b from a). The two apps run at once, two VMs
// each: about 15 s of wall time here besides the builds.
func TestBootDAVReplicas(t *testing.T) {
	needTool(t, "mkfs.ext4", "e2fsprogs")
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	for _, tc := range []struct {
		app, ext, ctype string
		body            func(uid string) string
	}{
		{"contacts", ".vcf", "text/vcard", func(uid string) string {
			return "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:" + uid + "\r\nFN:" + uid + "\r\nN:" + uid + ";;;;\r\nEND:VCARD\r\n"
		}},
		{"calendar", ".ics", "text/calendar", func(uid string) string {
			return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//nymote//test//EN\r\nBEGIN:VEVENT\r\nUID:" + uid +
				"\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260102T100000Z\r\nSUMMARY:" + uid + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
		}},
	} {
		t.Run(tc.app, func(t *testing.T) {
			t.Parallel()
			testBootDAVReplica(t, tc.app, tc.ext, tc.ctype, tc.body)
		})
	}
}

func testBootDAVReplica(t *testing.T, app, ext, ctype string, body func(uid string) string) {
	start := time.Now()
	ctx := context.Background()
	const token = "qemu-dav-replica-token-0123456789abcdef"
	const password = "correct horse"
	const board = "microvm-x86_64"

	a := &replicaNode{name: "a", board: board}
	b := &replicaNode{name: "b", board: board}
	for _, n := range []*replicaNode{a, b} {
		n.dir, n.m = build(t, app, n.board)
		n.https = testutil.FreeAddr(t)
		n.forwards = []launch.Forward{{Host: n.https, Guest: 443}}
		var err error
		if n.in, err = replica.NewFaultProxy(n.https, 1); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.in.Close)
	}
	t.Logf("%s images built in %v", app, time.Since(start).Round(time.Second))
	caA, caB := replicaPair(t, a, b, token, password, 128<<20, nil)

	t0 := time.Now()
	a.boot(t)
	b.boot(t)
	bctx, cancel := context.WithTimeout(ctx, 2*bootTimeout)
	defer cancel()
	a.wait(t, bctx, "nymote: "+app+" https listening on")
	b.wait(t, bctx, "nymote: replica: cloned from a: head ")
	b.wait(t, bctx, "nymote: "+app+": done copying the store; serving")
	t.Logf("%s: both booted, b cloned from a: %v", app, time.Since(t0).Round(time.Second))

	clients := map[*replicaNode]*http.Client{}
	for n, ca := range map[*replicaNode][]byte{a: caA, b: caB} {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			t.Fatal("CA PEM")
		}
		clients[n] = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	url := func(n *replicaNode, name string) string {
		return "https://" + n.https + "/alice/default/" + name + ext
	}
	put := func(n *replicaNode, uid string) {
		t.Helper()
		req, _ := http.NewRequest("PUT", url(n, uid), strings.NewReader(body(uid)))
		req.SetBasicAuth("alice", password)
		req.Header.Set("Content-Type", ctype)
		resp, err := clients[n].Do(req)
		if err != nil {
			t.Fatalf("%s: PUT %s on %s: %v", app, uid, n.name, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			msg, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: PUT %s on %s: %s: %s", app, uid, n.name, resp.Status, msg)
		}
	}
	// waitGet waits until n serves the object uid; the bound only fails
	// a hung test (b answers 401 until alice's password hash reaches it,
	// and 404 until the object does).
	waitGet := func(n *replicaNode, uid string) {
		t.Helper()
		var last string
		for deadline := time.Now().Add(4 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			req, _ := http.NewRequest("GET", url(n, uid), nil)
			req.SetBasicAuth("alice", password)
			resp, err := clients[n].Do(req)
			if err != nil {
				last = err.Error()
				continue
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(got), "UID:"+uid+"\r\n") {
				return
			}
			last = fmt.Sprintf("%s: %.200s", resp.Status, got)
		}
		t.Fatalf("%s: %s does not serve %s (last answer %s)\nconsole:\n%s", app, n.name, uid, last, tail(n.vm.Console(), 40))
	}
	t1 := time.Now()
	put(a, "made-on-a")
	waitGet(b, "made-on-a")
	t.Logf("%s: PUT on a, served by b: %v", app, time.Since(t1).Round(100*time.Millisecond))
	t2 := time.Now()
	put(b, "made-on-b")
	waitGet(a, "made-on-b")
	t.Logf("%s: PUT on b, served by a: %v", app, time.Since(t2).Round(100*time.Millisecond))
	a.powerOff(t)
	b.powerOff(t)
	t.Logf("%s: total %v", app, time.Since(start).Round(time.Second))
}
