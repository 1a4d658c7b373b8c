package caldav

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-ical"

	"github.com/nymote/nymote/apps/internal/dav"
)

func propValue(c *ical.Component, name string) string {
	if p := c.Props.Get(name); p != nil {
		return p.Value
	}
	return ""
}

// timeRange reads a CALDAV:time-range element; zero bounds are open.
func timeRange(n *dav.Node) (start, end time.Time, err error) {
	parse := func(s string) (time.Time, error) {
		if s == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse("20060102T150405Z", s)
		if err != nil {
			return time.Time{}, dav.Errorf(http.StatusBadRequest, dav.Name(dav.NSCalDAV, "valid-filter"), "time-range %q: want a UTC date-time such as 20060102T150405Z", s)
		}
		return t, nil
	}
	if start, err = parse(n.AttrValue("start")); err != nil {
		return
	}
	if end, err = parse(n.AttrValue("end")); err != nil {
		return
	}
	if start.IsZero() && end.IsZero() {
		err = dav.Errorf(http.StatusBadRequest, dav.Name(dav.NSCalDAV, "valid-filter"), "time-range needs a start or an end")
	}
	return
}

func (k *Kind) query(ctx context.Context, r *dav.ReportRequest) error {
	filter := r.Body.Child(dav.Name(dav.NSCalDAV, "filter"))
	if err := checkFilter(filter); err != nil {
		return err
	}
	var top *dav.Node
	if filter != nil {
		top = filter.Child(dav.Name(dav.NSCalDAV, "comp-filter"))
	}
	// Floating times: the query's CALDAV:timezone (RFC 4791 section 9.8),
	// else the calendar's calendar-timezone.
	floating := k.floatingZone(r.Collection)
	if tz := r.Body.Child(dav.Name(dav.NSCalDAV, "timezone")); tz != nil {
		l, err := parseCalendarTimezone("calendar-query timezone", tz.Text)
		if err != nil {
			return err
		}
		floating = l
	}
	objs, err := r.Objects()
	if err != nil {
		return err
	}
	w := newWork(ctx, maxQueryWork)
	var out []*dav.Object
	for _, o := range objs {
		if err := w.spend(1); err != nil {
			return err
		}
		c, err := k.calendar(o)
		if err != nil {
			continue
		}
		ok, err := matchFilter(top, c, floating, w)
		if err != nil {
			return err
		}
		if ok {
			out = append(out, o)
		}
	}
	// calendar-data with expand renders each object's occurrences after
	// this, on the REPORT's rendering budget (RenderContext), which cuts
	// the connection if it runs out once the response has begun: run the
	// same expansions on the query's budget first, so that a query too
	// costly is answered 507 before any of it is sent.
	dr, err := parseDataRequest(r.Body.Child(dav.Name(dav.NSDAV, "prop")).Child(dav.Name(dav.NSCalDAV, "calendar-data")))
	if err != nil {
		return err
	}
	if dr != nil && dr.expand != nil {
		for _, o := range out {
			c, err := k.calendar(o)
			if err != nil {
				continue
			}
			z := newZones(c, floating)
			z.work = w
			if _, err := expand(c, dr.expand[0], dr.expand[1], z); err != nil {
				if err := w.failure(); err != nil {
					return err
				}
			}
		}
	}
	return r.Respond(out)
}

// MatchFilter evaluates the top comp-filter of a calendar-query (RFC 4791
// section 9.7) against a calendar object; nil matches everything. Floating
// times are read in floating (the calendar's calendar-timezone; nil: UTC).
func MatchFilter(top *dav.Node, c *ical.Calendar, floating *time.Location) (bool, error) {
	return matchFilter(top, c, floating, nil)
}

// matchFilter is MatchFilter on a request's work budget.
func matchFilter(top *dav.Node, c *ical.Calendar, floating *time.Location, w *work) (bool, error) {
	if top == nil {
		return true, nil
	}
	if !strings.EqualFold(top.AttrValue("name"), ical.CompCalendar) {
		return top.Child(dav.Name(dav.NSCalDAV, "is-not-defined")) != nil, nil
	}
	z := newZones(c, floating)
	z.work = w
	return matchComp(top, c.Component, c, z)
}

