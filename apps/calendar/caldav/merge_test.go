package caldav

import (
	"strings"
	"testing"

	"github.com/emersion/go-ical"
)

func ev(rid, seq, stamp, summary string) string {
	s := "BEGIN:VEVENT\nUID:m\nDTSTAMP:" + stamp + "\nDTSTART:20260105T090000Z\nSEQUENCE:" + seq + "\nSUMMARY:" + summary + "\n"
	if rid == "" {
		s += "RRULE:FREQ=WEEKLY\n"
	} else {
		s = strings.Replace(s, "DTSTART", "RECURRENCE-ID:"+rid+"\nDTSTART", 1)
	}
	return s + "END:VEVENT\n"
}

func TestMergeICal(t *testing.T) {
	const d1, d2, d3 = "20260101T000000Z", "20260102T000000Z", "20260103T000000Z"
	master := ev("", "0", d1, "base")
	tests := []struct {
		name               string
		base, ours, theirs string
		has, hasNot        []string
	}{
		{"overrides added on both sides", master,
			master + ev("20260112T090000Z", "0", d2, "ours-override"),
			master + ev("20260119T090000Z", "0", d2, "theirs-override"),
			[]string{"ours-override", "theirs-override", "SUMMARY:base"}, nil},
		{"master edited on one side, override on the other", master + ev("20260112T090000Z", "0", d1, "o"),
			ev("", "1", d2, "renamed") + ev("20260112T090000Z", "0", d1, "o"),
			master + ev("20260112T090000Z", "1", d2, "o-moved"),
			[]string{"renamed", "o-moved"}, []string{"SUMMARY:base"}},
		{"both edited: higher SEQUENCE wins", master, ev("", "2", d1, "ours"), ev("", "1", d3, "theirs"),
			[]string{"SUMMARY:ours"}, []string{"SUMMARY:theirs"}},
		{"both edited, same SEQUENCE: later DTSTAMP wins", master, ev("", "1", d2, "ours"), ev("", "1", d3, "theirs"),
			[]string{"SUMMARY:theirs"}, []string{"SUMMARY:ours"}},
		{"deleted override vs unchanged", master + ev("20260112T090000Z", "0", d1, "o"), master, master + ev("20260112T090000Z", "0", d1, "o"),
			nil, []string{"SUMMARY:o"}},
		{"deleted override vs edited", master + ev("20260112T090000Z", "0", d1, "o"), master, master + ev("20260112T090000Z", "1", d2, "o-edited"),
			[]string{"o-edited"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MergeICal(ics(tc.base), ics(tc.ours), ics(tc.theirs))
			if err != nil {
				t.Fatal(err)
			}
			rev, err := MergeICal(ics(tc.base), ics(tc.theirs), ics(tc.ours))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(rev) {
				t.Errorf("not symmetric:\n%s\nvs\n%s", got, rev)
			}
			for _, h := range tc.has {
				if !strings.Contains(string(got), h) {
					t.Errorf("merged object lacks %s:\n%s", h, got)
				}
			}
			for _, h := range tc.hasNot {
				if strings.Contains(string(got), h+"\r\n") {
					t.Errorf("merged object has %s:\n%s", h, got)
				}
			}
			if _, err := New(0).Validate(got, nil); err != nil {
				t.Errorf("merged object is invalid: %v", err)
			}
		})
	}
	if got, _ := MergeICal(ics(master), nil, ics(ev("", "1", d2, "edited"))); !strings.Contains(string(got), "edited") {
		t.Errorf("an edit did not beat a delete: %s", got)
	}
}

