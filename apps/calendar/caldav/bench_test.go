package caldav

import (
	"testing"
)

// BenchmarkInstances expands a daily event that began years ago into one
// month, in an IANA zone and in a zone its VTIMEZONE defines.
func BenchmarkInstances(b *testing.B) {
	for _, bc := range []struct{ name, body string }{
		{"IANA", "BEGIN:VEVENT\nUID:d\nDTSTAMP:20200101T000000Z\nDTSTART;TZID=Europe/Berlin:20200101T100000\nDURATION:PT1H\nRRULE:FREQ=DAILY\nEND:VEVENT"},
		{"VTIMEZONE", OutlookZone + "\nBEGIN:VEVENT\nUID:d\nDTSTAMP:20200101T000000Z\nDTSTART;TZID=W. Europe Standard Time:20200101T100000\nDURATION:PT1H\nRRULE:FREQ=DAILY\nEND:VEVENT"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := Parse(ics(bc.body))
			if err != nil {
				b.Fatal(err)
			}
			rs, re := utc("20260301T000000Z"), utc("20260401T000000Z")
			for b.Loop() {
				if inst, err := Instances(c, "VEVENT", rs, re, nil); err != nil || len(inst) != 31 {
					b.Fatalf("%d instances, %v", len(inst), err)
				}
			}
		})
	}
}
