package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	user     = "alice"
	password = "alice-bench-password"
)

// client is the one HTTP client every server gets: keep-alive, basic auth.
// It counts the time spent waiting for answers (from sending a request to
// having read the whole body), which is what timed phases report: the
// client's own decoding and checking of the answers is left out, the same
// for every server (decoding a 3000-object multistatus with encoding/xml
// takes this client 45-80 ms, ten times what the fastest server needs to
// make it).
type client struct {
	hc *http.Client

	mu      sync.Mutex
	waiting time.Duration
}

// waited is the total time spent waiting for answers so far.
func (c *client) waited() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting
}

func newClient() *client {
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}
	return &client{hc: &http.Client{Transport: tr, Timeout: 10 * time.Minute}}
}

func (c *client) do(method, u, body string, headers ...string) (int, string) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.SetBasicAuth(user, password)
	if body != "" && method != "PUT" {
		req.Header.Set("Content-Type", "application/xml; charset=utf-8")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	t0 := time.Now()
	defer func() {
		d := time.Since(t0)
		c.mu.Lock()
		c.waiting += d
		c.mu.Unlock()
	}()
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type msResponse struct {
	Href     string `xml:"DAV: href"`
	Status   string `xml:"DAV: status"`
	Propstat []struct {
		Status string `xml:"DAV: status"`
		Prop   struct {
			ETag     string `xml:"DAV: getetag"`
			CalData  string `xml:"urn:ietf:params:xml:ns:caldav calendar-data"`
			AddrData string `xml:"urn:ietf:params:xml:ns:carddav address-data"`
		} `xml:"DAV: prop"`
	} `xml:"DAV: propstat"`
}

type multistatus struct {
	Responses []msResponse `xml:"DAV: response"`
	SyncToken string       `xml:"DAV: sync-token"`
}

func parseMS(status int, body string) (*multistatus, error) {
	if status != 207 {
		return nil, fmt.Errorf("status %d: %.200s", status, body)
	}
	var ms multistatus
	if err := xml.Unmarshal([]byte(body), &ms); err != nil {
		return nil, err
	}
	return &ms, nil
}

// objects counts responses that carry an ETag (collections do not, on
// most servers) and returns their hrefs.
func (ms *multistatus) objects() []string {
	var out []string
	for _, r := range ms.Responses {
		if strings.HasSuffix(r.Href, "/") {
			continue // the collection itself
		}
		for _, ps := range r.Propstat {
			if strings.Contains(ps.Status, " 200 ") && (ps.Prop.ETag != "" || ps.Prop.CalData != "" || ps.Prop.AddrData != "") {
				out = append(out, r.Href)
				break
			}
		}
	}
	return out
}

// measurement is one phase on one server.
type measurement struct {
	// value is seconds (lower is better) or a rate (higher is better).
	value  float64
	rate   bool
	failed string // why the phase failed or was wrong
	note   string
}

// putAll PUTs items in order and returns the rate and the mean latency of
// the first and the last tenth.
func putAll(c *client, base string, items []item, ctype string) (measurement, time.Duration, time.Duration) {
	lat := make([]time.Duration, len(items))
	start := time.Now()
	for i, it := range items {
		t0 := time.Now()
		st, body := c.do("PUT", base+it.name, it.body, "Content-Type", ctype, "If-None-Match", "*")
		lat[i] = time.Since(t0)
		if st != 201 && st != 204 {
			return measurement{failed: fmt.Sprintf("PUT %s: %d %.200s", it.name, st, body)}, 0, 0
		}
	}
	total := time.Since(start)
	tenth := len(items) / 10
	mean := func(ds []time.Duration) time.Duration {
		var s time.Duration
		for _, d := range ds {
			s += d
		}
		return s / time.Duration(max(len(ds), 1))
	}
	first, last := mean(lat[:tenth]), mean(lat[len(lat)-tenth:])
	return measurement{value: float64(len(items)) / total.Seconds(), rate: true,
		note: fmt.Sprintf("latency first tenth %.1f ms, last tenth %.1f ms", ms(first), ms(last))}, first, last
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timed runs a phase and reports the time its requests waited for their
// answers.
func timed(c *client, f func() (string, error)) measurement {
	w0 := c.waited()
	note, err := f()
	m := measurement{value: (c.waited() - w0).Seconds(), note: note}
	if err != nil {
		m.failed = err.Error()
	}
	return m
}

func propfindListing(c *client, s *server, nCards, nEvents int) measurement {
	return timed(c, func() (string, error) {
		body := `<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>`
		for _, x := range []struct {
			u string
			n int
		}{{s.contacts, nCards}, {s.calendar, nEvents}} {
			ms, err := parseMS(c.do("PROPFIND", x.u, body, "Depth", "1"))
			if err != nil {
				return "", err
			}
			if got := len(ms.objects()); got != x.n {
				return "", fmt.Errorf("PROPFIND %s listed %d objects, want %d", x.u, got, x.n)
			}
		}
		return "", nil
	})
}

func hrefs(base string, items []item) string {
	u, _ := url.Parse(base)
	var b strings.Builder
	for _, it := range items {
		b.WriteString("<d:href>" + u.Path + it.name + "</d:href>")
	}
	return b.String()
}

func multiget(c *client, s *server, cards, events []item) measurement {
	return timed(c, func() (string, error) {
		ab := `<?xml version="1.0"?><C:addressbook-multiget xmlns:d="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><d:prop><d:getetag/><C:address-data/></d:prop>` + hrefs(s.contacts, cards) + `</C:addressbook-multiget>`
		ms, err := parseMS(c.do("REPORT", s.contacts, ab, "Depth", "1"))
		if err != nil {
			return "", err
		}
		if got := len(ms.objects()); got != len(cards) {
			return "", fmt.Errorf("addressbook-multiget returned %d, want %d", got, len(cards))
		}
		cal := `<?xml version="1.0"?><C:calendar-multiget xmlns:d="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><C:calendar-data/></d:prop>` + hrefs(s.calendar, events) + `</C:calendar-multiget>`
		ms, err = parseMS(c.do("REPORT", s.calendar, cal, "Depth", "1"))
		if err != nil {
			return "", err
		}
		if got := len(ms.objects()); got != len(events) {
			return "", fmt.Errorf("calendar-multiget returned %d, want %d", got, len(events))
		}
		return "", nil
	})
}

const (
	monthStart = "20260301T000000Z"
	monthEnd   = "20260401T000000Z"
)

func monthFilter() string {
	return `<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="` + monthStart + `" end="` + monthEnd + `"/></C:comp-filter></C:comp-filter></C:filter>`
}

func monthQuery(c *client, s *server, want map[string]bool) measurement {
	return timed(c, func() (string, error) {
		body := `<?xml version="1.0"?><C:calendar-query xmlns:d="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop>` + monthFilter() + `</C:calendar-query>`
		ms, err := parseMS(c.do("REPORT", s.calendar, body, "Depth", "1"))
		if err != nil {
			return "", err
		}
		got := map[string]bool{}
		for _, h := range ms.objects() {
			got[h[strings.LastIndexByte(h, '/')+1:]] = true
		}
		var missing, extra []string
		for n := range want {
			if !got[n] {
				missing = append(missing, n)
			}
		}
		for n := range got {
			if !want[n] {
				extra = append(extra, n)
			}
		}
		sort.Strings(missing)
		sort.Strings(extra)
		note := fmt.Sprintf("%d objects", len(got))
		if len(missing)+len(extra) > 0 {
			return note, fmt.Errorf("wrong: %d of %d objects missing (e.g. %v), %d extra (e.g. %v)", len(missing), len(want), head(missing), len(extra), head(extra))
		}
		return note, nil
	})
}

func head(s []string) []string {
	if len(s) > 3 {
		return s[:3]
	}
	return s
}

func expandQuery(c *client, s *server, wantInstances int) measurement {
	return timed(c, func() (string, error) {
		body := `<?xml version="1.0"?><C:calendar-query xmlns:d="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><C:calendar-data><C:expand start="` + monthStart + `" end="` + monthEnd + `"/></C:calendar-data></d:prop>` + monthFilter() + `</C:calendar-query>`
		ms, err := parseMS(c.do("REPORT", s.calendar, body, "Depth", "1"))
		if err != nil {
			return "", err
		}
		n := 0
		for _, r := range ms.Responses {
			for _, ps := range r.Propstat {
				n += strings.Count(ps.Prop.CalData, "BEGIN:VEVENT")
			}
		}
		note := fmt.Sprintf("%d instances", n)
		if n != wantInstances {
			return note, fmt.Errorf("wrong: %d instances, want %d", n, wantInstances)
		}
		return note, nil
	})
}

// busyMinutes is the length of the union of FREEBUSY periods.
func busyMinutes(text string) (int, error) {
	type iv struct{ a, b time.Time }
	var ivs []iv
	text = strings.ReplaceAll(text, "\r\n ", "")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "FREEBUSY") {
			continue
		}
		v := line[strings.IndexByte(line, ':')+1:]
		for _, p := range strings.Split(v, ",") {
			a, b, ok := strings.Cut(p, "/")
			if !ok {
				continue
			}
			ta, err := time.Parse("20060102T150405Z", a)
			if err != nil {
				return 0, err
			}
			tb, err := time.Parse("20060102T150405Z", b)
			if err != nil {
				d, derr := parseISODuration(b)
				if derr != nil {
					return 0, err
				}
				tb = ta.Add(d)
			}
			ivs = append(ivs, iv{ta, tb})
		}
	}
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].a.Before(ivs[j].a) })
	var total time.Duration
	var cur iv
	for i, x := range ivs {
		if i == 0 || x.a.After(cur.b) {
			total += cur.b.Sub(cur.a)
			cur = x
			continue
		}
		if x.b.After(cur.b) {
			cur.b = x.b
		}
	}
	total += cur.b.Sub(cur.a)
	return int(total.Minutes()), nil
}

