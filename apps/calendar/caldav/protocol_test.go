package caldav_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-webdav"
	wcaldav "github.com/emersion/go-webdav/caldav"

	"github.com/nymote/nymote/apps/calendar/caldav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
)

func ics(body string) string {
	return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" + strings.ReplaceAll(strings.TrimSpace(body), "\n", "\r\n") + "\r\nEND:VCALENDAR\r\n"
}

const recurring = `BEGIN:VEVENT
UID:standup
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Berlin:20260105T100000
DTEND;TZID=Europe/Berlin:20260105T103000
RRULE:FREQ=WEEKLY;BYDAY=MO
EXDATE;TZID=Europe/Berlin:20260209T100000
SUMMARY:standup
END:VEVENT
BEGIN:VEVENT
UID:standup
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Berlin:20260216T100000
DTSTART;TZID=Europe/Berlin:20260217T100000
DTEND;TZID=Europe/Berlin:20260217T103000
SUMMARY:standup (moved)
END:VEVENT`

const single = `BEGIN:VEVENT
UID:dentist
DTSTAMP:20260101T000000Z
DTSTART:20260310T080000Z
DTEND:20260310T090000Z
SUMMARY:dentist
END:VEVENT`

func TestGoWebDAVClient(t *testing.T) {
	s := davtest.Start(t, caldav.New(0))
	ctx := context.Background()
	hc := davtest.Client("alice")
	wc, err := webdav.NewClient(hc, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	principal, err := wc.FindCurrentUserPrincipal(ctx)
	if err != nil || principal != "/alice/" {
		t.Fatalf("principal %q, %v", principal, err)
	}
	c, err := wcaldav.NewClient(hc, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	home, err := c.FindCalendarHomeSet(ctx, principal)
	if err != nil || home != "/alice/" {
		t.Fatalf("home %q, %v", home, err)
	}
	cals, err := c.FindCalendars(ctx, home)
	if err != nil || len(cals) != 1 || cals[0].Path != "/alice/default/" {
		t.Fatalf("calendars %+v, %v", cals, err)
	}
	for name, body := range map[string]string{"standup.ics": recurring, "dentist.ics": single} {
		cal, err := ical.NewDecoder(strings.NewReader(ics(body))).Decode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutCalendarObject(ctx, "/alice/default/"+name, cal); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	co, err := c.GetCalendarObject(ctx, "/alice/default/standup.ics")
	if err != nil || co.ETag == "" {
		t.Fatalf("get: %+v, %v", co, err)
	}
	query := func(start, end time.Time) []string {
		objs, err := c.QueryCalendar(ctx, "/alice/default/", &wcaldav.CalendarQuery{
			CompRequest: wcaldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true},
			CompFilter:  wcaldav.CompFilter{Name: "VCALENDAR", Comps: []wcaldav.CompFilter{{Name: "VEVENT", Start: start, End: end}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, o := range objs {
			names = append(names, o.Path)
		}
		return names
	}
	d := func(s string) time.Time { t, _ := time.Parse(time.RFC3339, s); return t }
	tests := []struct {
		name       string
		start, end time.Time
		want       []string
	}{
		{"a later week of the rule", d("2026-02-02T00:00:00Z"), d("2026-02-03T00:00:00Z"), []string{"/alice/default/standup.ics"}},
		{"an excluded date", d("2026-02-09T00:00:00Z"), d("2026-02-10T00:00:00Z"), nil},
		{"the moved instance's old day", d("2026-02-16T00:00:00Z"), d("2026-02-17T00:00:00Z"), nil},
		{"the moved instance's new day", d("2026-02-17T00:00:00Z"), d("2026-02-18T00:00:00Z"), []string{"/alice/default/standup.ics"}},
		{"both", d("2026-03-09T00:00:00Z"), d("2026-03-11T00:00:00Z"), []string{"/alice/default/dentist.ics", "/alice/default/standup.ics"}},
		{"a Sunday", d("2026-03-08T00:00:00Z"), d("2026-03-09T00:00:00Z"), nil},
	}
	for _, tc := range tests {
		if got := query(tc.start, tc.end); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	objs, err := c.MultiGetCalendar(ctx, "/alice/default/", &wcaldav.CalendarMultiGet{
		Paths:       []string{"/alice/default/standup.ics", "/alice/default/dentist.ics"},
		CompRequest: wcaldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true},
	})
	if err != nil || len(objs) != 2 {
		t.Fatalf("multiget: %d objects, %v", len(objs), err)
	}
}

func TestRawReports(t *testing.T) {
	s := davtest.Start(t, caldav.New(0))
	mk := `<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:A="http://apple.com/ns/ical/"><D:set><D:prop>
<D:displayname>Work</D:displayname><A:calendar-color>#00ff00</A:calendar-color>
<C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>`
	if r := s.Do("alice", "MKCALENDAR", "/alice/work/", mk); r.Status != 201 {
		t.Fatalf("MKCALENDAR: %d %s", r.Status, r.Body)
	}
	if r := s.Do("alice", "PUT", "/alice/work/s.ics", ics(recurring), "Content-Type", "text/calendar"); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	todo := ics("BEGIN:VTODO\nUID:t\nDTSTAMP:20260101T000000Z\nSUMMARY:x\nEND:VTODO")
	if r := s.Do("alice", "PUT", "/alice/work/t.ics", todo, "Content-Type", "text/calendar"); r.Status != 403 || !strings.Contains(r.Body, "supported-calendar-component") {
		t.Errorf("a VTODO in a VEVENT calendar: %d %s", r.Status, r.Body)
	}
	r := s.Do("alice", "PROPFIND", "/alice/work/", `<propfind xmlns="DAV:"><prop><displayname/><supported-calendar-component-set xmlns="urn:ietf:params:xml:ns:caldav"/><calendar-color xmlns="http://apple.com/ns/ical/"/></prop></propfind>`, "Depth", "0")
	for _, want := range []string{"Work", "#00ff00", `<cal:comp name="VEVENT"/>`} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("PROPFIND lacks %s: %s", want, r.Body)
		}
	}
	expand := `<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/>
<C:calendar-data><C:expand start="20260201T000000Z" end="20260301T000000Z"/></C:calendar-data></D:prop>
<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="20260201T000000Z" end="20260301T000000Z"/></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`
	r = s.Do("alice", "REPORT", "/alice/work/", expand, "Depth", "1")
	// February: the 2nd and 23rd as ruled, the 9th excluded, the 16th moved to the 17th.
	for _, want := range []string{"DTSTART:20260202T090000Z", "DTSTART:20260217T090000Z", "RECURRENCE-ID:20260216T090000Z", "DTSTART:20260223T090000Z"} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("expand lacks %s: %s", want, r.Body)
		}
	}
	if strings.Contains(r.Body, "RRULE") || strings.Contains(r.Body, "20260209") {
		t.Errorf("expand kept a rule or an excluded date: %s", r.Body)
	}
	fb := `<?xml version="1.0"?><C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:time-range start="20260201T000000Z" end="20260301T000000Z"/></C:free-busy-query>`
	r = s.Do("alice", "REPORT", "/alice/work/", fb, "Depth", "1")
	if r.Status != 200 || strings.Count(r.Body, "FREEBUSY;FBTYPE=BUSY:") != 3 || !strings.Contains(r.Body, "20260217T090000Z/20260217T093000Z") {
		t.Errorf("free-busy: %d %s", r.Status, r.Body)
	}
	if _, err := ical.NewDecoder(bytes.NewReader([]byte(r.Body))).Decode(); err != nil {
		t.Errorf("free-busy answer does not parse: %v", err)
	}
}

// TestUnsupportedCollation: a calendar-query naming a collation the server
// lacks is 403 with CALDAV:supported-collation (RFC 4791 section 7.5.1), as
// in CardDAV.
func TestUnsupportedCollation(t *testing.T) {
	s := davtest.Start(t, caldav.New(0))
	put(t, s, "/alice/default/s.ics", ics(recurring))
	filter := func(collation string) string {
		return `<C:comp-filter name="VEVENT"><C:prop-filter name="UID"><C:text-match collation="` + collation + `">S</C:text-match></C:prop-filter></C:comp-filter>`
	}
	if r := query(s, "/alice/default/", "<D:getetag/>", filter("i;basic")); r.Status != 403 || !strings.Contains(r.Body, "supported-collation") {
		t.Errorf("unsupported collation: %d %s; want 403 supported-collation", r.Status, r.Body)
	}
	if r := query(s, "/alice/default/", "<D:getetag/>", filter("i;ascii-casemap")); r.Status != 207 || !strings.Contains(r.Body, "s.ics") {
		t.Errorf("i;ascii-casemap: %d %s", r.Status, r.Body)
	}
}

const calQuery = `<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop>%s</D:prop>
<C:filter><C:comp-filter name="VCALENDAR">%s</C:comp-filter></C:filter></C:calendar-query>`

func query(s *davtest.Server, path, data, filter string) davtest.Response {
	return s.Do("alice", "REPORT", path, fmt.Sprintf(calQuery, data, filter), "Depth", "1")
}

func mkcalendar(t *testing.T, s *davtest.Server, path, props string) {
	t.Helper()
	mk := `<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>` + props + `</D:prop></D:set></C:mkcalendar>`
	if r := s.Do("alice", "MKCALENDAR", path, mk); r.Status != 201 {
		t.Fatalf("MKCALENDAR %s: %d %s", path, r.Status, r.Body)
	}
}

func put(t *testing.T, s *davtest.Server, path, body string) {
	t.Helper()
	if r := s.Do("alice", "PUT", path, body, "Content-Type", "text/calendar"); r.Status != 201 {
		t.Fatalf("PUT %s: %d %s", path, r.Status, r.Body)
	}
}

// TestPartialRetrieval covers calendar-data's comp, prop, allprop, allcomp
// and novalue (RFC 4791 section 9.6), limit-recurrence-set and
// limit-freebusy-set.
func TestPartialRetrieval(t *testing.T) {
	s := davtest.Start(t, caldav.New(0))
	mkcalendar(t, s, "/alice/fb/", `<C:supported-calendar-component-set><C:comp name="VEVENT"/><C:comp name="VFREEBUSY"/></C:supported-calendar-component-set>`)
	april := `BEGIN:VEVENT
UID:standup
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Berlin:20260406T100000
DTSTART;TZID=Europe/Berlin:20260406T140000
DTEND;TZID=Europe/Berlin:20260406T143000
SUMMARY:standup (April, moved)
END:VEVENT`
	alarm := `BEGIN:VALARM
ACTION:DISPLAY
DESCRIPTION:soon
TRIGGER:-PT15M
END:VALARM`
	put(t, s, "/alice/fb/s.ics", ics(strings.Replace(recurring, "SUMMARY:standup\n", "SUMMARY:standup\n"+alarm+"\n", 1)+"\n"+april))
	put(t, s, "/alice/fb/busy.ics", ics(`BEGIN:VFREEBUSY
UID:fb
DTSTAMP:20260101T000000Z
DTSTART:20260101T000000Z
DTEND:20260401T000000Z
FREEBUSY:20260110T100000Z/20260110T110000Z,20260210T100000Z/PT1H
FREEBUSY;FBTYPE=BUSY-TENTATIVE:20260310T100000Z/20260310T110000Z
END:VFREEBUSY`))
	events := `<C:comp-filter name="VEVENT"/>`
	tests := []struct {
		name, data, filter string
		status             int
		want, not          []string
	}{
		{"props of VCALENDAR and VEVENT",
			`<C:calendar-data><C:comp name="VCALENDAR"><C:prop name="VERSION"/><C:comp name="VEVENT"><C:prop name="SUMMARY"/><C:prop name="UID"/><C:prop name="DTSTART"/></C:comp></C:comp></C:calendar-data>`, events, 207,
			[]string{"VERSION:2.0", "SUMMARY:standup&#13;", "SUMMARY:standup (moved)", "UID:standup", "DTSTART;TZID=Europe/Berlin:20260105T100000"},
			[]string{"PRODID", "DTEND", "RRULE", "DTSTAMP", "VALARM", "RECURRENCE-ID"}},
		{"allprop without components",
			`<C:calendar-data><C:comp name="VCALENDAR"><C:allprop/><C:comp name="VEVENT"><C:allprop/></C:comp></C:comp></C:calendar-data>`, events, 207,
			[]string{"PRODID:-//test//EN", "RRULE:FREQ=WEEKLY;BYDAY=MO", "RECURRENCE-ID;TZID=Europe/Berlin:20260216T100000"},
			[]string{"VALARM"}},
		{"allcomp keeps alarms",
			`<C:calendar-data><C:comp name="VCALENDAR"><C:comp name="VEVENT"><C:prop name="UID"/><C:allcomp/></C:comp></C:comp></C:calendar-data>`, events, 207,
			[]string{"BEGIN:VALARM", "TRIGGER:-PT15M", "UID:standup"},
			[]string{"VERSION", "SUMMARY"}},
		{"a bare comp is the whole component",
			`<C:calendar-data><C:comp name="VCALENDAR"><C:comp name="VEVENT"/></C:comp></C:calendar-data>`, events, 207,
			[]string{"RRULE:FREQ=WEEKLY;BYDAY=MO", "BEGIN:VALARM", "SUMMARY:standup (moved)"},
			[]string{"VERSION"}},
		{"novalue",
			`<C:calendar-data><C:comp name="VCALENDAR"><C:comp name="VEVENT"><C:prop name="DESCRIPTION" novalue="yes"/><C:prop name="SUMMARY" novalue="yes"/></C:comp></C:comp></C:calendar-data>`, events, 207,
			[]string{"SUMMARY:&#13;"},
			[]string{"standup"}},
		{"limit-recurrence-set keeps the master and February's override",
			`<C:calendar-data><C:limit-recurrence-set start="20260201T000000Z" end="20260301T000000Z"/></C:calendar-data>`, events, 207,
			[]string{"RRULE:FREQ=WEEKLY;BYDAY=MO", "SUMMARY:standup (moved)", "BEGIN:VALARM"},
			[]string{"April"}},
		{"limit-recurrence-set by the original time of a moved instance",
			`<C:calendar-data><C:limit-recurrence-set start="20260406T070000Z" end="20260406T090000Z"/></C:calendar-data>`, events, 207,
			[]string{"April"},
			[]string{"standup (moved)"}},
		{"limit-freebusy-set",
			`<C:calendar-data><C:limit-freebusy-set start="20260201T000000Z" end="20260301T000000Z"/></C:calendar-data>`, `<C:comp-filter name="VFREEBUSY"/>`, 207,
			[]string{"FREEBUSY:20260210T100000Z/PT1H", "DTSTART:20260101T000000Z"},
			[]string{"20260110T100000Z", "BUSY-TENTATIVE"}},
		{"expand with a selection",
			`<C:calendar-data><C:comp name="VCALENDAR"><C:comp name="VEVENT"><C:prop name="DTSTART"/><C:prop name="RECURRENCE-ID"/></C:comp></C:comp><C:expand start="20260201T000000Z" end="20260301T000000Z"/></C:calendar-data>`, events, 207,
			[]string{"DTSTART:20260202T090000Z", "RECURRENCE-ID:20260216T090000Z", "DTSTART:20260217T090000Z"},
			[]string{"SUMMARY", "RRULE", "TZID"}},
		{"expand and limit-recurrence-set at once",
			`<C:calendar-data><C:expand start="20260201T000000Z" end="20260301T000000Z"/><C:limit-recurrence-set start="20260201T000000Z" end="20260301T000000Z"/></C:calendar-data>`, events, 400,
			[]string{"exclude each other"}, nil},
		{"a comp other than VCALENDAR outside",
			`<C:calendar-data><C:comp name="VEVENT"/></C:calendar-data>`, events, 400,
			[]string{"must be VCALENDAR"}, nil},
		{"another media type",
			`<C:calendar-data content-type="application/calendar+json"/>`, events, 403,
			[]string{"supported-calendar-data"}, nil},
		{"an expand without end",
			`<C:calendar-data><C:expand start="20260201T000000Z"/></C:calendar-data>`, events, 400,
			[]string{"needs a start and an end"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := query(s, "/alice/fb/", tc.data, tc.filter)
			if r.Status != tc.status {
				t.Fatalf("got %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Body, w) {
					t.Errorf("lacks %q: %s", w, r.Body)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(r.Body, n) {
					t.Errorf("has %q: %s", n, r.Body)
				}
			}
		})
	}
}

const usEastern = `BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VTIMEZONE
TZID:US-Eastern
BEGIN:STANDARD
DTSTART:20071104T020000
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
TZNAME:EST
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:20070311T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU
TZOFFSETFROM:-0500
TZOFFSETTO:-0400
TZNAME:EDT
END:DAYLIGHT
END:VTIMEZONE
END:VCALENDAR
`

// TestTimeZoneQueries: time ranges, expand and free-busy follow the
// object's VTIMEZONE rules across DST changes, and the calendar's
// calendar-timezone places floating times.
func TestTimeZoneQueries(t *testing.T) {
	s := davtest.Start(t, caldav.New(0))
	mkcalendar(t, s, "/alice/ny/", `<C:calendar-timezone>`+strings.ReplaceAll(usEastern, "\n", "&#13;\n")+`</C:calendar-timezone>`)
	put(t, s, "/alice/ny/weekly.ics", ics(caldav.OutlookZone+`
BEGIN:VEVENT
UID:weekly
DTSTAMP:20260101T000000Z
DTSTART;TZID=W. Europe Standard Time:20260316T100000
DTEND;TZID=W. Europe Standard Time:20260316T110000
RRULE:FREQ=WEEKLY;COUNT=4
SUMMARY:weekly
END:VEVENT`))
	put(t, s, "/alice/ny/gap.ics", ics(caldav.OutlookZone+`
BEGIN:VEVENT
UID:gap
DTSTAMP:20260101T000000Z
DTSTART;TZID=W. Europe Standard Time:20260329T023000
DURATION:PT30M
SUMMARY:gap
END:VEVENT`))
	put(t, s, "/alice/ny/floating.ics", ics(`BEGIN:VEVENT
UID:floating
DTSTAMP:20260101T000000Z
DTSTART:20260310T090000
DURATION:PT1H
SUMMARY:floating
END:VEVENT`))
	timeRange := func(start, end string) string {
		return `<C:comp-filter name="VEVENT"><C:time-range start="` + start + `" end="` + end + `"/></C:comp-filter>`
	}
	tests := []struct {
		name, start, end string
		want             []string
	}{
		{"winter occurrence at 09:00 UTC", "20260323T090000Z", "20260323T093000Z", []string{"weekly.ics"}},
		{"summer occurrence at 08:00 UTC", "20260330T080000Z", "20260330T083000Z", []string{"weekly.ics"}},
		{"no summer occurrence at 09:00 UTC", "20260330T091500Z", "20260330T093000Z", nil},
		{"02:30 on the spring-forward day is 01:30 UTC", "20260329T013000Z", "20260329T014500Z", []string{"gap.ics"}},
		{"floating 09:00 in New York is 13:00 UTC", "20260310T130000Z", "20260310T133000Z", []string{"floating.ics"}},
		{"floating 09:00 is not 09:00 UTC", "20260310T090000Z", "20260310T100000Z", nil},
	}
	for _, tc := range tests {
		r := query(s, "/alice/ny/", "<D:getetag/>", timeRange(tc.start, tc.end))
		var got []string
		for _, n := range []string{"floating.ics", "gap.ics", "weekly.ics"} {
			if strings.Contains(r.Body, n) {
				got = append(got, n)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: got %v, want %v (%d)", tc.name, got, tc.want, r.Status)
		}
	}
	// A query's own timezone takes the place of calendar-timezone: 09:00
	// in Tokyo is 00:00 UTC.
	tokyo := "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\nBEGIN:VTIMEZONE\nTZID:Asia/Tokyo\nBEGIN:STANDARD\nDTSTART:19700101T000000\nTZOFFSETFROM:+0900\nTZOFFSETTO:+0900\nEND:STANDARD\nEND:VTIMEZONE\nEND:VCALENDAR\n"
	withTZ := strings.Replace(calQuery, "</C:filter>", "</C:filter><C:timezone>"+tokyo+"</C:timezone>", 1)
	r := s.Do("alice", "REPORT", "/alice/ny/", fmt.Sprintf(withTZ, "<D:getetag/>", timeRange("20260310T000000Z", "20260310T003000Z")), "Depth", "1")
	if !strings.Contains(r.Body, "floating.ics") {
		t.Errorf("a query with its own timezone: %d %s", r.Status, r.Body)
	}
	r = s.Do("alice", "REPORT", "/alice/ny/", fmt.Sprintf(withTZ, "<D:getetag/>", timeRange("20260310T130000Z", "20260310T133000Z")), "Depth", "1")
	if strings.Contains(r.Body, "floating.ics") {
		t.Errorf("a query with its own timezone used the calendar's: %s", r.Body)
	}
	r = query(s, "/alice/ny/", `<C:calendar-data><C:expand start="20260301T000000Z" end="20260501T000000Z"/></C:calendar-data>`, timeRange("20260301T000000Z", "20260501T000000Z"))
	for _, want := range []string{"DTSTART:20260316T090000Z", "DTSTART:20260323T090000Z", "DTSTART:20260330T080000Z", "DTSTART:20260406T080000Z", "DTEND:20260406T090000Z", "DTSTART:20260329T013000Z", "DTSTART:20260310T130000Z"} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("expand lacks %s: %s", want, r.Body)
		}
	}
	fb := `<?xml version="1.0"?><C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:time-range start="20260310T000000Z" end="20260401T000000Z"/></C:free-busy-query>`
	r = s.Do("alice", "REPORT", "/alice/ny/", fb, "Depth", "1")
	for _, want := range []string{"20260310T130000Z/20260310T140000Z", "20260323T090000Z/20260323T100000Z", "20260330T080000Z/20260330T090000Z", "20260329T013000Z/20260329T020000Z"} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("free-busy lacks %s: %s", want, r.Body)
		}
	}
	// A calendar-timezone must be a VCALENDAR with one VTIMEZONE.
	pp := `<D:propertyupdate xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><C:calendar-timezone>` + strings.ReplaceAll(ics(single), "\r\n", "\n") + `</C:calendar-timezone></D:prop></D:set></D:propertyupdate>`
	if r := s.Do("alice", "PROPPATCH", "/alice/ny/", pp); r.Status != 207 || !strings.Contains(r.Body, "403 Forbidden") ||
		!strings.Contains(r.Body, "<cal:valid-calendar-data/>") || !strings.Contains(r.Body, "calendar-timezone: a VEVENT is not a time zone") {
		t.Errorf("PROPPATCH of a bad calendar-timezone: %d %s", r.Status, r.Body)
	}
	pf := `<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><C:calendar-timezone/></D:prop></D:propfind>`
	if r := s.Do("alice", "PROPFIND", "/alice/ny/", pf, "Depth", "0"); !strings.Contains(r.Body, "TZID:US-Eastern") {
		t.Errorf("calendar-timezone after a refused change: %s", r.Body)
	}
}
