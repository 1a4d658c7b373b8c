package caldav

import (
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"
)

func ics(body string) []byte {
	return []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" + strings.ReplaceAll(strings.TrimSpace(body), "\n", "\r\n") + "\r\nEND:VCALENDAR\r\n")
}

const weekly = `BEGIN:VEVENT
UID:w
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Berlin:20260105T100000
DTEND;TZID=Europe/Berlin:20260105T110000
RRULE:FREQ=WEEKLY;COUNT=10
SUMMARY:weekly
END:VEVENT`

func utc(s string) time.Time {
	t, err := time.Parse("20060102T150405Z", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestInstances(t *testing.T) {
	feb := [2]time.Time{utc("20260201T000000Z"), utc("20260301T000000Z")}
	tests := []struct {
		name   string
		body   string
		rng    [2]time.Time
		starts []string
	}{
		{"weekly rule", weekly, feb, []string{"20260202T090000Z", "20260209T090000Z", "20260216T090000Z", "20260223T090000Z"}},
		{"exdate", strings.Replace(weekly, "RRULE", "EXDATE;TZID=Europe/Berlin:20260209T100000\nRRULE", 1), feb,
			[]string{"20260202T090000Z", "20260216T090000Z", "20260223T090000Z"}},
		{"rdate", strings.Replace(weekly, "RRULE", "RDATE:20260220T120000Z\nRRULE", 1), feb,
			[]string{"20260202T090000Z", "20260209T090000Z", "20260216T090000Z", "20260220T120000Z", "20260223T090000Z"}},
		{"override moved out of the range", weekly + `
BEGIN:VEVENT
UID:w
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Berlin:20260216T100000
DTSTART:20260320T090000Z
DTEND:20260320T100000Z
SUMMARY:moved
END:VEVENT`, feb, []string{"20260202T090000Z", "20260209T090000Z", "20260223T090000Z"}},
		{"override moved into the range", weekly + `
BEGIN:VEVENT
UID:w
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Berlin:20260112T100000
DTSTART:20260210T150000Z
DTEND:20260210T160000Z
SUMMARY:moved
END:VEVENT`, feb, []string{"20260202T090000Z", "20260209T090000Z", "20260210T150000Z", "20260216T090000Z", "20260223T090000Z"}},
		{"all-day yearly", `BEGIN:VEVENT
UID:b
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:19900215
RRULE:FREQ=YEARLY
SUMMARY:birthday
END:VEVENT`, feb, []string{"20260215T000000Z"}},
		{"event reaching into the range", `BEGIN:VEVENT
UID:o
DTSTAMP:20260101T000000Z
DTSTART:20260131T220000Z
DTEND:20260201T020000Z
END:VEVENT`, feb, []string{"20260131T220000Z"}},
		{"event ending at the range start", `BEGIN:VEVENT
UID:o
DTSTAMP:20260101T000000Z
DTSTART:20260131T220000Z
DTEND:20260201T000000Z
END:VEVENT`, feb, nil},
		{"daily across a DST change", `BEGIN:VEVENT
UID:d
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Berlin:20260327T090000
DURATION:PT1H
RRULE:FREQ=DAILY;UNTIL=20260330T235959Z
END:VEVENT`, [2]time.Time{utc("20260328T000000Z"), utc("20260401T000000Z")}, []string{"20260328T080000Z", "20260329T070000Z", "20260330T070000Z"}},
		{"infinite rule, late range", `BEGIN:VEVENT
UID:i
DTSTAMP:20260101T000000Z
DTSTART:20000103T120000Z
DTEND:20000103T130000Z
RRULE:FREQ=MONTHLY;BYMONTHDAY=3
END:VEVENT`, feb, []string{"20260203T120000Z"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(ics(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			inst, err := Instances(c, "VEVENT", tc.rng[0], tc.rng[1], time.UTC)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, in := range inst {
				got = append(got, in.Start.UTC().Format("20060102T150405Z"))
			}
			if strings.Join(got, " ") != strings.Join(tc.starts, " ") {
				t.Errorf("got %v, want %v", got, tc.starts)
			}
		})
	}
}

func TestExpandAndFreeBusy(t *testing.T) {
	c, err := Parse(ics(weekly + `
BEGIN:VEVENT
UID:w
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Berlin:20260209T100000
DTSTART:20260209T130000Z
DTEND:20260209T140000Z
STATUS:TENTATIVE
END:VEVENT`))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := Expand(c, utc("20260201T000000Z"), utc("20260215T000000Z"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Children) != 2 {
		t.Fatalf("expand: %d components, want 2", len(ex.Children))
	}
	for i, want := range []string{"20260202T090000Z", "20260209T130000Z"} {
		ch := ex.Children[i]
		if got := propValue(ch, "DTSTART"); got != want {
			t.Errorf("instance %d: DTSTART %s, want %s", i, got, want)
		}
		if ch.Props.Get("RRULE") != nil || ch.Props.Get("RECURRENCE-ID") == nil {
			t.Errorf("instance %d: RRULE %v, RECURRENCE-ID %v", i, ch.Props.Get("RRULE"), ch.Props.Get("RECURRENCE-ID"))
		}
	}
	fb, err := FreeBusy([]*ical.Calendar{c}, utc("20260201T000000Z"), utc("20260215T000000Z"), utc("20260101T000000Z"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FREEBUSY;FBTYPE=BUSY:20260202T090000Z/20260202T100000Z", "FREEBUSY;FBTYPE=BUSY-TENTATIVE:20260209T130000Z/20260209T140000Z"} {
		if !strings.Contains(string(fb), want) {
			t.Errorf("free-busy lacks %s:\n%s", want, fb)
		}
	}
}

func TestValidate(t *testing.T) {
	k := New(0)
	tests := []struct {
		name, body string
		ok         bool
		says       string
	}{
		{"event", weekly, true, ""},
		{"no UID", "BEGIN:VEVENT\nDTSTAMP:20260101T000000Z\nDTSTART:20260101T000000Z\nEND:VEVENT", false, "no UID"},
		{"two UIDs", "BEGIN:VEVENT\nUID:a\nDTSTART:20260101T000000Z\nEND:VEVENT\nBEGIN:VEVENT\nUID:b\nDTSTART:20260101T000000Z\nEND:VEVENT", false, "UIDs"},
		{"mixed types", "BEGIN:VEVENT\nUID:a\nDTSTART:20260101T000000Z\nEND:VEVENT\nBEGIN:VTODO\nUID:a\nEND:VTODO", false, "mixes"},
		{"bad rule", "BEGIN:VEVENT\nUID:a\nDTSTART:20260101T000000Z\nRRULE:FREQ=SOMETIMES\nEND:VEVENT", false, "RRULE"},
		{"bad date", "BEGIN:VEVENT\nUID:a\nDTSTART:2026-01-01\nEND:VEVENT", false, "DATE"},
		{"no DTSTART", "BEGIN:VEVENT\nUID:a\nEND:VEVENT", false, "DTSTART"},
		{"nothing", "", false, "holds no"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uid, err := k.Validate(ics(tc.body), nil)
			if tc.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.says)) {
				t.Errorf("got uid %q, %v; want ok %v saying %q", uid, err, tc.ok, tc.says)
			}
		})
	}
	if _, err := k.Validate([]byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n"), nil); err == nil {
		t.Error("an unterminated calendar was accepted")
	}
}
