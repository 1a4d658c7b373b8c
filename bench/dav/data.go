package main

import (
	"fmt"
	"math/rand"
	"strings"
	"time"
)

// item is one object to PUT.
type item struct {
	name, body string
}

// genCards makes n vCards, deterministic for a seed.
func genCards(n int, rng *rand.Rand) []item {
	first := []string{"Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal", "Ida", "Jo"}
	last := []string{"Archer", "Baker", "Carver", "Dyer", "Fisher", "Glover", "Hunter", "Mason"}
	out := make([]item, n)
	for i := range out {
		f, l := first[rng.Intn(len(first))], last[rng.Intn(len(last))]
		uid := fmt.Sprintf("card-%05d", i)
		var b strings.Builder
		fmt.Fprintf(&b, "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:%s\r\nFN:%s %s %d\r\nN:%s;%s;;;\r\n", uid, f, l, i, l, f)
		fmt.Fprintf(&b, "EMAIL;TYPE=INTERNET:%s.%s%d@example.com\r\n", strings.ToLower(f), strings.ToLower(l), i)
		if i%3 == 0 {
			fmt.Fprintf(&b, "EMAIL;TYPE=INTERNET,HOME:%s%d@home.example\r\n", strings.ToLower(f), i)
		}
		fmt.Fprintf(&b, "TEL;TYPE=CELL:+44 7700 %06d\r\n", rng.Intn(1000000))
		if i%4 == 0 {
			fmt.Fprintf(&b, "ADR;TYPE=HOME:;;%d High Street;Cambridge;;CB%d;UK\r\nORG:Example Ltd\r\n", i%200, i%9)
		}
		if i%5 == 0 {
			b.WriteString("NOTE:Met at the conference\\, talked about unikernels.\r\n")
		}
		b.WriteString("REV:20260101T000000Z\r\nEND:VCARD\r\n")
		out[i] = item{name: uid + ".vcf", body: b.String()}
	}
	return out
}

const berlin = "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"

// genEvents makes n events over 2026: most single and timed, some all-day,
// some recurring (weekly, daily, monthly; with EXDATE and a moved instance),
// some in Europe/Berlin with a VTIMEZONE, some with a VALARM.
func genEvents(n int, rng *rand.Rand) []item {
	year := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]item, n)
	for i := range out {
		uid := fmt.Sprintf("event-%05d", i)
		day := year.AddDate(0, 0, rng.Intn(365))
		start := day.Add(time.Duration(7+rng.Intn(12)) * time.Hour)
		dur := time.Duration(30*(1+rng.Intn(4))) * time.Minute
		var b strings.Builder
		b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Nymote//bench//EN\r\n")
		tz := i%10 == 3
		if tz {
			b.WriteString(berlin)
		}
		b.WriteString("BEGIN:VEVENT\r\nUID:" + uid + "\r\nDTSTAMP:20260101T000000Z\r\n")
		fmt.Fprintf(&b, "SUMMARY:Event %d\r\n", i)
		switch {
		case i%7 == 1: // all-day, one or two days; most of them free (TRANSP)
			fmt.Fprintf(&b, "DTSTART;VALUE=DATE:%s\r\nDTEND;VALUE=DATE:%s\r\n", day.Format("20060102"), day.AddDate(0, 0, 1+i%2).Format("20060102"))
			if i%4 != 1 {
				b.WriteString("TRANSP:TRANSPARENT\r\n")
			}
		case tz:
			fmt.Fprintf(&b, "DTSTART;TZID=Europe/Berlin:%s\r\nDTEND;TZID=Europe/Berlin:%s\r\n", start.Format("20060102T150405"), start.Add(dur).Format("20060102T150405"))
		default:
			fmt.Fprintf(&b, "DTSTART:%s\r\nDTEND:%s\r\n", start.Format("20060102T150405Z"), start.Add(dur).Format("20060102T150405Z"))
		}
		recurring := i%8 == 2 || (tz && i%20 == 3)
		if recurring {
			switch i % 3 {
			case 0:
				b.WriteString("RRULE:FREQ=WEEKLY;COUNT=20\r\n")
			case 1:
				b.WriteString("RRULE:FREQ=DAILY;INTERVAL=3;COUNT=30\r\n")
			default:
				b.WriteString("RRULE:FREQ=MONTHLY\r\n")
			}
			if i%5 == 2 && i%7 != 1 && !tz {
				fmt.Fprintf(&b, "EXDATE:%s\r\n", start.AddDate(0, 0, 7*(i%3)).Format("20060102T150405Z"))
			}
		}
		if i%5 == 0 {
			b.WriteString("BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:reminder\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n")
		}
		b.WriteString("END:VEVENT\r\n")
		if recurring && i%16 == 2 && i%7 != 1 && !tz && i%3 == 0 {
			// Move the second weekly occurrence a day later.
			rid := start.AddDate(0, 0, 7)
			fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\nRECURRENCE-ID:%s\r\nDTSTART:%s\r\nDTEND:%s\r\nSUMMARY:Event %d (moved)\r\nEND:VEVENT\r\n",
				uid, rid.Format("20060102T150405Z"), rid.AddDate(0, 0, 1).Format("20060102T150405Z"), rid.AddDate(0, 0, 1).Add(dur).Format("20060102T150405Z"), i)
		}
		b.WriteString("END:VCALENDAR\r\n")
		out[i] = item{name: uid + ".ics", body: b.String()}
	}
	return out
}