// TestMergeICalConflictNote: where both sides changed one instance, what
// the losing version had differently is kept in the winner's DESCRIPTION
// (after a description it has), the same whichever side is ours; nothing
// is added when the versions differ only in what every edit changes.
func TestMergeICalConflictNote(t *testing.T) {
	const d1, d2, d3 = "20260101T000000Z", "20260102T000000Z", "20260103T000000Z"
	base := ev("20260112T090000Z", "0", d1, "Dentist")
	// theirs wins (higher SEQUENCE): moved and located; ours renamed it,
	// with a description, an alarm, and DTSTART in a time zone.
	ours := strings.Replace(ev("20260112T090000Z", "1", d2, "Dentist, bring the card"), "DTSTART:20260105T090000Z",
		"DTSTART;TZID=Europe/Paris:20260105T110000\nDESCRIPTION:Dr. Lee\\, room 4", 1)
	ours = strings.Replace(ours, "END:VEVENT", "BEGIN:VALARM\nACTION:DISPLAY\nTRIGGER:-PT15M\nDESCRIPTION:x\nEND:VALARM\nEND:VEVENT", 1)
	theirs := strings.Replace(ev("20260112T090000Z", "2", d3, "Dentist"), "DTSTART:20260105T090000Z",
		"DTSTART:20260105T120000Z\nLOCATION:Clinic", 1)
	got, err := MergeICal(ics(base), ics(ours), ics(theirs))
	if err != nil {
		t.Fatal(err)
	}
	rev, err := MergeICal(ics(base), ics(theirs), ics(ours))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(rev) {
		t.Errorf("not symmetric:\n%s\nvs\n%s", got, rev)
	}
	cal, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	var desc string
	for _, c := range cal.Children {
		if c.Name == ical.CompEvent {
			if desc, err = c.Props.Text(ical.PropDescription); err != nil {
				t.Fatal(err)
			}
			if s, _ := c.Props.Text(ical.PropSummary); s != "Dentist" {
				t.Errorf("SUMMARY %q: the higher SEQUENCE's should win", s)
			}
		}
	}
	want := "Changed on two devices at once. The other device's version, not kept: DESCRIPTION “Dr. Lee, room 4”; " +
		"DTSTART “20260105T110000 (Europe/Paris)”; no LOCATION; SUMMARY “Dentist, bring the card”; " +
		"VALARM changed (the other value is in the history)."
	if desc != want {
		t.Errorf("DESCRIPTION %q\nwant        %q", desc, want)
	}
	if _, err := New(0).Validate(got, nil); err != nil {
		t.Errorf("merged object is invalid: %v", err)
	}
	// Versions that differ only in DTSTAMP and SEQUENCE: no note.
	got, err = MergeICal(ics(base), ics(ev("20260112T090000Z", "1", d2, "Dentist")), ics(ev("20260112T090000Z", "2", d3, "Dentist")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), "DESCRIPTION") {
		t.Errorf("a note where only DTSTAMP and SEQUENCE differ:\n%s", got)
	}
}

// FuzzValidate feeds arbitrary bytes to the PUT ingestion path: it must
// never panic, and what it accepts must expand, answer free-busy and merge.
//
// make test runs it for 50000 inputs past its seeds (fuzz-short: 50000x).
func FuzzValidate(f *testing.F) {
	f.Add(ics(ev("", "0", "20260101T000000Z", "x")))
	f.Add(ics("BEGIN:VEVENT\nUID:a\nDTSTART;VALUE=DATE:20260101\nRDATE;VALUE=PERIOD:20260105T000000Z/PT1H\nEXDATE:20260101\nEND:VEVENT"))
	f.Add(ics("BEGIN:VTODO\nUID:t\nDUE;TZID=Europe/Berlin:20260101T100000\nEND:VTODO"))
	f.Add([]byte("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"))
	f.Add(ics(OutlookZone + "\n" + event("W. Europe Standard Time", "20260329T023000", "RRULE:FREQ=WEEKLY;UNTIL=20261102T090000Z\n")))
	f.Add(ics(rdateZone + "\n" + event("Custom/Steps", "20260701T120000", "")))
	k := New(0)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := k.Validate(data, nil); err != nil {
			return
		}
		c, err := Parse(data)
		if err != nil {
			t.Fatalf("accepted but does not parse: %v", err)
		}
		rs, re := utc("20250101T000000Z"), utc("20270101T000000Z")
		if _, err := Expand(c, rs, re); err != nil {
			t.Fatalf("accepted but does not expand: %v", err)
		}
		FreeBusy([]*ical.Calendar{c}, rs, re, rs)
		if _, err := MergeICal(data, data, data); err != nil {
			t.Fatalf("accepted but does not merge: %v", err)
		}
	})
}
