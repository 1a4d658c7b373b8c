package caldav

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-ical"
)

// Instance is one occurrence of an event, to-do or journal entry: the
// master component's (or the override's) start and end.
type Instance struct {
	// Comp is the component the occurrence comes from: the master, or the
	// override whose RECURRENCE-ID names it.
	Comp *ical.Component
	// Start and End bound the occurrence (End == Start for an instant);
	// Start is in the zone of the component's DTSTART (so an all-day
	// occurrence's Start formats as its date).
	Start, End time.Time
	// RecurrenceID is the occurrence's original start; zero for a
	// component that does not recur.
	RecurrenceID time.Time
	// AllDay: the start is a DATE.
	AllDay bool
}

// maxInstances bounds the occurrences one object may expand to in one
// range; maxSteps the occurrences a rule is followed through to reach a
// range (a rule every second from 1900 would never get there): 200,000 is
// an hourly rule over 22 years, about a fifth of a second of CPU.
const (
	maxInstances = 20000
	maxSteps     = 200_000
)

// dtValue is a DATE or DATE-TIME value: its wall-clock reading (as a UTC
// time) and the zone it is read in (time.UTC for UTC values).
type dtValue struct {
	wall   time.Time
	loc    *time.Location
	allDay bool
}

// at is the value's instant, in its zone (zero for a zero value).
func (v dtValue) at() time.Time {
	if v.loc == nil {
		return v.wall
	}
	return instant(v.wall, v.loc)
}

// timeOf parses a DATE or DATE-TIME property into an instant (in its zone).
func timeOf(p *ical.Prop, z *zones) (t time.Time, allDay bool, err error) {
	v, err := parseDT(p.Value, p.Params.Get(ical.ParamValue), p.Params.Get(ical.PropTimezoneID), z)
	return v.at(), v.allDay, err
}

// parseDT parses a DATE or DATE-TIME value; dates and floating times are
// read in z's floating zone, times with a TZID in that zone.
func parseDT(v, valueType, tzid string, z *zones) (dtValue, error) {
	v = strings.TrimSpace(v)
	if valueType == "DATE" || len(v) == 8 {
		t, err := time.Parse("20060102", v)
		if err != nil {
			return dtValue{}, fmt.Errorf("bad DATE %q", v)
		}
		return dtValue{wall: t, loc: z.floating, allDay: true}, nil
	}
	if strings.HasSuffix(v, "Z") {
		t, err := time.Parse("20060102T150405Z", v)
		if err != nil {
			return dtValue{}, fmt.Errorf("bad DATE-TIME %q", v)
		}
		return dtValue{wall: t, loc: time.UTC}, nil
	}
	t, err := time.Parse("20060102T150405", v)
	if err != nil {
		return dtValue{}, fmt.Errorf("bad DATE-TIME %q", v)
	}
	return dtValue{wall: t, loc: z.location(tzid)}, nil
}

// span returns a component's start and end (RFC 4791 section 9.9): DTEND
// or DUE, else DURATION, else a day for a DATE start, else an instant.
// ok is false for a component with no DTSTART (nor DUE). wallDur is the
// length in wall-clock time, for the occurrences of all-day components.
func span(c *ical.Component, z *zones) (start dtValue, end time.Time, wallDur time.Duration, ok bool, err error) {
	sp := c.Props.Get(ical.PropDateTimeStart)
	if sp == nil {
		if due := c.Props.Get(ical.PropDue); due != nil {
			start, err = parseDT(due.Value, due.Params.Get(ical.ParamValue), due.Params.Get(ical.PropTimezoneID), z)
			return start, start.at(), 0, err == nil, err
		}
		return dtValue{}, time.Time{}, 0, false, nil
	}
	start, err = parseDT(sp.Value, sp.Params.Get(ical.ParamValue), sp.Params.Get(ical.PropTimezoneID), z)
	if err != nil {
		return
	}
	s := start.at()
	end = s
	endProp := c.Props.Get(ical.PropDateTimeEnd)
	if endProp == nil {
		endProp = c.Props.Get(ical.PropDue)
	}
	switch {
	case endProp != nil:
		var ev dtValue
		ev, err = parseDT(endProp.Value, endProp.Params.Get(ical.ParamValue), endProp.Params.Get(ical.PropTimezoneID), z)
		end, wallDur = ev.at(), ev.wall.Sub(start.wall)
	case c.Props.Get(ical.PropDuration) != nil:
		var d time.Duration
		d, err = c.Props.Get(ical.PropDuration).Duration()
		end, wallDur = s.Add(d), d
		if start.allDay {
			end = instant(start.wall.Add(d), start.loc)
		}
	case start.allDay:
		wallDur = 24 * time.Hour
		end = instant(start.wall.Add(wallDur), start.loc)
	}
	if err == nil && end.Before(s) {
		end, wallDur = s, 0
	}
	return start, end, wallDur, err == nil, err
}

