package caldav

import (
	"strings"
	"testing"
	"time"
)

// OutlookZone is Outlook's VTIMEZONE for central Europe: not an IANA name,
// with rules that recur from 1601. (Exported for the protocol tests.)
const OutlookZone = `BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE`

// oldUSEastern is a VTIMEZONE with the US rules before 2007 (DST from the
// first Sunday in April to the last in October) under an IANA name: the
// object's rules win over the IANA database's.
const oldUSEastern = `BEGIN:VTIMEZONE
TZID:America/New_York
BEGIN:STANDARD
DTSTART:19671029T020000
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
TZNAME:EST
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19870405T020000
RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=4
TZOFFSETFROM:-0500
TZOFFSETTO:-0400
TZNAME:EDT
END:DAYLIGHT
END:VTIMEZONE`

// rdateZone has no rules, only onsets by RDATE, and a fixed zone follows.
const rdateZone = `BEGIN:VTIMEZONE
TZID:Custom/Steps
BEGIN:STANDARD
DTSTART:20000101T000000
TZOFFSETFROM:+0300
TZOFFSETTO:+0300
TZNAME:A
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:20260601T000000
RDATE:20270601T000000
TZOFFSETFROM:+0300
TZOFFSETTO:+0400
TZNAME:B
END:DAYLIGHT
BEGIN:STANDARD
DTSTART:20261001T000000
RDATE:20271001T000000
TZOFFSETFROM:+0400
TZOFFSETTO:+0300
TZNAME:A
END:STANDARD
END:VTIMEZONE`

func event(tzid, start, extra string) string {
	return "BEGIN:VEVENT\nUID:e\nDTSTAMP:20260101T000000Z\nDTSTART;TZID=" + tzid + ":" + start + "\nDURATION:PT1H\n" + extra + "END:VEVENT"
}

