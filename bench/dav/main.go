// Command dav benchmarks Nymote's contacts and calendar appliances against
// Radicale and Xandikos (Debian packages) on this machine, in one run,
// with one client: PUT of vCards and events, PROPFIND listings, multiget
// (also as a Python script using requests sees it),
// a one-month calendar-query checked against Nymote's own expansion,
// expand, free-busy, sync-collection, and 8 concurrent clients GETting.
// Run it from the repository root:
//
//	go run ./bench/dav                      # all three servers
//	go run ./bench/dav -servers nymote -cards 300 -events 200
//
// It prints a Markdown table with each phase's ratio to the faster of the
// other two servers.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-ical"

	"github.com/nymote/nymote/apps/calendar/caldav"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/dav:", err)
		os.Exit(1)
	}
}

// expected is what a correct server answers for the month.
type expected struct {
	objects   map[string]bool
	instances int
	busy      int
}

func expect(events []item) (expected, error) {
	rs, _ := time.Parse("20060102T150405Z", monthStart)
	re, _ := time.Parse("20060102T150405Z", monthEnd)
	e := expected{objects: map[string]bool{}}
	var cals []*ical.Calendar
	for _, it := range events {
		c, err := caldav.Parse([]byte(it.body))
		if err != nil {
			return e, fmt.Errorf("%s: %v", it.name, err)
		}
		cals = append(cals, c)
		inst, err := caldav.Instances(c, "VEVENT", rs, re, time.UTC)
		if err != nil {
			return e, fmt.Errorf("%s: %v", it.name, err)
		}
		if len(inst) > 0 {
			e.objects[it.name] = true
			e.instances += len(inst)
		}
	}
	fb, err := caldav.FreeBusy(cals, rs, re, time.Now())
	if err != nil {
		return e, err
	}
	e.busy, err = busyMinutes(string(fb))
	return e, err
}

var phases = []string{
	"PUT vCards (PUT/s)", "PUT events (PUT/s)", "PROPFIND Depth 1 listing with ETags (s)", "multiget of all (s)",
	"multiget of all, Python client (s)",
	"one-month calendar-query (s)", "calendar-data with expand (s)", "free-busy-query (s)",
	"sync-collection, initial (s)", "sync-collection, after 10 changes (s)", "8 clients GET, keep-alive (GET/s)",
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dav", flag.ContinueOnError)
	nCards := fs.Int("cards", 3000, "vCards to PUT")
	nEvents := fs.Int("events", 2000, "events to PUT")
	gets := fs.Int("gets", 500, "GETs per concurrent client")
	servers := fs.String("servers", "nymote,radicale,xandikos", "servers to run, in order")
	keep := fs.Bool("keep", false, "keep the servers' data directories")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rng := rand.New(rand.NewSource(1))
	cards, events := genCards(*nCards, rng), genEvents(*nEvents, rng)
	want, err := expect(events)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "month: %d objects, %d instances, %d busy minutes expected\n", len(want.objects), want.instances, want.busy)
	work, err := os.MkdirTemp("", "nymote-bench-dav-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(work)
	}
	bin := filepath.Join(work, "bin")
	for _, app := range []string{"contacts", "calendar"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, app), "./apps/"+app)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s (run from the repository root): %w", app, err)
		}
	}
	results := map[string][]measurement{}
	rss := map[string][]string{}
	var order []string
	for _, name := range strings.Split(*servers, ",") {
		c := newClient()
		dir := filepath.Join(work, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var s *server
		switch name {
		case "nymote":
			s, err = startNymote(ctx, bin, dir)
		case "radicale":
			s, err = startRadicale(ctx, c, dir)
		case "xandikos":
			s, err = startXandikos(ctx, dir)
		default:
			return fmt.Errorf("unknown server %q", name)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(os.Stderr, "%s: running\n", name)
		var ms []measurement
		m, _, _ := putAll(c, s.contacts, cards, "text/vcard")
		ms = append(ms, m)
		fmt.Fprintf(os.Stderr, "%s: vCards %.1f PUT/s (%s) %s\n", name, m.value, m.note, m.failed)
		m, _, _ = putAll(c, s.calendar, events, "text/calendar")
		ms = append(ms, m)
		fmt.Fprintf(os.Stderr, "%s: events %.1f PUT/s (%s) %s\n", name, m.value, m.note, m.failed)
		ms = append(ms, propfindListing(c, s, len(cards), len(events)))
		ms = append(ms, multiget(c, s, cards, events))
		ms = append(ms, pythonMultiget(s, dir, cards, events))
		ms = append(ms, monthQuery(c, s, want.objects))
		ms = append(ms, expandQuery(c, s, want.instances))
		ms = append(ms, freeBusy(c, s, want.busy))
		a, b := syncPhases(c, s, cards)
		ms = append(ms, a, b)
		ms = append(ms, concurrentGets(c, s, cards, events, *gets))
		rss[name] = s.rss()
		fmt.Fprintf(os.Stderr, "%s: resident memory at the end: %s\n", name, strings.Join(rss[name], ", "))
		s.stop()
		for i, m := range ms {
			fmt.Fprintf(os.Stderr, "%s: %s: %.3f %s %s\n", name, phases[i], m.value, m.note, m.failed)
		}
		results[name] = ms
		order = append(order, name)
	}
	report(stdout, order, results, *nCards, *nEvents)
	fmt.Fprintln(stdout)
	for _, n := range order {
		fmt.Fprintf(stdout, "Resident memory at the end, %s: %s.\n", n, strings.Join(rss[n], ", "))
	}
	return nil
}

func report(w io.Writer, order []string, results map[string][]measurement, nCards, nEvents int) {
	fmt.Fprintf(w, "%d vCards, %d events; %s\n\n", nCards, nEvents, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "| phase | %s | nymote vs the faster other |\n|---|", strings.Join(order, " | "))
	for range order {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w, "---|")
	for i, p := range phases {
		fmt.Fprintf(w, "| %s |", p)
		for _, n := range order {
			m := results[n][i]
			cell := fmt.Sprintf(" %.3g", m.value)
			if m.value >= 100 {
				cell = fmt.Sprintf(" %.0f", m.value)
			}
			if m.failed != "" {
				if m.value == 0 || !strings.HasPrefix(m.failed, "wrong") {
					cell = " —"
				}
				cell += " (" + m.failed + ")"
			} else if m.note != "" {
				cell += " (" + m.note + ")"
			}
			fmt.Fprintf(w, "%s |", cell)
		}
		fmt.Fprintf(w, " %s |\n", ratio(order, results, i))
	}
}

// ratio is nymote's speed-up over the faster of the others that answered
// correctly.
func ratio(order []string, results map[string][]measurement, i int) string {
	ours, ok := results["nymote"]
	if !ok || ours[i].failed != "" {
		return "—"
	}
	best := 0.0
	for _, n := range order {
		m := results[n][i]
		if n == "nymote" || m.failed != "" || m.value == 0 {
			continue
		}
		if best == 0 || (m.rate && m.value > best) || (!m.rate && m.value < best) {
			best = m.value
		}
	}
	if best == 0 {
		return "others failed"
	}
	if ours[i].rate {
		return fmt.Sprintf("%.1f×", ours[i].value/best)
	}
	return fmt.Sprintf("%.1f×", best/ours[i].value)
}
