package dav_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
	"github.com/nymote/nymote/store"
)

// The hostile-client suite (issue 21): each case replays a finding over
// real HTTP against an in-process server on loopback and checks that the
// process's peak memory (VmHWM, reset before the case) and the bytes it
// allocated stay within a budget, that the hostile request gets a clear
// answer, that a legitimate client is served meanwhile, and that nothing
// was lost (git fsck, and the objects are all there). The budgets are far
// below what the unbounded code took (a depth-10,000 PROPFIND: 1.4 GB).

// peakRSS returns the process's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Skip("no VmHWM in /proc/self/status")
	return 0
}

// resetPeakRSS frees what the heap holds and resets VmHWM to the current
// resident set (Linux: "5" in /proc/self/clear_refs).
func resetPeakRSS(t *testing.T) {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// budget measures fn: the growth of the peak RSS and the bytes allocated.
func budget(t *testing.T, maxRSS int64, maxAlloc uint64, fn func()) {
	t.Helper()
	resetPeakRSS(t)
	before, alloc0, start := peakRSS(t), totalAlloc(), time.Now()
	fn()
	grew, alloc := peakRSS(t)-before, totalAlloc()-alloc0
	t.Logf("peak RSS +%d MiB, allocated %d MiB, %v", grew>>20, alloc>>20, time.Since(start).Round(time.Millisecond))
	if grew > maxRSS {
		t.Errorf("peak RSS grew by %d MiB; the budget is %d MiB", grew>>20, maxRSS>>20)
	}
	if alloc > maxAlloc {
		t.Errorf("allocated %d MiB; the budget is %d MiB", alloc>>20, maxAlloc>>20)
	}
}

// legitimate runs a legitimate client's requests (bob lists his home and
// stores a card) while hostile runs, and fails if bob is not served within
// a bound that only a hung server misses.
func legitimate(t *testing.T, s *server, hostile func()) {
	t.Helper()
	done := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		hostile()
	}()
	go func() {
		var errs []string
		if r := s.Do("bob", "PROPFIND", "/bob/default/", "", "Depth", "1"); r.Status != 207 {
			errs = append(errs, fmt.Sprintf("PROPFIND: %d %s", r.Status, r.Body))
		}
		name := fmt.Sprintf("/bob/default/legit-%d.vcf", time.Now().UnixNano())
		if r := s.Do("bob", "PUT", name, vcf(name, "Legit"), "Content-Type", vcardType); r.Status != 201 {
			errs = append(errs, fmt.Sprintf("PUT: %d %s", r.Status, r.Body))
		}
		done <- strings.Join(errs, "; ")
	}()
	select {
	case e := <-done:
		if e != "" {
			t.Errorf("legitimate client: %s", e)
		}
	case <-time.After(3 * time.Minute):
		t.Errorf("legitimate client not served within 3 minutes")
	}
	wg.Wait()
}

// server is a server of startChecked; Do sends requests as davtest's Do.
type server struct {
	URL   string
	Store *store.Store
	t     *testing.T
}

type response struct {
	Status int
	Body   string
}

// Do sends a request as user with headers as alternating names and
// values; a failed round trip fails the test (not fatally: Do may run in
// a goroutine).
func (s *server) Do(user, method, path, body string, headers ...string) response {
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Error(err)
		return response{}
	}
	req.SetBasicAuth(user, davtest.Users[user])
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return s.send(req)
}

func (s *server) send(req *http.Request) response {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		s.t.Error(err)
		return response{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Error(err)
	}
	return response{Status: resp.StatusCode, Body: string(b)}
}