// TestTimeZones checks how local times with a TZID become instants: by the
// object's VTIMEZONE, else the IANA database, else as floating times; with
// RFC 5545's rules for times in a DST gap or fold.
func TestTimeZones(t *testing.T) {
	all := [2]time.Time{utc("20000101T000000Z"), utc("20400101T000000Z")}
	tests := []struct {
		name     string
		body     string
		floating *time.Location
		rng      [2]time.Time
		starts   []string
	}{
		{"Outlook zone, winter", OutlookZone + "\n" + event("W. Europe Standard Time", "20260115T100000", ""), nil, all, []string{"20260115T090000Z"}},
		{"Outlook zone, summer", OutlookZone + "\n" + event("W. Europe Standard Time", "20260715T100000", ""), nil, all, []string{"20260715T080000Z"}},
		{"Outlook zone, 02:30 on the spring-forward day", OutlookZone + "\n" + event("W. Europe Standard Time", "20260329T023000", ""), nil, all, []string{"20260329T013000Z"}},
		{"Outlook zone, 02:30 on the fall-back day is the first 02:30", OutlookZone + "\n" + event("W. Europe Standard Time", "20261025T023000", ""), nil, all, []string{"20261025T003000Z"}},
		{"Outlook zone, weekly across both DST changes keeps 10:00 local", OutlookZone + "\n" + event("W. Europe Standard Time", "20260316T100000", "RRULE:FREQ=WEEKLY;COUNT=4\n"), nil, all,
			[]string{"20260316T090000Z", "20260323T090000Z", "20260330T080000Z", "20260406T080000Z"}},
		{"Outlook zone, weekly at 02:30 across spring-forward", OutlookZone + "\n" + event("W. Europe Standard Time", "20260322T023000", "RRULE:FREQ=WEEKLY;COUNT=3\n"), nil, all,
			[]string{"20260322T013000Z", "20260329T013000Z", "20260405T003000Z"}},
		{"Outlook zone, UNTIL in UTC and EXDATE in the zone", OutlookZone + "\n" + event("W. Europe Standard Time", "20261019T100000", "RRULE:FREQ=WEEKLY;UNTIL=20261102T090000Z\nEXDATE;TZID=W. Europe Standard Time:20261026T100000\n"), nil, all,
			[]string{"20261019T080000Z", "20261102T090000Z"}},
		{"old US rules under an IANA name win over the database", oldUSEastern + "\n" + event("America/New_York", "20260320T100000", ""), nil, all, []string{"20260320T150000Z"}},
		{"IANA name without a VTIMEZONE", event("America/New_York", "20260320T100000", ""), nil, all, []string{"20260320T140000Z"}},
		{"IANA zone, 02:30 in the gap takes the offset before it", event("America/New_York", "20260308T023000", ""), nil, all, []string{"20260308T073000Z"}},
		{"IANA zone, 01:30 in the fold is the first", event("America/New_York", "20261101T013000", ""), nil, all, []string{"20261101T053000Z"}},
		{"a zone of RDATE steps", rdateZone + "\n" + event("Custom/Steps", "20260701T120000", "RRULE:FREQ=MONTHLY;COUNT=4;BYMONTHDAY=1\n"), nil, all,
			[]string{"20260701T080000Z", "20260801T080000Z", "20260901T080000Z", "20261001T090000Z"}},
		{"unknown TZID is floating", event("Nowhere/Special", "20260320T100000", ""), nil, all, []string{"20260320T100000Z"}},
		{"unknown TZID in a floating zone", event("Nowhere/Special", "20260320T100000", ""), mustZone(t, "Asia/Tokyo"), all, []string{"20260320T010000Z"}},
		{"a weekly range query across the change", OutlookZone + "\n" + event("W. Europe Standard Time", "20260101T100000", "RRULE:FREQ=WEEKLY\n"),
			nil, [2]time.Time{utc("20260329T000000Z"), utc("20260331T000000Z")}, nil},
		{"a daily range query on the first summer day", OutlookZone + "\n" + event("W. Europe Standard Time", "20260101T100000", "RRULE:FREQ=DAILY\n"),
			nil, [2]time.Time{utc("20260330T080000Z"), utc("20260330T083000Z")}, []string{"20260330T080000Z"}},
		{"a daily range query misses the winter time", OutlookZone + "\n" + event("W. Europe Standard Time", "20260101T100000", "RRULE:FREQ=DAILY\n"),
			nil, [2]time.Time{utc("20260330T091000Z"), utc("20260330T093000Z")}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(ics(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			inst, err := Instances(c, "VEVENT", tc.rng[0], tc.rng[1], tc.floating)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, in := range inst {
				got = append(got, in.Start.UTC().Format(utcFormat))
				if d := in.End.Sub(in.Start); d != time.Hour {
					t.Errorf("occurrence at %s lasts %v, want 1h", in.Start, d)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.starts, " ") {
				t.Errorf("got %v, want %v", got, tc.starts)
			}
		})
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestAllDayInAFloatingZone: all-day events are floating; in a zone with
// DST a day that changes the clock is still one whole local day.
func TestAllDayInAFloatingZone(t *testing.T) {
	c, err := Parse(ics("BEGIN:VEVENT\nUID:d\nDTSTAMP:20260101T000000Z\nDTSTART;VALUE=DATE:20260328\nRRULE:FREQ=DAILY;COUNT=3\nEND:VEVENT"))
	if err != nil {
		t.Fatal(err)
	}
	berlin := mustZone(t, "Europe/Berlin")
	inst, err := Instances(c, "VEVENT", time.Time{}, time.Time{}, berlin)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"20260327T230000Z", "20260328T230000Z"}, {"20260328T230000Z", "20260329T220000Z"}, {"20260329T220000Z", "20260330T220000Z"}}
	if len(inst) != len(want) {
		t.Fatalf("%d occurrences, want %d", len(inst), len(want))
	}
	for i, in := range inst {
		if got := [2]string{in.Start.UTC().Format(utcFormat), in.End.UTC().Format(utcFormat)}; got != want[i] {
			t.Errorf("occurrence %d: got %v, want %v", i, got, want[i])
		}
		if d := in.Start.Format("20060102"); d != []string{"20260328", "20260329", "20260330"}[i] {
			t.Errorf("occurrence %d falls on %s", i, d)
		}
	}
}

func TestBadVTimezone(t *testing.T) {
	for _, tc := range []struct{ name, body, says string }{
		{"no observance", "BEGIN:VTIMEZONE\nTZID:X\nEND:VTIMEZONE", "no STANDARD or DAYLIGHT"},
		{"bad offset", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:STANDARD\nDTSTART:20000101T000000\nTZOFFSETFROM:+1\nTZOFFSETTO:+0100\nEND:STANDARD\nEND:VTIMEZONE", "TZOFFSETFROM"},
		{"bad rule", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:STANDARD\nDTSTART:20000101T000000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0100\nRRULE:FREQ=SOMETIMES\nEND:STANDARD\nEND:VTIMEZONE", "RRULE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(ics(tc.body + "\n" + event("X", "20260101T100000", "")))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := vtimezoneLocation(c.Children[0]); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("got %v, want an error saying %q", err, tc.says)
			}
			// Unusable rules: the TZID is read as floating.
			inst, err := Instances(c, "VEVENT", time.Time{}, time.Time{}, nil)
			if err != nil || len(inst) != 1 || inst[0].Start.UTC().Format(utcFormat) != "20260101T100000Z" {
				t.Errorf("got %v, %v; want one floating occurrence", inst, err)
			}
		})
	}
}
