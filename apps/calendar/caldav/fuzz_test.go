package caldav

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"github.com/nymote/nymote/apps/internal/dav"
)

// FuzzParse feeds arbitrary bytes to the iCalendar parser: it must never
// panic, and what it parses must encode and parse again.
//
// make test runs it for 3000 inputs past its seeds (fuzz-short: 3000x).
func FuzzParse(f *testing.F) {
	f.Add(ics(weekly))
	f.Add(ics(OutlookZone + "\n" + event("W. Europe Standard Time", "20260329T023000", "RRULE:FREQ=WEEKLY;UNTIL=20261102T090000Z\n")))
	f.Add([]byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY;X=\"a,b\":x\\, y\r\n folded\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var de *dav.Error
			if !errors.As(err, &de) || de.Message == "" {
				t.Fatalf("refusal without a message: %v", err)
			}
			return
		}
		var b bytes.Buffer
		encodeLenient(&b, c.Component)
		if _, err := Parse(b.Bytes()); err != nil {
			t.Fatalf("parsed, encoded as %q, does not parse again: %v", b.String(), err)
		}
	})
}

// expansionBudget is how long one expansion of a fuzzed rule may take
// before the fuzz target reports it as unbounded. Rules that pass
// checkRule expand in well under a second; an unbounded one never ends.
const expansionBudget = 20 * time.Second

// FuzzExpand feeds recurrence rules and starts to validation and, when
// accepted, to expansion over a range of years, free-busy and a
// calendar-query time-range on a work budget: each must finish within
// expansionBudget (the library has loops no caller can stop, which is
// what checkRule keeps rules away from) and must not panic.
//
// make test runs it for 3000 inputs past its seeds (fuzz-short: 3000x).
func FuzzExpand(f *testing.F) {
	seeds := []struct {
		start, rule string
		days        uint16
	}{
		{"20260105T100000", "FREQ=WEEKLY;BYDAY=MO,WE", 60},
		{"20260105T000000Z", "FREQ=HOURLY;INTERVAL=24;BYHOUR=1", 10},
		{"20260105T000000Z", "FREQ=SECONDLY;INTERVAL=60;BYSECOND=1", 1},
		{"00000105T000000Z", "FREQ=WEEKLY", 365},
		{"20260105T000000Z", "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30;BYHOUR=23;BYMINUTE=59", 1},
		{"20260105T000000Z", "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYHOUR=23;BYMINUTE=59;BYSECOND=59", 1},
		{"20260131", "FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=30", 900},
		{"19000101T090000", "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", 3650},
		{"20260105T000000Z", "FREQ=MINUTELY;INTERVAL=15;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9,10,11", 14},
		{"20260105T000000Z", "FREQ=YEARLY;BYWEEKNO=53;BYDAY=MO", 3650},
		{"20260105T000000Z", "FREQ=MONTHLY;BYDAY=5FR;BYSETPOS=-1", 3650},
	}
	for _, s := range seeds {
		f.Add(s.start, s.rule, s.days)
	}
	f.Fuzz(func(t *testing.T, start, rule string, days uint16) {
		if strings.ContainsAny(start+rule, "\r\n") {
			return
		}
		data := ics(fmt.Sprintf("BEGIN:VEVENT\nUID:f\nDTSTAMP:20260101T000000Z\nDTSTART;TZID=Europe/Berlin:%s\nDURATION:PT1H\nRRULE:%s\nEND:VEVENT", start, rule))
		within(t, rule, func() error {
			k := New(0)
			if _, err := k.Validate(data, nil); err != nil {
				return nil
			}
			c, err := Parse(data)
			if err != nil {
				return fmt.Errorf("accepted but does not parse: %v", err)
			}
			sv, _, _, ok, err := span(c.Children[0], newZones(c, time.UTC))
			if err != nil || !ok {
				return fmt.Errorf("accepted without a start: %v", err)
			}
			rs := sv.at()
			re := rs.Add(time.Duration(days) * 24 * time.Hour)
			if _, err := Instances(c, ical.CompEvent, rs, re, nil); err != nil {
				return fmt.Errorf("accepted but does not expand: %v", err)
			}
			if _, err := Expand(c, rs, re); err != nil {
				return fmt.Errorf("accepted but does not expand: %v", err)
			}
			if _, err := FreeBusy([]*ical.Calendar{c}, rs, re, rs); err != nil {
				return fmt.Errorf("free-busy: %v", err)
			}
			top := filterNode(t, fmt.Sprintf(`<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="%s" end="%s"/></C:comp-filter></C:comp-filter>`,
				rs.UTC().Format(utcFormat), re.UTC().Format(utcFormat)))
			if _, err := matchFilter(top, c, time.UTC, newWork(context.Background(), maxQueryWork)); err != nil {
				if de := (*dav.Error)(nil); !errors.As(err, &de) {
					return fmt.Errorf("query: %v", err)
				}
			}
			return nil
		})
	})
}