// overlaps is RFC 4791's time-range test for an occurrence [s, e) against
// [rs, re) (a zero bound is open).
func overlaps(s, e, rs, re time.Time) bool {
	if e.After(s) {
		return (re.IsZero() || s.Before(re)) && (rs.IsZero() || e.After(rs))
	}
	return (rs.IsZero() || !s.Before(rs)) && (re.IsZero() || s.Before(re))
}

// dateList parses the values of RDATE or EXDATE properties (comma lists of
// DATE, DATE-TIME or, for RDATE, PERIOD) into instants.
func dateList(props []ical.Prop, z *zones) ([]time.Time, error) {
	var out []time.Time
	for _, p := range props {
		vt := p.Params.Get(ical.ParamValue)
		for _, v := range strings.Split(p.Value, ",") {
			if i := strings.IndexByte(v, '/'); i >= 0 { // PERIOD: its start
				v, vt = v[:i], ""
			}
			t, err := parseDT(v, vt, p.Params.Get(ical.PropTimezoneID), z)
			if err != nil {
				return nil, err
			}
			out = append(out, t.at())
		}
	}
	return out, nil
}

// recurrence iterates over the occurrence starts of a master component
// that recurs, in order; nil when it has neither RRULE nor RDATE. The
// RRULE runs on the wall clock of DTSTART's zone (so a weekly 10:00 stays
// at 10:00 local time across DST changes); RDATEs and EXDATEs are instants.
// The iterator's error is the recurrence library's failure, if any.
func recurrence(c *ical.Component, start dtValue, z *zones) (func() (time.Time, bool, error), error) {
	rr := c.Props.Get(ical.PropRecurrenceRule)
	rdates := c.Props.Values(ical.PropRecurrenceDates)
	if rr == nil && len(rdates) == 0 {
		return nil, nil
	}
	rule := func() (time.Time, bool) { return time.Time{}, false }
	var it *ruleIter
	if rr != nil {
		var err error
		if it, err = wallRule(rr.Value, start.wall, start.loc); err != nil {
			return nil, err
		}
		rule = func() (time.Time, bool) {
			w, ok := it.Next()
			if !ok {
				return time.Time{}, false
			}
			return instant(w, start.loc), true
		}
	}
	rd, err := dateList(rdates, z)
	if err != nil {
		return nil, err
	}
	rd = append(rd, start.at()) // DTSTART is always the first instance
	sort.Slice(rd, func(i, j int) bool { return rd[i].Before(rd[j]) })
	ex, err := dateList(c.Props.Values(ical.PropExceptionDates), z)
	if err != nil {
		return nil, err
	}
	excluded := make(map[int64]bool, len(ex))
	for _, t := range ex {
		excluded[t.Unix()] = true
	}
	next, more := rule()
	var last time.Time
	emitted := false
	return func() (time.Time, bool, error) {
		for more || len(rd) > 0 {
			if it != nil && it.err != nil {
				return time.Time{}, false, it.err
			}
			var t time.Time
			if more && (len(rd) == 0 || !rd[0].Before(next)) {
				t = next
				next, more = rule()
			} else {
				t, rd = rd[0], rd[1:]
			}
			if (emitted && t.Equal(last)) || excluded[t.Unix()] {
				continue
			}
			last, emitted = t, true
			return t.In(start.loc), true, nil
		}
		if it != nil && it.err != nil {
			return time.Time{}, false, it.err
		}
		return time.Time{}, false, nil
	}, nil
}

