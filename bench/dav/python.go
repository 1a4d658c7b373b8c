package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// pyMultiget is the multiget a new user's Python script makes: the
// requests library without a Session, so each REPORT opens its own
// HTTP/1.1 connection, with requests' default headers (Accept-Encoding:
// gzip, deflate) and every href in one body. It times each REPORT from
// sending to having the whole body (requests' .content), as the issue's
// figures were taken, three times, and prints the best of each.
const pyMultiget = `
import sys, time, requests
base_c, base_e, user, pw, nc, ne = sys.argv[1:7]
path_c, path_e = sys.argv[7], sys.argv[8]
def body(rep, ns, data, path, names):
    return ('<?xml version="1.0" encoding="utf-8"?><C:%s xmlns:d="DAV:" xmlns:C="%s"><d:prop><d:getetag/><C:%s/></d:prop>%s</C:%s>'
            % (rep, ns, data, "".join("<d:href>%s%s</d:href>" % (path, n) for n in names), rep))
cards = open(sys.argv[9]).read().split()
events = open(sys.argv[10]).read().split()
for url, b, n in ((base_c, body("addressbook-multiget", "urn:ietf:params:xml:ns:carddav", "address-data", path_c, cards), int(nc)),
                  (base_e, body("calendar-multiget", "urn:ietf:params:xml:ns:caldav", "calendar-data", path_e, events), int(ne))):
    best = None
    for i in range(3):
        t0 = time.perf_counter()
        r = requests.request("REPORT", url, data=b.encode("utf-8"), auth=(user, pw),
                             headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"})
        got = r.content.count(b"getetag>") // 2
        t = time.perf_counter() - t0
        if r.status_code != 207 or got < n:
            print("fail %d %d/%d" % (r.status_code, got, n))
            sys.exit(0)
        best = t if best is None else min(best, t)
    print("%.6f" % best)
`

// pythonMultiget runs pyMultiget against s: the multiget of every vCard and
// every event, as a Python client sees it. It needs python3 with the
// requests module (Radicale's and Xandikos' packages bring it).
func pythonMultiget(s *server, work string, cards, events []item) measurement {
	script := filepath.Join(work, "multiget.py")
	names := func(file string, items []item) string {
		var b strings.Builder
		for _, it := range items {
			b.WriteString(it.name + "\n")
		}
		os.WriteFile(filepath.Join(work, file), []byte(b.String()), 0o644)
		return filepath.Join(work, file)
	}
	if err := os.WriteFile(script, []byte(pyMultiget), 0o644); err != nil {
		return measurement{failed: err.Error()}
	}
	cf, ef := names("cards.txt", cards), names("events.txt", events)
	path := func(u string) string {
		i := strings.Index(strings.TrimPrefix(u, "http://"), "/")
		return strings.TrimPrefix(u, "http://")[i:]
	}
	cmd := exec.Command("python3", script, s.contacts, s.calendar, user, password,
		strconv.Itoa(len(cards)), strconv.Itoa(len(events)), path(s.contacts), path(s.calendar), cf, ef)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return measurement{failed: fmt.Sprintf("python3: %v %.200s", err, errb.String())}
	}
	lines := strings.Fields(out.String())
	var total float64
	var parts []string
	for _, l := range lines {
		v, err := strconv.ParseFloat(l, 64)
		if err != nil {
			return measurement{failed: "python client: " + out.String()}
		}
		total += v
		parts = append(parts, fmt.Sprintf("%.3f", v))
	}
	if len(parts) != 2 {
		return measurement{failed: "python client: " + out.String()}
	}
	return measurement{value: total, note: "address book " + parts[0] + " s, calendar " + parts[1] + " s"}
}