// within runs f and fails the test if it takes longer than
// expansionBudget (f itself cannot be stopped: a goroutine stuck in the
// library is the bug this reports).
func within(t *testing.T, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("panic: %v", p)
			}
		}()
		done <- f()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(expansionBudget):
		t.Fatalf("%s: expansion still running after %v", what, expansionBudget)
	}
}

// filterNode parses a CALDAV:filter's content.
func filterNode(t *testing.T, inner string) *dav.Node {
	t.Helper()
	n, err := dav.ParseXML(strings.NewReader(`<C:filter xmlns:C="urn:ietf:params:xml:ns:caldav">` + inner + `</C:filter>`))
	if err != nil {
		t.Fatal(err)
	}
	return n.Child(dav.Name(dav.NSCalDAV, "comp-filter"))
}

// FuzzQueryFilter feeds arbitrary calendar-query bodies to the filter
// checks and evaluation over a few objects: no panic, every refusal a
// *dav.Error with a message, and every evaluation within the work budget
// and expansionBudget.
//
// make test runs it for 20000 inputs past its seeds (fuzz-short: 20000x).
func FuzzQueryFilter(f *testing.F) {
	for _, s := range []string{
		`<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="20260201T000000Z" end="20260301T000000Z"/></C:comp-filter></C:comp-filter>`,
		`<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY"><C:text-match collation="i;octet" negate-condition="yes">weekly</C:text-match></C:prop-filter></C:comp-filter></C:comp-filter>`,
		`<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:prop-filter name="DTSTART"><C:param-filter name="TZID"><C:is-not-defined/></C:param-filter></C:prop-filter></C:comp-filter></C:comp-filter>`,
		`<C:comp-filter name="VCALENDAR"><C:comp-filter name="VTODO"><C:is-not-defined/></C:comp-filter></C:comp-filter>`,
		`<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="bad"/></C:comp-filter></C:comp-filter>`,
		`<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:comp-filter name="VALARM"><C:time-range start="20260101T000000Z"/></C:comp-filter></C:comp-filter></C:comp-filter>`,
	} {
		f.Add([]byte(`<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop><C:filter>` + s + `</C:filter></C:calendar-query>`))
	}
	var cals []*ical.Calendar
	for _, body := range []string{weekly, strings.Replace(weekly, "RRULE:FREQ=WEEKLY;COUNT=10", "RRULE:FREQ=DAILY\nBEGIN:VALARM\nACTION:DISPLAY\nTRIGGER:-PT15M\nEND:VALARM", 1)} {
		c, err := Parse(ics(body))
		if err != nil {
			f.Fatal(err)
		}
		cals = append(cals, c)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := dav.ParseXML(bytes.NewReader(body))
		if err != nil || n == nil {
			return
		}
		filter := n.Child(dav.Name(dav.NSCalDAV, "filter"))
		unclear := func(err error) error {
			if de := (*dav.Error)(nil); !errors.As(err, &de) || de.Message == "" {
				return fmt.Errorf("error without a status and message: %v", err)
			}
			return nil
		}
		if err := checkFilter(filter); err != nil {
			if err := unclear(err); err != nil {
				t.Fatal(err)
			}
			return
		}
		within(t, string(body), func() error {
			w := newWork(context.Background(), maxQueryWork)
			for _, c := range cals {
				if _, err := matchFilter(filter.Child(dav.Name(dav.NSCalDAV, "comp-filter")), c, time.UTC, w); err != nil {
					if err := unclear(err); err != nil {
						return err
					}
				}
			}
			if w.left < -1 {
				return fmt.Errorf("work budget overspent: %d", w.left)
			}
			return nil
		})
	})
}