// Instances returns the occurrences of the components named name (VEVENT,
// VTODO, VJOURNAL) in cal that overlap [rs, re) (zero bounds are open; an
// open end with a rule that never ends stops at maxInstances), sorted by
// start. Overrides (RECURRENCE-ID) replace the occurrence they name.
// Floating times are read in loc (nil: UTC); TZIDs as the object's
// VTIMEZONEs define them (see zones).
func Instances(cal *ical.Calendar, name string, rs, re time.Time, loc *time.Location) ([]Instance, error) {
	return instances(cal, name, rs, re, newZones(cal, loc))
}

// override is a component with a RECURRENCE-ID and the instant it names.
type override struct {
	comp *ical.Component
	rid  time.Time
}

func instances(cal *ical.Calendar, name string, rs, re time.Time, z *zones) ([]Instance, error) {
	var masters []*ical.Component
	overrides := map[int64]override{}
	for _, c := range cal.Children {
		if c.Name != name {
			continue
		}
		if rid := c.Props.Get(ical.PropRecurrenceID); rid != nil {
			t, _, err := timeOf(rid, z)
			if err != nil {
				return nil, fmt.Errorf("RECURRENCE-ID: %v", err)
			}
			overrides[t.Unix()] = override{c, t}
			continue
		}
		masters = append(masters, c)
	}
	var out []Instance
	add := func(c *ical.Component, rid time.Time) error {
		sv, e, _, ok, err := span(c, z)
		if err != nil {
			return err
		}
		if !ok {
			// No date at all (a to-do without DTSTART or DUE): always in range.
			out = append(out, Instance{Comp: c, RecurrenceID: rid})
			return nil
		}
		if s := sv.at(); overlaps(s, e, rs, re) {
			out = append(out, Instance{Comp: c, Start: s, End: e, RecurrenceID: rid, AllDay: sv.allDay})
		}
		return nil
	}
	for _, m := range masters {
		sv, e, wallDur, ok, err := span(m, z)
		if err != nil {
			return nil, err
		}
		var next func() (time.Time, bool, error)
		if ok {
			if next, err = recurrence(m, sv, z); err != nil {
				return nil, err
			}
		}
		if next == nil {
			if err := add(m, time.Time{}); err != nil {
				return nil, err
			}
			continue
		}
		s := sv.at()
		dur := e.Sub(s)
		end := func(t time.Time) time.Time {
			if sv.allDay { // all-day occurrences last as many days
				return instant(wallOf(t).Add(wallDur), sv.loc)
			}
			return t.Add(dur)
		}
		// Occurrences starting up to a little more than dur before the
		// range can reach into it.
		from := rs.Add(-dur - 2*time.Hour)
		if rs.IsZero() {
			from = s
		}
		n := 0
		for steps := 0; steps < maxSteps; steps++ {
			if err := z.work.spend(1); err != nil {
				return nil, err
			}
			t, more, err := next()
			if err != nil {
				return nil, err
			}
			if !more || n >= maxInstances {
				break
			}
			if !re.IsZero() && !t.Before(re) {
				break
			}
			if t.Before(from) {
				continue
			}
			n++
			if ov, ok := overrides[t.Unix()]; ok {
				delete(overrides, t.Unix())
				if err := add(ov.comp, t); err != nil {
					return nil, err
				}
				continue
			}
			if e := end(t); overlaps(t, e, rs, re) {
				out = append(out, Instance{Comp: m, Start: t, End: e, RecurrenceID: t, AllDay: sv.allDay})
			}
		}
	}
	// Overrides whose occurrence lies outside the rule (moved into the
	// range from elsewhere, or with no master here) count on their own.
	for _, ov := range overrides {
		if err := add(ov.comp, ov.rid); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}