func parseISODuration(s string) (time.Duration, error) {
	s = strings.TrimPrefix(s, "P")
	var d time.Duration
	days, rest, hasT := strings.Cut(s, "T")
	if !hasT {
		rest = ""
	}
	if days != "" {
		var n int
		if _, err := fmt.Sscanf(days, "%dD", &n); err != nil {
			return 0, err
		}
		d += time.Duration(n) * 24 * time.Hour
	}
	if rest != "" {
		pd, err := time.ParseDuration(strings.ToLower(rest))
		if err != nil {
			return 0, err
		}
		d += pd
	}
	return d, nil
}

func freeBusy(c *client, s *server, wantMinutes int) measurement {
	return timed(c, func() (string, error) {
		body := `<?xml version="1.0"?><C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:time-range start="` + monthStart + `" end="` + monthEnd + `"/></C:free-busy-query>`
		st, text := c.do("REPORT", s.calendar, body, "Depth", "1")
		if st != 200 {
			return "", fmt.Errorf("not answered: status %d %.120s", st, strings.TrimSpace(text))
		}
		got, err := busyMinutes(text)
		if err != nil {
			return "", err
		}
		note := fmt.Sprintf("%d busy minutes", got)
		if got != wantMinutes {
			return note, fmt.Errorf("wrong: %d busy minutes, want %d", got, wantMinutes)
		}
		return note, nil
	})
}

