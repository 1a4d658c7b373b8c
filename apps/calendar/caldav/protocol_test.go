package caldav_test

import (
	"bytes"
	"context"
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
