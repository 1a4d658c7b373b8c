package caldav_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/calendar/caldav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
)

// hung is the bound past which a request counts as hung: it only fails a
// test whose request never comes back (such as one stuck in the
// recurrence library), however loaded the machine.
const hung = 2 * time.Minute

// send makes one request as user on a connection of its own, and is safe
// to call from any goroutine.
func send(s *davtest.Server, user, method, path, body string, headers ...string) (davtest.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), hung)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, strings.NewReader(body))
	if err != nil {
		return davtest.Response{}, err
	}
	req.SetBasicAuth(user, davtest.Users[user])
	req.Close = true
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return davtest.Response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return davtest.Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, err
}

// event is a VEVENT with the given UID and DTSTART and RRULE lines.
func ruleEvent(uid, start, rule string) string {
	return ics(fmt.Sprintf("BEGIN:VEVENT\nUID:%s\nDTSTAMP:20260101T000000Z\nDTSTART:%s\nDURATION:PT1H\nRRULE:%s\nSUMMARY:%s\nEND:VEVENT", uid, start, rule, uid))
}

// hostileRules are recurrence rules that made rrule-go loop forever, panic,
// or walk millions of days for each occurrence (issue 21, H3).
var hostileRules = []struct{ name, start, rule, why string }{
	{"hourly step misses BYHOUR", "20260105T000000Z", "FREQ=HOURLY;INTERVAL=24;BYHOUR=1", "never reaches"},
	{"secondly step misses BYSECOND", "20260105T000000Z", "FREQ=SECONDLY;INTERVAL=60;BYSECOND=1", "never reaches"},
	{"minutely step misses BYMINUTE", "20260105T000700Z", "FREQ=MINUTELY;INTERVAL=10;BYMINUTE=5", "never reaches"},
	{"year 0000", "00000105T000000Z", "FREQ=WEEKLY", "year 0"},
	{"no such day", "20260105T000000Z", "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30;BYHOUR=23;BYMINUTE=59", "no occurrence"},
	{"daily step misses BYDAY", "20260105T000000Z", "FREQ=DAILY;INTERVAL=7;BYDAY=TU", "no occurrence"},
	{"hourly phase misses BYDAY", "20260105T000000Z", "FREQ=HOURLY;INTERVAL=7;BYHOUR=0;BYDAY=TU", "no occurrence"},
	{"secondly every 28 years", "20260105T000000Z", "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYHOUR=23;BYMINUTE=59;BYSECOND=59", "coarser FREQ"},
	{"BYSETPOS beyond the set", "20260105T000000Z", "FREQ=MINUTELY;BYSETPOS=2;BYHOUR=23", "BYSETPOS"},
	{"huge INTERVAL", "20260105T000000Z", "FREQ=SECONDLY;INTERVAL=9223372036854775807", "INTERVAL"},
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// settle waits (up to hung) until no more goroutines run than base+slack.
func settle(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(hung)
	for runtime.NumGoroutine() > base+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines still running (baseline %d):\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHostileRules replays H3: every hostile rule PUT in parallel over
// HTTP is refused with CALDAV:valid-calendar-object-resource and a message
// naming the RRULE, a legitimate client is served meanwhile, no goroutine
// is left running, and the store stays whole.
func TestHostileRules(t *testing.T) {
	s := davtest.Start(t, caldav.New(0))
	base := runtime.NumGoroutine()
	cpu0 := cpuTime(t)
	type result struct {
		i   int
		r   davtest.Response
		err error
	}
	results := make(chan result, len(hostileRules))
	for i, h := range hostileRules {
		go func() {
			r, err := send(s, "alice", "PUT", fmt.Sprintf("/alice/default/h%d.ics", i), ruleEvent(fmt.Sprintf("h%d", i), h.start, h.rule), "Content-Type", "text/calendar")
			results <- result{i, r, err}
		}()
	}
	// A legitimate client, meanwhile.
	legit := ics(single)
	if r, err := send(s, "bob", "PUT", "/bob/default/dentist.ics", legit, "Content-Type", "text/calendar"); err != nil || r.Status != 201 {
		t.Fatalf("legitimate PUT: %v %d %s", err, r.Status, r.Body)
	}
	if r, err := send(s, "bob", "GET", "/bob/default/dentist.ics", ""); err != nil || r.Status != 200 || r.Body != legit {
		t.Fatalf("legitimate GET: %v %d %s", err, r.Status, r.Body)
	}
	for range hostileRules {
		res := <-results
		h := hostileRules[res.i]
		t.Run(h.name, func(t *testing.T) {
			if res.err != nil {
				t.Fatalf("RRULE:%s: %v", h.rule, res.err)
			}
			if res.r.Status != http.StatusBadRequest || !strings.Contains(res.r.Body, "valid-calendar-object-resource") ||
				!strings.Contains(res.r.Body, "RRULE") || !strings.Contains(res.r.Body, h.why) {
				t.Errorf("RRULE:%s: got %d %s, want 400 valid-calendar-object-resource saying %q", h.rule, res.r.Status, res.r.Body, h.why)
			}
		})
	}
	settle(t, base)
	t.Logf("%d hostile PUTs: %v of CPU in all (%v each)", len(hostileRules), cpuTime(t)-cpu0, (cpuTime(t)-cpu0)/time.Duration(len(hostileRules)))
	for i := range hostileRules {
		if r, err := send(s, "alice", "GET", fmt.Sprintf("/alice/default/h%d.ics", i), ""); err != nil || r.Status != 404 {
			t.Errorf("refused object h%d: %v %d", i, err, r.Status)
		}
	}
	fsck(t, s)
}

func fsck(t *testing.T, s *davtest.Server) {
	t.Helper()
	if b, err := exec.Command("git", "--git-dir", s.Store.Path(), "fsck", "--strict").CombinedOutput(); err != nil {
		t.Fatalf("git fsck: %v\n%s", err, b)
	}
}

// lenient is the CalDAV kind without its PUT checks: it stores what an
// older version, a replica or a git push might have stored.
type lenient struct{ *caldav.Kind }

func (l lenient) Validate(data []byte, c *dav.Collection) (string, error) {
	cal, err := caldav.Parse(data)
	if err != nil {
		return "", err
	}
	return cal.Children[0].Props.Get("UID").Value, nil
}

// TestStoredHostileRules: objects with hostile rules already in the store
// (accepted before the checks existed) do not hang a calendar-query, a
// free-busy-query or an expansion: they match no time-range, and the
// legitimate object next to them still does.
func TestStoredHostileRules(t *testing.T) {
	s := davtest.Start(t, lenient{caldav.New(0)})
	for i, h := range hostileRules {
		if r, err := send(s, "alice", "PUT", fmt.Sprintf("/alice/default/h%d.ics", i), ruleEvent(fmt.Sprintf("h%d", i), h.start, h.rule), "Content-Type", "text/calendar"); err != nil || r.Status != 201 {
			t.Fatalf("storing %s: %v %d %s", h.rule, err, r.Status, r.Body)
		}
	}
	if r, err := send(s, "alice", "PUT", "/alice/default/dentist.ics", ics(single), "Content-Type", "text/calendar"); err != nil || r.Status != 201 {
		t.Fatalf("PUT: %v %d", err, r.Status)
	}
	base := runtime.NumGoroutine()
	rng := `<C:time-range start="20260101T000000Z" end="20270101T000000Z"/>`
	for _, tc := range []struct{ name, body string }{
		{"calendar-query", fmt.Sprintf(calQuery, "<D:getetag/>", `<C:comp-filter name="VEVENT">`+rng+`</C:comp-filter>`)},
		{"expand", fmt.Sprintf(calQuery, `<C:calendar-data><C:expand start="20260101T000000Z" end="20270101T000000Z"/></C:calendar-data>`, `<C:comp-filter name="VEVENT">`+rng+`</C:comp-filter>`)},
		{"free-busy-query", `<?xml version="1.0"?><C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav">` + rng + `</C:free-busy-query>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := send(s, "alice", "REPORT", "/alice/default/", tc.body, "Depth", "1")
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "free-busy-query" {
				if r.Status != 200 || !strings.Contains(r.Body, "FREEBUSY;FBTYPE=BUSY:20260310T080000Z/20260310T090000Z") {
					t.Errorf("got %d %s", r.Status, r.Body)
				}
				return
			}
			if r.Status != 207 || !strings.Contains(r.Body, "/alice/default/dentist.ics") || strings.Contains(r.Body, "/alice/default/h") {
				t.Errorf("got %d %s; want only dentist.ics", r.Status, r.Body)
			}
		})
	}
	settle(t, base)
	fsck(t, s)
}

// TestQueryCosts replays M4: a filter beyond the size cap is refused before
// any object is read, and a query whose filters times objects times
// occurrences exceed the work budget is answered 507 with a message, while
// a small query over the same objects is served.
func TestQueryCosts(t *testing.T) {
	s := davtest.Start(t, caldav.New(0))
	// Every second from 2020: each expansion to a range two days later
	// steps through 172,800 occurrences.
	for i := range 3 {
		if r, err := send(s, "alice", "PUT", fmt.Sprintf("/alice/default/s%d.ics", i), ruleEvent(fmt.Sprintf("s%d", i), "20200101T000000Z", "FREQ=SECONDLY"), "Content-Type", "text/calendar"); err != nil || r.Status != 201 {
			t.Fatalf("PUT: %v %d %s", err, r.Status, r.Body)
		}
	}
	many := strings.Repeat(`<C:prop-filter name="SUMMARY"><C:text-match>s</C:text-match></C:prop-filter>`, 40)
	var ranges strings.Builder
	for i := range 20 {
		fmt.Fprintf(&ranges, `<C:comp-filter name="VEVENT"><C:time-range start="20200101T%02d0000Z" end="20200103T000000Z"/></C:comp-filter>`, i)
	}
	deep := strings.Repeat(`<C:comp-filter name="VEVENT">`, 12) + strings.Repeat(`</C:comp-filter>`, 12)
	for _, tc := range []struct {
		name, filter string
		status       int
		want         string
	}{
		{"small query", `<C:comp-filter name="VEVENT"><C:time-range start="20200101T000000Z" end="20200101T010000Z"/></C:comp-filter>`, 207, "/alice/default/s2.ics"},
		{"too many filter elements", `<C:comp-filter name="VEVENT">` + many + `</C:comp-filter>`, 403, "supported-filter"},
		{"too deep", deep, 403, "supported-filter"},
		{"over the work budget", ranges.String(), 507, "units of work"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := send(s, "alice", "REPORT", "/alice/default/", fmt.Sprintf(calQuery, "<D:getetag/>", tc.filter), "Depth", "1")
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tc.status || !strings.Contains(r.Body, tc.want) {
				t.Errorf("got %d %s, want %d with %q", r.Status, r.Body, tc.status, tc.want)
			}
		})
	}
	fsck(t, s)
}

// TestRenderBudget replays the last finding of issue 21 on calendar-data:
// an expand inside calendar-multiget, sync-collection or PROPFIND renders
// every object it names on one work budget for the whole request, so that
// many hostile-but-accepted recurring objects (each one expansion of
// 172,800 steps, about 0.2 s of CPU) are answered 507 with a message
// instead of costing N times that; a multiget of a few is served.
func TestRenderBudget(t *testing.T) {
	s := davtest.Start(t, caldav.New(0))
	const n = 16 // 16 x 172,800 steps: beyond the budget of 2,000,000
	var hrefs strings.Builder
	for i := range n {
		// A second long every second: the expansion below yields one
		// occurrence, a small response (none of it sent before the 507).
		ev := ics(fmt.Sprintf("BEGIN:VEVENT\nUID:s%d\nDTSTAMP:20260101T000000Z\nDTSTART:20200101T000000Z\nDURATION:PT1S\nRRULE:FREQ=SECONDLY\nEND:VEVENT", i))
		if r, err := send(s, "alice", "PUT", fmt.Sprintf("/alice/default/s%d.ics", i), ev, "Content-Type", "text/calendar"); err != nil || r.Status != 201 {
			t.Fatalf("PUT: %v %d %s", err, r.Status, r.Body)
		}
		fmt.Fprintf(&hrefs, "<D:href>/alice/default/s%d.ics</D:href>", i)
	}
	// One occurrence each, two days of seconds stepped through to it.
	const expand = `<D:prop><D:getetag/><C:calendar-data><C:expand start="20200103T000000Z" end="20200103T000001Z"/></C:calendar-data></D:prop>`
	const ns = `xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"`
	multiget := func(hrefs string) string {
		return `<?xml version="1.0"?><C:calendar-multiget ` + ns + `>` + expand + hrefs + `</C:calendar-multiget>`
	}
	const budget = "units of work to expand"
	for _, tc := range []struct {
		name, method, body string
		status             int
		want               string
	}{
		{"multiget of two", "REPORT", multiget("<D:href>/alice/default/s0.ics</D:href><D:href>/alice/default/s1.ics</D:href>"), 207, "DTSTART:20200103T000000Z"},
		{"multiget of all", "REPORT", multiget(hrefs.String()), 507, budget},
		{"sync-collection", "REPORT", `<?xml version="1.0"?><D:sync-collection ` + ns + `><D:sync-token/><D:sync-level>1</D:sync-level>` + expand + `</D:sync-collection>`, 507, budget},
		{"PROPFIND", "PROPFIND", `<?xml version="1.0"?><D:propfind ` + ns + `>` + expand + `</D:propfind>`, 507, budget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := send(s, "alice", tc.method, "/alice/default/", tc.body, "Depth", "1", "Content-Type", "application/xml")
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tc.status || !strings.Contains(r.Body, tc.want) {
				t.Errorf("got %d %.600s, want %d with %q", r.Status, r.Body, tc.status, tc.want)
			}
		})
	}
	fsck(t, s)
}

// TestRenderDataContextEnds: rendering stops once its context ends (the
// client went away), with the context's error.
func TestRenderDataContextEnds(t *testing.T) {
	k := caldav.New(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, err := dav.ParseXML(strings.NewReader(`<C:calendar-data xmlns:C="urn:ietf:params:xml:ns:caldav"><C:expand start="20200103T000000Z" end="20200103T000001Z"/></C:calendar-data>`))
	if err != nil {
		t.Fatal(err)
	}
	o := &dav.Object{Name: "s.ics", Data: []byte(ruleEvent("s", "20200101T000000Z", "FREQ=SECONDLY"))}
	_, err = k.RenderDataContext(k.RenderContext(ctx), &dav.Collection{}, o, req)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("RenderDataContext in an ended context: %v, want context.Canceled", err)
	}
	if _, err := k.RenderDataContext(k.RenderContext(context.Background()), &dav.Collection{}, o, req); err != nil {
		t.Errorf("RenderDataContext: %v", err)
	}
}