// matchComp checks the filters inside comp-filter f against comp.
func matchComp(f *dav.Node, comp *ical.Component, root *ical.Calendar, z *zones) (bool, error) {
	for _, cf := range f.All(dav.Name(dav.NSCalDAV, "comp-filter")) {
		if err := z.work.spend(1); err != nil {
			return false, err
		}
		name := strings.ToUpper(cf.AttrValue("name"))
		var cands []*ical.Component
		for _, ch := range comp.Children {
			if ch.Name == name {
				cands = append(cands, ch)
			}
		}
		if cf.Child(dav.Name(dav.NSCalDAV, "is-not-defined")) != nil {
			if len(cands) > 0 {
				return false, nil
			}
			continue
		}
		if len(cands) == 0 {
			return false, nil
		}
		matched := false
		if tr := cf.Child(dav.Name(dav.NSCalDAV, "time-range")); tr != nil {
			rs, re, err := timeRange(tr)
			if err != nil {
				return false, err
			}
			if comp == root.Component {
				// An object's occurrences, recurrence and overrides included.
				inst, err := instances(root, name, rs, re, z)
				if err != nil {
					// A stored object that does not expand matches no
					// time-range; a spent budget ends the query.
					return false, z.work.failure()
				}
				cands = cands[:0]
				seen := map[*ical.Component]bool{}
				for _, in := range inst {
					if !seen[in.Comp] {
						seen[in.Comp] = true
						cands = append(cands, in.Comp)
					}
				}
			} else {
				cands = filterByOwnSpan(cands, rs, re, z)
			}
		}
		for _, cand := range cands {
			ok, err := matchComp(cf, cand, root, z)
			if err != nil {
				return false, err
			}
			if ok {
				matched = true
				break
			}
		}
		if !matched {
			return false, nil
		}
	}
	for _, pf := range f.All(dav.Name(dav.NSCalDAV, "prop-filter")) {
		if err := z.work.spend(1); err != nil {
			return false, err
		}
		ok, err := matchProp(pf, comp, z)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// filterByOwnSpan keeps nested components (VALARM and the like) whose own
// DTSTART/DTEND overlap the range; those without dates are kept.
func filterByOwnSpan(cs []*ical.Component, rs, re time.Time, z *zones) []*ical.Component {
	var out []*ical.Component
	for _, c := range cs {
		s, e, _, ok, err := span(c, z)
		if err != nil {
			continue
		}
		if !ok || overlaps(s.at(), e, rs, re) {
			out = append(out, c)
		}
	}
	return out
}

func matchProp(pf *dav.Node, comp *ical.Component, z *zones) (bool, error) {
	name := strings.ToUpper(pf.AttrValue("name"))
	props := comp.Props.Values(name)
	if pf.Child(dav.Name(dav.NSCalDAV, "is-not-defined")) != nil {
		return len(props) == 0, nil
	}
	if len(props) == 0 {
		return false, nil
	}
	for _, p := range props {
		ok := true
		if tr := pf.Child(dav.Name(dav.NSCalDAV, "time-range")); tr != nil {
			rs, re, err := timeRange(tr)
			if err != nil {
				return false, err
			}
			t, _, err := timeOf(&p, z)
			ok = err == nil && overlaps(t, t, rs, re)
		}
		if tm := pf.Child(dav.Name(dav.NSCalDAV, "text-match")); ok && tm != nil {
			m, err := textMatch(tm, p.Value)
			if err != nil {
				return false, err
			}
			ok = m
		}
		for _, paf := range pf.All(dav.Name(dav.NSCalDAV, "param-filter")) {
			if !ok {
				break
			}
			vals := p.Params.Values(strings.ToUpper(paf.AttrValue("name")))
			if paf.Child(dav.Name(dav.NSCalDAV, "is-not-defined")) != nil {
				ok = len(vals) == 0
				continue
			}
			tm := paf.Child(dav.Name(dav.NSCalDAV, "text-match"))
			any := len(vals) > 0 && tm == nil
			for _, v := range vals {
				if tm == nil {
					break
				}
				m, err := textMatch(tm, v)
				if err != nil {
					return false, err
				}
				any = any || m
			}
			ok = any
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// textMatch is a CALDAV:text-match (dav.Profile.TextMatch: a substring
// match, i;ascii-casemap by default).
func textMatch(tm *dav.Node, value string) (bool, error) { return profile.TextMatch(tm, value) }

const utcFormat = "20060102T150405Z"

// Expand returns a copy of c with its occurrences in [rs, re) as separate
// components, in UTC (floating times read as UTC).
func Expand(c *ical.Calendar, rs, re time.Time) (*ical.Calendar, error) {
	return expand(c, rs, re, newZones(c, time.UTC))
}

func expand(c *ical.Calendar, rs, re time.Time, z *zones) (*ical.Calendar, error) {
	out := ical.NewCalendar()
	for name, ps := range c.Props {
		out.Props[name] = ps
	}
	var typ string
	for _, ch := range c.Children {
		if ch.Name != ical.CompTimezone {
			typ = ch.Name
			break
		}
	}
	if typ == "" {
		return out, nil
	}
	inst, err := instances(c, typ, rs, re, z)
	if err != nil {
		return nil, err
	}
	for _, in := range inst {
		n := &ical.Component{Name: in.Comp.Name, Props: ical.Props{}, Children: in.Comp.Children}
		for name, ps := range in.Comp.Props {
			switch name {
			case ical.PropRecurrenceRule, ical.PropRecurrenceDates, ical.PropExceptionDates, ical.PropDateTimeStart, ical.PropDateTimeEnd, ical.PropDuration, ical.PropRecurrenceID, ical.PropDue:
				continue
			}
			n.Props[name] = ps
		}
		if !in.Start.IsZero() {
			setTime(n, ical.PropDateTimeStart, in.Start, in.AllDay)
			if !in.End.Equal(in.Start) {
				endProp := ical.PropDateTimeEnd
				if typ == ical.CompToDo {
					endProp = ical.PropDue
				}
				setTime(n, endProp, in.End, in.AllDay)
			}
		}
		if !in.RecurrenceID.IsZero() {
			setTime(n, ical.PropRecurrenceID, in.RecurrenceID, in.AllDay)
		}
		out.Children = append(out.Children, n)
	}
	return out, nil
}

func setTime(c *ical.Component, name string, t time.Time, allDay bool) {
	p := ical.NewProp(name)
	if allDay {
		p.Params.Set(ical.ParamValue, "DATE")
		p.Value = t.Format("20060102")
	} else {
		p.Value = t.UTC().Format(utcFormat)
	}
	c.Props.Set(p)
}

// period is one busy interval.
type period struct {
	start, end time.Time
	typ        string
}

func (k *Kind) freeBusy(ctx context.Context, r *dav.ReportRequest) error {
	tr := r.Body.Child(dav.Name(dav.NSCalDAV, "time-range"))
	if tr == nil {
		return dav.Errorf(http.StatusBadRequest, dav.Name(dav.NSCalDAV, "valid-filter"), "free-busy-query needs a time-range")
	}
	rs, re, err := timeRange(tr)
	if err != nil {
		return err
	}
	if rs.IsZero() || re.IsZero() {
		return dav.Errorf(http.StatusBadRequest, dav.Name(dav.NSCalDAV, "valid-filter"), "free-busy-query needs a start and an end")
	}
	objs, err := r.Objects()
	if err != nil {
		return err
	}
	var cals []*ical.Calendar
	for _, o := range objs {
		if c, err := k.calendar(o); err == nil {
			cals = append(cals, c)
		}
	}
	body, err := freeBusy(cals, rs, re, time.Now(), k.floatingZone(r.Collection), newWork(ctx, maxQueryWork))
	if err != nil {
		return err
	}
	r.W.Header().Set("Content-Type", MediaType+"; charset=utf-8")
	r.W.WriteHeader(http.StatusOK)
	_, err = r.W.Write(body)
	return err
}

// FreeBusy computes a VFREEBUSY for the events of cals in [rs, re): each
// opaque, not cancelled occurrence is busy (tentative ones BUSY-TENTATIVE),
// clipped to the range, overlapping periods merged.
func FreeBusy(cals []*ical.Calendar, rs, re, now time.Time) ([]byte, error) {
	return freeBusy(cals, rs, re, now, time.UTC, nil)
}

func freeBusy(cals []*ical.Calendar, rs, re, now time.Time, floating *time.Location, w *work) ([]byte, error) {
	var ps []period
	for _, c := range cals {
		if err := w.spend(1); err != nil {
			return nil, err
		}
		z := newZones(c, floating)
		z.work = w
		inst, err := instances(c, ical.CompEvent, rs, re, z)
		if err != nil {
			if err := w.failure(); err != nil {
				return nil, err
			}
			continue
		}
		for _, in := range inst {
			if strings.EqualFold(propValue(in.Comp, ical.PropTransparency), "TRANSPARENT") {
				continue
			}
			typ := "BUSY"
			switch strings.ToUpper(propValue(in.Comp, ical.PropStatus)) {
			case "CANCELLED":
				continue
			case "TENTATIVE":
				typ = "BUSY-TENTATIVE"
			}
			s, e := in.Start, in.End
			if !e.After(s) {
				continue
			}
			if s.Before(rs) {
				s = rs
			}
			if e.After(re) {
				e = re
			}
			ps = append(ps, period{s.UTC(), e.UTC(), typ})
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].typ != ps[j].typ {
			return ps[i].typ < ps[j].typ
		}
		return ps[i].start.Before(ps[j].start)
	})
	var merged []period
	for _, p := range ps {
		if n := len(merged); n > 0 && merged[n-1].typ == p.typ && !p.start.After(merged[n-1].end) {
			if p.end.After(merged[n-1].end) {
				merged[n-1].end = p.end
			}
			continue
		}
		merged = append(merged, p)
	}
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Nymote//calendar//EN\r\nBEGIN:VFREEBUSY\r\n")
	fmt.Fprintf(&b, "DTSTAMP:%s\r\nDTSTART:%s\r\nDTEND:%s\r\n", now.UTC().Format(utcFormat), rs.UTC().Format(utcFormat), re.UTC().Format(utcFormat))
	for _, p := range merged {
		fmt.Fprintf(&b, "FREEBUSY;FBTYPE=%s:%s/%s\r\n", p.typ, p.start.Format(utcFormat), p.end.Format(utcFormat))
	}
	b.WriteString("END:VFREEBUSY\r\nEND:VCALENDAR\r\n")
	return []byte(b.String()), nil
}