// startChecked starts a contacts server (as davtest.Start does, object
// limit 2048 bytes as in start) whose repository git fsck checks once the
// server and its store are closed: no background repack is then moving
// packs while git reads them.
func startChecked(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	st, err := store.InitData(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for u, p := range davtest.Users {
		if err := st.AddUser(ctx, u, p, store.GitNone); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := dav.Options{Store: st, Kind: carddav.New(2048), MaxObjectSize: 2048, Logger: slog.New(slog.DiscardHandler)}
	done := make(chan error, 1)
	go func() {
		done <- dav.Serve(ctx, dav.Config{Options: o, InsecureHTTP: true}, []dav.Listener{{Proto: "http", Listener: ln}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
		if _, err := exec.LookPath("git"); err != nil {
			t.Log("git is not installed (apt-get install -y git): no fsck")
			return
		}
		if out, err := exec.Command("git", "-C", st.Path(), "fsck", "--strict").CombinedOutput(); err != nil {
			t.Errorf("git fsck: %v\n%s", err, out)
		}
	})
	s := &server{URL: "http://" + ln.Addr().String(), Store: st, t: t}
	for _, u := range []string{"alice", "bob"} {
		s.Do(u, "PROPFIND", "/"+u+"/", "", "Depth", "0")
	}
	return s
}

func deepPropfind(depth int) string {
	return `<propfind xmlns="DAV:"><prop>` + strings.Repeat("<a>", depth) + strings.Repeat("</a>", depth) + `</prop></propfind>`
}

// TestHostileXML replays H4 (nested XML), M5 (text in many pieces) and
// oversized bodies.
func TestHostileXML(t *testing.T) {
	s := startChecked(t)
	tests := []struct {
		name     string
		method   string
		body     string
		want     int
		wantMsg  string
		maxRSS   int64
		maxAlloc uint64
		chunked  bool // no Content-Length: the limit applies as the body is read
	}{
		// H4: a 70 KB body took 1.39 GB.
		{"depth 10000", "PROPFIND", deepPropfind(10000), 400, "deeper than 64", 32 << 20, 32 << 20, false},
		// H4: a 1.4 MB body grew the calendar program to 6.7 GB.
		{"depth 200000", "PROPFIND", deepPropfind(200000), 400, "deeper than 64", 32 << 20, 32 << 20, false},
		// Many elements, each shallow: refused at the element limit.
		{"a million elements", "PROPFIND", `<propfind xmlns="DAV:"><prop>` + strings.Repeat("<a/>", 1000000) + `</prop></propfind>`, 400, "more than", 32 << 20, 48 << 20, false},
		// M5: 1.6 MB of text in 200,000 pieces (split by comments).
		{"text in pieces", "PROPFIND", `<propfind xmlns="DAV:"><prop><displayname>` + strings.Repeat("abc<!---->", 160000) + `</displayname></prop></propfind>`, 207, "", 32 << 20, 48 << 20, false},
		// A body over the limit is refused, not read whole.
		{"5 MB body", "PROPFIND", `<propfind xmlns="DAV:"><prop><displayname>` + strings.Repeat("x", 5<<20) + `</displayname></prop></propfind>`, 413, "larger than", 32 << 20, 48 << 20, false},
		{"5 MB body, chunked", "PROPFIND", `<propfind xmlns="DAV:"><prop><displayname>` + strings.Repeat("x", 5<<20) + `</displayname></prop></propfind>`, 413, "larger than", 32 << 20, 48 << 20, true},
		{"5 MB PUT, chunked", "PUT", vcf("big", strings.Repeat("x", 5<<20)), 413, "larger than", 32 << 20, 48 << 20, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			budget(t, tc.maxRSS, tc.maxAlloc, func() {
				legitimate(t, s, func() {
					path := "/alice/default/"
					if tc.method == "PUT" {
						path += "big.vcf"
					}
					if tc.chunked {
						r = doChunked(t, s, tc.method, path, tc.body)
					} else {
						r = s.Do("alice", tc.method, path, tc.body, "Depth", "0")
					}
				})
			})
			if r.Status != tc.want || !strings.Contains(r.Body, tc.wantMsg) {
				t.Errorf("got %d %q, want %d saying %q", r.Status, cut(r.Body), tc.want, tc.wantMsg)
			}
		})
	}
}

// doChunked sends a request as alice with a body of unknown length.
func doChunked(t *testing.T, s *server, method, path, body string) response {
	req, err := http.NewRequest(method, s.URL+path, io.MultiReader(strings.NewReader(body)))
	if err != nil {
		t.Error(err)
		return response{}
	}
	req.SetBasicAuth("alice", davtest.Users["alice"])
	req.Header.Set("Depth", "0")
	req.Header.Set("Content-Type", vcardType)
	return s.send(req)
}

func cut(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// fillCollection writes a plain collection /alice/p/ holding an address
// book /alice/p/a/ of n cards, in one commit straight into the store.
func fillCollection(t *testing.T, s *server, n int) {
	t.Helper()
	if r := s.Do("alice", "MKCOL", "/alice/p/", ""); r.Status != 201 {
		t.Fatalf("MKCOL: %d %s", r.Status, r.Body)
	}
	dir := "contacts/alice/c/p/c/a"
	_, err := s.Store.Update(context.Background(), store.CommitOptions{Message: "fill"}, func(tx *store.Tx) error {
		if err := tx.Put(dir+"/props.json", []byte(`{"type":"addressbook","created":"2026-01-01T00:00:00Z"}`+"\n")); err != nil {
			return err
		}
		for i := range n {
			name := fmt.Sprintf("c%d.vcf", i)
			if err := tx.Put(dir+"/o/"+store.Shard(name), []byte(vcf(name, strings.Repeat("N", 2000)))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func countObjects(t *testing.T, s *server, coll string) int {
	t.Helper()
	r := s.Do("alice", "PROPFIND", coll, `<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>`, "Depth", "1")
	if r.Status != 207 {
		t.Fatalf("PROPFIND %s: %d %s", coll, r.Status, cut(r.Body))
	}
	return strings.Count(r.Body, "<d:getetag>") - 1
}

// TestHostileCopy replays M6: COPY Depth infinity that doubles a
// collection with every two requests. The server refuses the copy that
// would pass its limit with 507 and a message, within the memory budget,
// and keeps everything it had.
func TestHostileCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("writes thousands of objects")
	}
	s := startChecked(t)
	const n = 3000
	fillCollection(t, s, n)
	refused := ""
	for i := 1; i <= 5 && refused == ""; i++ {
		t.Run(fmt.Sprintf("doubling %d", i), func(t *testing.T) {
			budget(t, 48<<20, 160<<20, func() {
				legitimate(t, s, func() {
					for _, step := range [][2]string{{"/alice/p/", fmt.Sprintf("/alice/t%d/", i)}, {fmt.Sprintf("/alice/t%d/", i), fmt.Sprintf("/alice/p/k%d/", i)}} {
						r := s.Do("alice", "COPY", step[0], "", "Destination", s.URL+step[1], "Depth", "infinity")
						switch r.Status {
						case 201:
						case 507:
							refused = r.Body
							return
						default:
							t.Errorf("COPY %s to %s: %d %s", step[0], step[1], r.Status, cut(r.Body))
							return
						}
					}
				})
			})
		})
	}
	if !strings.Contains(refused, "limit") {
		t.Errorf("the copies went on without a 507 naming the limit (last answer %q)", cut(refused))
	}
	if r := s.Do("alice", "MOVE", "/alice/p/", "", "Destination", s.URL+"/alice/moved/"); r.Status != 507 || !strings.Contains(r.Body, "limit") {
		t.Errorf("MOVE of the grown collection: got %d %q, want 507 naming the limit", r.Status, cut(r.Body))
	}
	if got := countObjects(t, s, "/alice/p/a/"); got != n {
		t.Errorf("the source address book holds %d cards, want %d", got, n)
	}
}

// TestHostileDeadProperties replays the Low finding: dead properties were
// not bounded, so PROPPATCH stored what PUT refuses. A property over the
// limit, and one property too many, are refused with 507 and a message;
// what was stored before stays.
func TestHostileDeadProperties(t *testing.T) {
	s := startChecked(t)
	if r := s.Do("alice", "PUT", "/alice/default/x.vcf", vcf("x", "X"), "Content-Type", vcardType); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	set := func(props string) string {
		return `<propertyupdate xmlns="DAV:" xmlns:z="urn:z"><set><prop>` + props + `</prop></set></propertyupdate>`
	}
	many := ""
	for i := range 200 {
		many += fmt.Sprintf("<z:p%d>v</z:p%d>", i, i)
	}
	tests := []struct {
		name, path, body string
		want             string
	}{
		{"small property", "/alice/default/x.vcf", set("<z:keep>kept</z:keep>"), "HTTP/1.1 200"},
		{"3 MB property on an object", "/alice/default/x.vcf", set("<z:big>" + strings.Repeat("x", 3<<20) + "</z:big>"), "HTTP/1.1 507"},
		{"3 MB property on a collection", "/alice/default/", set("<z:big>" + strings.Repeat("x", 3<<20) + "</z:big>"), "HTTP/1.1 507"},
		{"200 properties", "/alice/default/x.vcf", set(many), "HTTP/1.1 507"},
		{"3 MB description", "/alice/default/", set(`<C:addressbook-description xmlns:C="urn:ietf:params:xml:ns:carddav">` + strings.Repeat("x", 3<<20) + "</C:addressbook-description>"), "HTTP/1.1 507"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			budget(t, 48<<20, 64<<20, func() {
				legitimate(t, s, func() { r = s.Do("alice", "PROPPATCH", tc.path, tc.body) })
			})
			if r.Status != 207 || !strings.Contains(r.Body, tc.want) {
				t.Errorf("got %d %q, want 207 with %s", r.Status, cut(r.Body), tc.want)
			}
			if tc.want == "HTTP/1.1 507" && !strings.Contains(r.Body, "limit") {
				t.Errorf("the refusal does not name the limit: %s", cut(r.Body))
			}
		})
	}
	r := s.Do("alice", "PROPFIND", "/alice/default/x.vcf", `<propfind xmlns="DAV:" xmlns:z="urn:z"><prop><z:keep/><z:big/></prop></propfind>`, "Depth", "0")
	if !strings.Contains(r.Body, "kept") || strings.Contains(r.Body, "xxxx") {
		t.Errorf("after the refusals: %s", cut(r.Body))
	}
}

// TestHostileResponses: responses are streamed, so a listing with every
// object's data, or a multiget naming one object 40,000 times, costs the
// server a bounded buffer, not the size of the response.
func TestHostileResponses(t *testing.T) {
	if testing.Short() {
		t.Skip("writes thousands of objects")
	}
	s := startChecked(t)
	const n = 20000 // 2 KB each: a 45 MB listing
	fillCollection(t, s, n)
	listing := `<propfind xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><prop><getetag/><C:address-data/></prop></propfind>`
	multiget := `<C:addressbook-multiget xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><prop><getetag/><C:address-data/></prop>` +
		strings.Repeat("<href>/alice/p/a/c1.vcf</href>", 40000) + `</C:addressbook-multiget>`
	tests := []struct {
		name, method, body string
		minBytes, maxBytes int64
		maxRSS             int64
	}{
		// The heap churns (each object is read and escaped), but
		// holds one object and a 256 KB buffer at a time.
		{"listing with data", "PROPFIND", listing, n * 2000, 1 << 30, 48 << 20},
		{"multiget of one object 40,000 times", "REPORT", multiget, 2000, 8000, 32 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var status int
			var size int64
			budget(t, tc.maxRSS, 600<<20, func() {
				legitimate(t, s, func() {
					req, err := http.NewRequest(tc.method, s.URL+"/alice/p/a/", strings.NewReader(tc.body))
					if err != nil {
						t.Error(err)
						return
					}
					req.SetBasicAuth("alice", davtest.Users["alice"])
					req.Header.Set("Depth", "1")
					resp, err := http.DefaultTransport.RoundTrip(req)
					if err != nil {
						t.Error(err)
						return
					}
					defer resp.Body.Close()
					status = resp.StatusCode
					size, err = io.Copy(io.Discard, resp.Body)
					if err != nil {
						t.Error(err)
					}
				})
			})
			if status != 207 || size < tc.minBytes || size > tc.maxBytes {
				t.Errorf("got %d with %d bytes, want 207 with %d to %d bytes", status, size, tc.minBytes, tc.maxBytes)
			}
		})
	}
}
