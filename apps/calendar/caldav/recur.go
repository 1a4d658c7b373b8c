package caldav

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"
)

// Instance is one occurrence of an event, to-do or journal entry: the
// master component's (or the override's) start and end.
type Instance struct {
	// Comp is the component the occurrence comes from: the master, or the
	// override whose RECURRENCE-ID names it.
	Comp *ical.Component
	// Start and End bound the occurrence (End == Start for an instant).
	Start, End time.Time
	// RecurrenceID is the occurrence's original start; zero for a
	// component that does not recur.
	RecurrenceID time.Time
	// AllDay: the start is a DATE.
	AllDay bool
}

// maxInstances bounds the occurrences one object may expand to in one range.
const maxInstances = 20000

// timeOf parses a DATE or DATE-TIME property value; floating times and
// dates are taken in loc. An unknown TZID is read as floating.
func timeOf(p *ical.Prop, loc *time.Location) (t time.Time, allDay bool, err error) {
	return parseTimeValue(p.Value, p.Params.Get(ical.ParamValue), p.Params.Get(ical.PropTimezoneID), loc)
}

func parseTimeValue(v, valueType, tzid string, loc *time.Location) (time.Time, bool, error) {
	v = strings.TrimSpace(v)
	if valueType == "DATE" || len(v) == 8 {
		t, err := time.ParseInLocation("20060102", v, loc)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("bad DATE %q", v)
		}
		return t, true, nil
	}
	if strings.HasSuffix(v, "Z") {
		t, err := time.Parse("20060102T150405Z", v)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("bad DATE-TIME %q", v)
		}
		return t, false, nil
	}
	if tzid != "" {
		if l, err := loadLocation(tzid); err == nil {
			loc = l
		}
	}
	t, err := time.ParseInLocation("20060102T150405", v, loc)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("bad DATE-TIME %q", v)
	}
	return t, false, nil
}

// loadLocation finds an IANA zone for a TZID, also for the
// "/mozilla.org/20050126_1/Europe/Berlin" style prefixes some clients use.
func loadLocation(tzid string) (*time.Location, error) {
	tzid = strings.Trim(tzid, `"`)
	if l, err := time.LoadLocation(tzid); err == nil {
		return l, nil
	}
	parts := strings.Split(tzid, "/")
	for i := 1; i < len(parts)-1; i++ {
		if l, err := time.LoadLocation(strings.Join(parts[i:], "/")); err == nil {
			return l, nil
		}
	}
	return nil, errors.New("unknown time zone " + tzid)
}