func syncBody(token string) string {
	return `<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>` + token + `</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
}

// syncPhases times an initial sync-collection of the address book, then,
// after 10 changes, an incremental one.
func syncPhases(c *client, s *server, cards []item) (measurement, measurement) {
	var token string
	initial := timed(c, func() (string, error) {
		ms, err := parseMS(c.do("REPORT", s.contacts, syncBody(""), "Depth", "0"))
		if err != nil {
			return "", err
		}
		if got := len(ms.objects()); got != len(cards) {
			return "", fmt.Errorf("initial sync listed %d, want %d", got, len(cards))
		}
		token = ms.SyncToken
		return "", nil
	})
	if initial.failed != "" {
		return initial, measurement{failed: "no token"}
	}
	for i := 0; i < 10; i++ {
		it := cards[i*len(cards)/10]
		body := strings.Replace(it.body, "REV:20260101T000000Z", "REV:20260201T000000Z\r\nNOTE:changed", 1)
		if st, b := c.do("PUT", s.contacts+it.name, body, "Content-Type", "text/vcard"); st != 204 && st != 201 {
			return initial, measurement{failed: fmt.Sprintf("change PUT: %d %.100s", st, b)}
		}
	}
	incr := timed(c, func() (string, error) {
		ms, err := parseMS(c.do("REPORT", s.contacts, syncBody(token), "Depth", "0"))
		if err != nil {
			return "", err
		}
		if got := len(ms.objects()); got != 10 {
			return "", fmt.Errorf("sync after 10 changes listed %d", got)
		}
		return "", nil
	})
	return initial, incr
}

// concurrentGets has 8 clients GET random objects over keep-alive
// connections.
func concurrentGets(c *client, s *server, cards, events []item, perClient int) measurement {
	var urls []string
	for _, it := range cards {
		urls = append(urls, s.contacts+it.name)
	}
	for _, it := range events {
		urls = append(urls, s.calendar+it.name)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed string
	t0 := time.Now()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for i := 0; i < perClient; i++ {
				st, _ := c.do("GET", urls[rng.Intn(len(urls))], "")
				if st != 200 {
					mu.Lock()
					failed = fmt.Sprintf("GET: status %d", st)
					mu.Unlock()
					return
				}
			}
		}(int64(w))
	}
	wg.Wait()
	return measurement{value: float64(8*perClient) / time.Since(t0).Seconds(), rate: true, failed: failed}
}
