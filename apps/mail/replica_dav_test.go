package main

import (
	"encoding/xml"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/internal/dav/davtest"
	"github.com/nymote/nymote/replica"
)

// davListing is what a DAV client keeps of a collection: its objects'
// names and ETags.
type davListing map[string]string

// davSync sends an RFC 6578 sync-collection REPORT with token ("" for all)
// to nd's collection alice/default of kind and returns the status, the
// new token and the responses (name to ETag, "" for an object gone).
func davSync(t *testing.T, nd *rnode, kind, token string) (int, string, map[string]string, string) {
	t.Helper()
	body := `<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>` + token +
		`</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
	req, _ := http.NewRequest("REPORT", "http://"+nd.addrs[kind]+"/alice/default/", strings.NewReader(body))
	req.SetBasicAuth("alice", testPassword)
	req.Header.Set("Content-Type", "application/xml")
	resp, err := davClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %s REPORT: %v", nd.name, kind, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusMultiStatus {
		return resp.StatusCode, "", nil, string(raw)
	}
	var ms struct {
		Responses []struct {
			Href     string `xml:"DAV: href"`
			Status   string `xml:"DAV: status"`
			Propstat []struct {
				ETag   string `xml:"DAV: prop>getetag"`
				Status string `xml:"DAV: status"`
			} `xml:"DAV: propstat"`
		} `xml:"DAV: response"`
		Token string `xml:"DAV: sync-token"`
	}
	if err := xml.Unmarshal(raw, &ms); err != nil {
		t.Fatalf("%s: %s REPORT: %v\n%s", nd.name, kind, err, raw)
	}
	out := map[string]string{}
	for _, r := range ms.Responses {
		if strings.HasSuffix(r.Href, "/") {
			continue // the collection
		}
		name := path.Base(r.Href)
		if strings.Contains(r.Status, " 404 ") {
			out[name] = ""
			continue
		}
		for _, ps := range r.Propstat {
			if strings.Contains(ps.Status, " 200 ") && ps.ETag != "" {
				out[name] = ps.ETag
			}
		}
		if out[name] == "" {
			t.Fatalf("%s: %s REPORT: %s without an ETag\n%s", nd.name, kind, r.Href, raw)
		}
	}
	return resp.StatusCode, ms.Token, out, string(raw)
}

// davAll is a full listing of nd's collection and its sync token.
func davAll(t *testing.T, nd *rnode, kind string) (davListing, string) {
	t.Helper()
	code, tok, got, raw := davSync(t, nd, kind, "")
	if code != http.StatusMultiStatus {
		t.Fatalf("%s: %s: full listing: %d %s", nd.name, kind, code, raw)
	}
	return got, tok
}

// davConverged waits until both nodes list the same objects with the same
// ETags, including every name in want; the bound only fails a hung test.
func davConverged(t *testing.T, nodes []*rnode, kind string, want ...string) davListing {
	t.Helper()
	var a, b davListing
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		a, _ = davAll(t, nodes[0], kind)
		b, _ = davAll(t, nodes[1], kind)
		ok := maps.Equal(a, b)
		for _, n := range want {
			if _, has := a[n]; !has {
				ok = false
			}
		}
		if ok {
			return a
		}
	}
	t.Fatalf("%s: the nodes do not converge: %s %v, %s %v (want %v among them)", kind, nodes[0].name, a, nodes[1].name, b, want)
	return nil
}

// apply applies a sync-collection answer to what a client keeps.
func (l davListing) apply(changes map[string]string) {
	for n, etag := range changes {
		if etag == "" {
			delete(l, n)
		} else {
			l[n] = etag
		}
	}
}

// TestReplicaDAVClientSwitchesNode (issue 16): a CardDAV or CalDAV client
// that syncs with one replica and then with the other converges, with the
// two ways clients sync:
//
//   - sync-collection (RFC 6578, as phones sync): a token from n0 given to
//     n1, once n1 holds n0's changes, lists what changed on both nodes
//     since, and the client's names and ETags then equal a full listing of
//     either node (an object has the same ETag on every node); the same
//     from n1 back to n0. A token that n0 does not hold yet (made on n1
//     while the link is cut) is refused with DAV:valid-sync-token, and the
//     client's full listing converges after the heal.
//   - vdirsyncer (Debian package; by ETags): a folder synced with n0 and
//     then, the URL changed, with n1 has nothing to copy; a change made on
//     n0 reaches it through n1, and its own change reaches n0 through n1.
func TestReplicaDAVClientSwitchesNode(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed (apt-get install -y git); skipping")
	}
	nodes, links := setupReplicas(t, 2, 1, replica.Options{})
	for _, k := range davKinds {
		t.Run(k.name, func(t *testing.T) {
			put := func(nd *rnode, name, text string) {
				t.Helper()
				if c := davDo(t, nd, k.name, "PUT", name+k.ext, k.body(text)); c != http.StatusCreated && c != http.StatusNoContent {
					t.Fatalf("%s: PUT %s: %d", nd.name, name, c)
				}
			}
			client, tok := davAll(t, nodes[0], k.name)
			if _, ok := client["init"+k.ext]; !ok {
				t.Fatalf("n0 lists %v, without the object made at set-up", client)
			}
			// Changes on both nodes; the client saw none of them.
			put(nodes[0], "a1", "a1")
			put(nodes[1], "b1", "b1")
			// An edit of the object made at set-up (same UID).
			edited := strings.Replace(k.body("init-"+k.name), "\r\nEND:", "\r\nX-NYMOTE-EDIT:1\r\nEND:", 1)
			if c := davDo(t, nodes[1], k.name, "PUT", "init"+k.ext, edited); c != http.StatusNoContent {
				t.Fatalf("n1: PUT init (an edit): %d", c)
			}
			want := davConverged(t, nodes, k.name, "a1"+k.ext, "b1"+k.ext)
			if want["init"+k.ext] == client["init"+k.ext] {
				t.Fatalf("the edit on n1 did not change init's ETag: %v", want)
			}
			// The client now syncs with n1, with n0's token.
			code, tok1, changes, raw := davSync(t, nodes[1], k.name, tok)
			if code != http.StatusMultiStatus {
				t.Fatalf("n1 refuses n0's token once it holds n0's changes: %d %s", code, raw)
			}
			client.apply(changes)
			if !maps.Equal(client, want) {
				t.Fatalf("client after n0's token on n1: %v, want %v (changes %v)", client, want, changes)
			}
			// And back to n0 with n1's token.
			put(nodes[0], "a2", "a2")
			if c := davDo(t, nodes[0], k.name, "DELETE", "b1"+k.ext, ""); c != http.StatusNoContent {
				t.Fatalf("n0: DELETE b1: %d", c)
			}
			want = davConverged(t, nodes, k.name, "a2"+k.ext)
			if _, ok := want["b1"+k.ext]; ok {
				t.Fatalf("b1 deleted on n0 is still listed: %v", want)
			}
			code, _, changes, raw = davSync(t, nodes[0], k.name, tok1)
			if code != http.StatusMultiStatus {
				t.Fatalf("n0 refuses n1's token once it holds n1's changes: %d %s", code, raw)
			}
			client.apply(changes)
			if !maps.Equal(client, want) {
				t.Fatalf("client after n1's token on n0: %v, want %v (changes %v)", client, want, changes)
			}
			// A token n0 does not hold: made on n1 while they are cut apart.
			for _, l := range []*replica.FaultProxy{links[0][1], links[1][0]} {
				l.SetCut(true)
			}
			put(nodes[1], "c1", "c1")
			_, tok2 := davAll(t, nodes[1], k.name)
			code, _, _, raw = davSync(t, nodes[0], k.name, tok2)
			if code != http.StatusForbidden || !strings.Contains(raw, "valid-sync-token") {
				t.Fatalf("n0 given a token of a commit it does not hold: %d %s, want 403 valid-sync-token", code, raw)
			}
			client, _ = davAll(t, nodes[0], k.name) // the client starts over
			for _, l := range []*replica.FaultProxy{links[0][1], links[1][0]} {
				l.SetCut(false)
			}
			want = davConverged(t, nodes, k.name, "c1"+k.ext)
			_, _, changes, _ = davSync(t, nodes[1], k.name, tok2)
			client, _ = davAll(t, nodes[0], k.name)
			if !maps.Equal(client, want) {
				t.Fatalf("client after the heal: %v, want %v", client, want)
			}
			if len(changes) != 0 {
				t.Errorf("n1's own token after the heal lists changes %v: nothing changed there since", changes)
			}
			vdirsyncerSwitch(t, nodes, k, want)
		})
	}
}

// vdirsyncerSwitch syncs a folder with nodes[0] and then with nodes[1]
// (TestReplicaDAVClientSwitchesNode). have is what both nodes list.
func vdirsyncerSwitch(t *testing.T, nodes []*rnode, k davKind, have davListing) {
	bin, err := exec.LookPath("vdirsyncer")
	if err != nil {
		t.Log("vdirsyncer is not installed (apt-get install -y vdirsyncer): skipping its part")
		return
	}
	dir := t.TempDir()
	local := filepath.Join(dir, "local")
	cfg := filepath.Join(dir, "config") // VdirsyncerConfig's
	storage := map[string]string{"contacts": "carddav", "calendar": "caldav"}[k.name]
	point := func(nd *rnode) {
		davtest.VdirsyncerConfig(t, dir, storage, "http://"+nd.addrs[k.name]+"/", k.ext, testPassword, "")
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-c", cfg}, args...)...)
		cmd.Stdin = strings.NewReader(strings.Repeat("y\n", 10))
		cmd.Env = append(os.Environ(), "HOME="+dir, "LC_ALL=C.UTF-8", "LANG=C.UTF-8")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("vdirsyncer %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	files := func() []string {
		ents, err := os.ReadDir(filepath.Join(local, "default"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	point(nodes[0])
	run("discover", "p")
	run("sync")
	// (The folder names its files by UID, the server by the name a
	// client PUT them under.)
	if got := files(); len(got) != len(have) {
		t.Fatalf("vdirsyncer with n0: local %v, want the %d objects %v", got, len(have), slices.Sorted(maps.Keys(have)))
	}
	// The same folder, now synced with n1: every object there has the
	// ETag it had on n0, so there is nothing to copy.
	point(nodes[1])
	run("discover", "p")
	if out := run("sync"); strings.Contains(out, "Copying") || strings.Contains(out, "Deleting") {
		t.Fatalf("vdirsyncer switched to n1 copies objects it has:\n%s", out)
	}
	// A change on n0 reaches the folder through n1, and the folder's own
	// change reaches n0 through n1.
	if c := davDo(t, nodes[0], k.name, "PUT", "v1"+k.ext, k.body("v1")); c != http.StatusCreated {
		t.Fatalf("n0: PUT v1: %d", c)
	}
	davConverged(t, nodes, k.name, "v1"+k.ext)
	if out := run("sync"); !strings.Contains(out, "Copying") {
		// (What the check above looks for.)
		t.Fatalf("vdirsyncer's sync that brought v1 does not say Copying:\n%s", out)
	}
	if !slices.Contains(files(), "v1"+k.ext) {
		t.Fatalf("v1, made on n0, is not in the folder synced with n1: %v", files())
	}
	if err := os.WriteFile(filepath.Join(local, "default", "v2"+k.ext), []byte(k.body("v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	run("sync")
	davConverged(t, nodes, k.name, "v2"+k.ext)
}

// TestReplicaDAVConflictKept (issue 16): one contact and one event edited
// on two replicas cut apart, the same property on both; after the heal
// both nodes serve the same object: the winning value (the later REV, the
// higher SEQUENCE) and the other one in its NOTE or DESCRIPTION.
func TestReplicaDAVConflictKept(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed (apt-get install -y git); skipping")
	}
	nodes, links := setupReplicas(t, 2, 1, replica.Options{})
	versions := map[string][3]string{ // base, the winner (on n0), the loser (on n1)
		"contacts": {
			"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ann\r\nFN:Ann\r\nN:;Ann;;;\r\nREV:20260101T000000Z\r\nEND:VCARD\r\n",
			"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ann\r\nFN:Ann Archer\r\nN:;Ann;;;\r\nREV:20260105T000000Z\r\nEND:VCARD\r\n",
			"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ann\r\nFN:Ann Bowman\r\nN:;Ann;;;\r\nREV:20260104T000000Z\r\nEND:VCARD\r\n",
		},
		"calendar": {
			"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:dentist\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T090000Z\r\nSEQUENCE:0\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
			"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:dentist\r\nDTSTAMP:20260102T000000Z\r\nDTSTART:20260105T100000Z\r\nSEQUENCE:2\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
			"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:dentist\r\nDTSTAMP:20260103T000000Z\r\nDTSTART:20260105T110000Z\r\nSEQUENCE:1\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		},
	}
	wants := map[string][]string{
		"contacts": {"FN:Ann Archer\r\n", "NOTE:Changed on two devices at once", "FN “Ann Bowman”"},
		"calendar": {"DTSTART:20260105T100000Z\r\n", "DESCRIPTION:Changed on two devices at once", "DTSTART “20260105T110000Z”"},
	}
	get := func(nd *rnode, kind, name string) string {
		req, _ := http.NewRequest("GET", "http://"+nd.addrs[kind]+"/alice/default/"+name, nil)
		req.SetBasicAuth("alice", testPassword)
		resp, err := davClient.Do(req)
		if err != nil {
			t.Fatalf("%s: GET %s: %v", nd.name, name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		// Unfolded, to look for text that a line fold may split.
		return strings.ReplaceAll(string(b), "\r\n ", "")
	}
	for _, k := range davKinds {
		t.Run(k.name, func(t *testing.T) {
			v, name := versions[k.name], "conflict"+k.ext
			if c := davDo(t, nodes[0], k.name, "PUT", name, v[0]); c != http.StatusCreated {
				t.Fatalf("n0: PUT: %d", c)
			}
			davConverged(t, nodes, k.name, name)
			for _, l := range []*replica.FaultProxy{links[0][1], links[1][0]} {
				l.SetCut(true)
			}
			if c := davDo(t, nodes[0], k.name, "PUT", name, v[1]); c != http.StatusNoContent {
				t.Fatalf("n0: PUT (edit): %d", c)
			}
			if c := davDo(t, nodes[1], k.name, "PUT", name, v[2]); c != http.StatusNoContent {
				t.Fatalf("n1: PUT (edit): %d", c)
			}
			for _, l := range []*replica.FaultProxy{links[0][1], links[1][0]} {
				l.SetCut(false)
			}
			// Merged (n0 serves the note; the bound only fails a hung
			// test), then both list the same ETag.
			for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(get(nodes[0], k.name, name), "Changed on two devices"); time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no merge after the heal:\n%s", get(nodes[0], k.name, name))
				}
			}
			davConverged(t, nodes, k.name, name)
			for _, nd := range nodes {
				body := get(nd, k.name, name)
				for _, w := range wants[k.name] {
					if !strings.Contains(body, w) {
						t.Errorf("%s serves, after the heal, without %q:\n%s", nd.name, w, body)
					}
				}
			}
		})
	}
}