// span returns a component's start and end (RFC 4791 section 9.9): DTEND
// or DUE, else DURATION, else a day for a DATE start, else an instant.
// ok is false for a component with no DTSTART (nor DUE).
func span(c *ical.Component, loc *time.Location) (start, end time.Time, allDay, ok bool, err error) {
	sp := c.Props.Get(ical.PropDateTimeStart)
	if sp == nil {
		if due := c.Props.Get(ical.PropDue); due != nil {
			t, ad, err := timeOf(due, loc)
			return t, t, ad, err == nil, err
		}
		return time.Time{}, time.Time{}, false, false, nil
	}
	start, allDay, err = timeOf(sp, loc)
	if err != nil {
		return
	}
	end = start
	switch {
	case c.Props.Get(ical.PropDateTimeEnd) != nil:
		end, _, err = timeOf(c.Props.Get(ical.PropDateTimeEnd), loc)
	case c.Props.Get(ical.PropDue) != nil:
		end, _, err = timeOf(c.Props.Get(ical.PropDue), loc)
	case c.Props.Get(ical.PropDuration) != nil:
		var d time.Duration
		d, err = c.Props.Get(ical.PropDuration).Duration()
		end = start.Add(d)
	case allDay:
		end = start.AddDate(0, 0, 1)
	}
	if err == nil && end.Before(start) {
		end = start
	}
	return start, end, allDay, err == nil, err
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
// DATE, DATE-TIME or, for RDATE, PERIOD).
func dateList(props []ical.Prop, loc *time.Location) ([]time.Time, error) {
	var out []time.Time
	for _, p := range props {
		vt := p.Params.Get(ical.ParamValue)
		for _, v := range strings.Split(p.Value, ",") {
			if i := strings.IndexByte(v, '/'); i >= 0 { // PERIOD: its start
				v, vt = v[:i], ""
			}
			t, _, err := parseTimeValue(v, vt, p.Params.Get(ical.PropTimezoneID), loc)
			if err != nil {
				return nil, err
			}
			out = append(out, t)
		}
	}
	return out, nil
}

// recurrenceSet builds the rule set of a master component that recurs; nil
// when it has neither RRULE nor RDATE.
func recurrenceSet(c *ical.Component, start time.Time, loc *time.Location) (*rrule.Set, error) {
	rr := c.Props.Get(ical.PropRecurrenceRule)
	rdates := c.Props.Values(ical.PropRecurrenceDates)
	if rr == nil && len(rdates) == 0 {
		return nil, nil
	}
	set := &rrule.Set{}
	set.DTStart(start)
	if rr != nil {
		opt, err := rrule.StrToROptionInLocation(rr.Value, start.Location())
		if err != nil {
			return nil, fmt.Errorf("bad RRULE %q: %v", rr.Value, err)
		}
		opt.Dtstart = start
		rule, err := rrule.NewRRule(*opt)
		if err != nil {
			return nil, fmt.Errorf("bad RRULE %q: %v", rr.Value, err)
		}
		set.RRule(rule)
	}
	rd, err := dateList(rdates, start.Location())
	if err != nil {
		return nil, err
	}
	set.RDate(start) // DTSTART is always the first instance
	for _, t := range rd {
		set.RDate(t)
	}
	ex, err := dateList(c.Props.Values(ical.PropExceptionDates), start.Location())
	if err != nil {
		return nil, err
	}
	for _, t := range ex {
		set.ExDate(t)
	}
	return set, nil
}

// Instances returns the occurrences of the components named name (VEVENT,
// VTODO, VJOURNAL) in cal that overlap [rs, re) (zero bounds are open; an
// open end with a rule that never ends stops at maxInstances), sorted by
// start. Overrides (RECURRENCE-ID) replace the occurrence they name.
func Instances(cal *ical.Calendar, name string, rs, re time.Time, loc *time.Location) ([]Instance, error) {
	if loc == nil {
		loc = time.UTC
	}
	var masters []*ical.Component
	overrides := map[int64]*ical.Component{}
	for _, c := range cal.Children {
		if c.Name != name {
			continue
		}
		if rid := c.Props.Get(ical.PropRecurrenceID); rid != nil {
			t, _, err := timeOf(rid, loc)
			if err != nil {
				return nil, fmt.Errorf("RECURRENCE-ID: %v", err)
			}
			overrides[t.Unix()] = c
			continue
		}
		masters = append(masters, c)
	}
	var out []Instance
	add := func(c *ical.Component, rid time.Time) error {
		s, e, ad, ok, err := span(c, loc)
		if err != nil {
			return err
		}
		if !ok {
			// No date at all (a to-do without DTSTART or DUE): always in range.
			out = append(out, Instance{Comp: c, RecurrenceID: rid})
			return nil
		}
		if overlaps(s, e, rs, re) {
			out = append(out, Instance{Comp: c, Start: s, End: e, RecurrenceID: rid, AllDay: ad})
		}
		return nil
	}
	for _, m := range masters {
		s, e, ad, ok, err := span(m, loc)
		if err != nil {
			return nil, err
		}
		var set *rrule.Set
		if ok {
			if set, err = recurrenceSet(m, s, loc); err != nil {
				return nil, err
			}
		}
		if set == nil {
			if err := add(m, time.Time{}); err != nil {
				return nil, err
			}
			continue
		}
		dur := e.Sub(s)
		// Occurrences starting up to dur before the range can reach into it.
		from := rs.Add(-dur)
		if rs.IsZero() {
			from = s
		}
		it := set.Iterator()
		n := 0
		for {
			t, more := it()
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
				if err := add(ov, t); err != nil {
					return nil, err
				}
				continue
			}
			if overlaps(t, t.Add(dur), rs, re) {
				out = append(out, Instance{Comp: m, Start: t, End: t.Add(dur), RecurrenceID: t, AllDay: ad})
			}
		}
		_ = ad
	}
	// Overrides whose occurrence lies outside the rule (moved into the
	// range from elsewhere, or with no master here) count on their own.
	for rid, ov := range overrides {
		if err := add(ov, time.Unix(rid, 0).UTC()); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}
