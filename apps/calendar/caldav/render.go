package caldav

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/emersion/go-ical"

	"github.com/nymote/nymote/apps/internal/dav"
)

// dataRequest is a parsed CALDAV:calendar-data request element (RFC 4791
// section 9.6).
type dataRequest struct {
	// comp selects components and properties (nil: everything).
	comp *compRequest
	// expand, limitRecur and limitFB are the [start, end) of the
	// expand, limit-recurrence-set and limit-freebusy-set elements.
	expand, limitRecur, limitFB *[2]time.Time
}

// compRequest is a CALDAV:comp element: which properties and inner
// components of a component to return.
type compRequest struct {
	name             string
	allProp, allComp bool
	// props maps property names to whether they go without value.
	props map[string]bool
	comps map[string]*compRequest
}

func badData(format string, args ...any) error {
	return dav.Errorf(http.StatusBadRequest, dav.Name(dav.NSCalDAV, "valid-calendar-data"), "calendar-data: "+format, args...)
}

// parseDataRequest reads a calendar-data request element; nil when it asks
// for the whole object.
func parseDataRequest(n *dav.Node) (*dataRequest, error) {
	if n == nil {
		return nil, nil
	}
	if ct := n.AttrValue("content-type"); ct != "" && !strings.EqualFold(ct, MediaType) {
		return nil, dav.Errorf(http.StatusForbidden, dav.Name(dav.NSCalDAV, "supported-calendar-data"), "calendar-data of type %q: only %s is served", ct, MediaType)
	}
	if v := n.AttrValue("version"); v != "" && v != "2.0" {
		return nil, dav.Errorf(http.StatusForbidden, dav.Name(dav.NSCalDAV, "supported-calendar-data"), "calendar-data version %q: only 2.0 is served", v)
	}
	dr := &dataRequest{}
	var err error
	for _, ch := range n.Children {
		if ch.Name.Space != dav.NSCalDAV {
			continue
		}
		switch ch.Name.Local {
		case "comp":
			if dr.comp, err = parseCompRequest(ch); err != nil {
				return nil, err
			}
			if dr.comp.name != ical.CompCalendar {
				return nil, badData("the outer comp is %q; it must be VCALENDAR", dr.comp.name)
			}
		case "expand", "limit-recurrence-set", "limit-freebusy-set":
			rs, re, err := timeRange(ch)
			if err != nil {
				return nil, err
			}
			if rs.IsZero() || re.IsZero() {
				return nil, badData("%s needs a start and an end", ch.Name.Local)
			}
			r := &[2]time.Time{rs, re}
			switch ch.Name.Local {
			case "expand":
				dr.expand = r
			case "limit-recurrence-set":
				dr.limitRecur = r
			default:
				dr.limitFB = r
			}
		}
	}
	if dr.expand != nil && dr.limitRecur != nil {
		return nil, badData("expand and limit-recurrence-set exclude each other")
	}
	if *dr == (dataRequest{}) {
		return nil, nil
	}
	return dr, nil
}

func parseCompRequest(n *dav.Node) (*compRequest, error) {
	cr := &compRequest{name: strings.ToUpper(n.AttrValue("name"))}
	if cr.name == "" {
		return nil, badData("a comp element has no name")
	}
	// A comp that names neither properties nor components is the whole
	// component (as in RFC 4791's examples, <C:comp name="VTIMEZONE"/>).
	whole := true
	for _, ch := range n.Children {
		if ch.Name.Space != dav.NSCalDAV {
			continue
		}
		switch ch.Name.Local {
		case "allprop":
			cr.allProp, whole = true, false
		case "allcomp":
			cr.allComp, whole = true, false
		case "prop":
			name := strings.ToUpper(ch.AttrValue("name"))
			if name == "" {
				return nil, badData("a prop element in comp %q has no name", cr.name)
			}
			if cr.props == nil {
				cr.props = map[string]bool{}
			}
			cr.props[name] = ch.AttrValue("novalue") == "yes"
			whole = false
		case "comp":
			inner, err := parseCompRequest(ch)
			if err != nil {
				return nil, err
			}
			if cr.comps == nil {
				cr.comps = map[string]*compRequest{}
			}
			if _, ok := cr.comps[inner.name]; !ok {
				cr.comps[inner.name] = inner
			}
			whole = false
		}
	}
	if whole {
		cr.allProp, cr.allComp = true, true
	}
	return cr, nil
}

// project returns the parts of c that cr asks for.
func (cr *compRequest) project(c *ical.Component) *ical.Component {
	if cr.allProp && cr.allComp {
		return c
	}
	out := &ical.Component{Name: c.Name, Props: ical.Props{}}
	for name, ps := range c.Props {
		novalue, ok := cr.props[name]
		switch {
		case cr.allProp:
			out.Props[name] = ps
		case ok && novalue:
			empty := make([]ical.Prop, len(ps))
			for i, p := range ps {
				empty[i] = ical.Prop{Name: p.Name, Params: p.Params}
			}
			out.Props[name] = empty
		case ok:
			out.Props[name] = ps
		}
	}
	for _, ch := range c.Children {
		if cr.allComp {
			out.Children = append(out.Children, ch)
		} else if inner, ok := cr.comps[ch.Name]; ok {
			out.Children = append(out.Children, inner.project(ch))
		}
	}
	return out
}

// render applies a calendar-data request to an object: expand or
// limit-recurrence-set, then limit-freebusy-set, then the comp selection.
// Floating times are read in floating.
func (dr *dataRequest) render(c *ical.Calendar, floating *time.Location, w *work) (*ical.Component, error) {
	var err error
	z := newZones(c, floating)
	z.work = w
	switch {
	case dr.expand != nil:
		if c, err = expand(c, dr.expand[0], dr.expand[1], z); err != nil {
			return nil, err
		}
	case dr.limitRecur != nil:
		if c, err = limitRecurrence(c, dr.limitRecur[0], dr.limitRecur[1], z); err != nil {
			return nil, err
		}
	}
	if dr.limitFB != nil {
		c = limitFreeBusy(c, dr.limitFB[0], dr.limitFB[1])
	}
	if dr.comp != nil {
		return dr.comp.project(c.Component), nil
	}
	return c.Component, nil
}

// RenderData renders calendar-data (RFC 4791 section 9.6): the object as
// stored, or the parts that a comp element selects, with the occurrences
// of an expand range as separate components in UTC, only the overridden
// instances that a limit-recurrence-set range touches, or only the
// FREEBUSY periods in a limit-freebusy-set range. Floating times are read
// in the calendar's calendar-timezone. An expansion runs on a budget of its
// own; RenderDataContext shares one among a request's objects.
func (k *Kind) RenderData(coll *dav.Collection, o *dav.Object, req *dav.Node) (string, error) {
	return k.RenderDataContext(context.Background(), coll, o, req)
}

// RenderDataContext is RenderData on ctx's rendering budget (see
// RenderContext): beyond it, or once ctx ends, it returns an error (a 507
// *dav.Error for the budget).
func (k *Kind) RenderDataContext(ctx context.Context, coll *dav.Collection, o *dav.Object, req *dav.Node) (string, error) {
	dr, err := parseDataRequest(req)
	if err != nil {
		return "", err
	}
	if dr == nil {
		return dav.Text(string(o.Data)), nil
	}
	c, err := k.calendar(o)
	if err != nil {
		return "", err
	}
	w := renderWork(ctx)
	if err := w.failure(); err != nil {
		return "", err
	}
	out, err := dr.render(c, k.floatingZone(coll), w)
	if err != nil {
		if werr := w.failure(); werr != nil {
			return "", werr
		}
		return "", err
	}
	var b bytes.Buffer
	encodeLenient(&b, out)
	return dav.Text(b.String()), nil
}

// limitRecurrence keeps an object's master components and those overridden
// instances (RECURRENCE-ID) that touch [rs, re): whose current or original
// span overlaps it, or that override this and future instances from
// before re (RFC 4791 section 9.6.6).
func limitRecurrence(c *ical.Calendar, rs, re time.Time, z *zones) (*ical.Calendar, error) {
	durs := map[string]time.Duration{} // master durations by component type
	for _, ch := range c.Children {
		if ch.Props.Get(ical.PropRecurrenceID) == nil {
			if sv, e, _, ok, err := span(ch, z); err == nil && ok {
				durs[ch.Name] = e.Sub(sv.at())
			}
		}
	}
	out := &ical.Calendar{Component: &ical.Component{Name: c.Name, Props: c.Props}}
	for _, ch := range c.Children {
		rid := ch.Props.Get(ical.PropRecurrenceID)
		if rid == nil {
			out.Children = append(out.Children, ch)
			continue
		}
		t, _, err := timeOf(rid, z)
		if err != nil {
			return nil, err
		}
		keep := overlaps(t, t.Add(durs[ch.Name]), rs, re) ||
			strings.EqualFold(rid.Params.Get(ical.ParamRange), "THISANDFUTURE") && t.Before(re)
		if !keep {
			sv, e, _, ok, err := span(ch, z)
			if err != nil {
				return nil, err
			}
			keep = !ok || overlaps(sv.at(), e, rs, re)
		}
		if keep {
			out.Children = append(out.Children, ch)
		}
	}
	return out, nil
}

// limitFreeBusy keeps only the FREEBUSY periods of VFREEBUSY components
// that overlap [rs, re) (RFC 4791 section 9.6.7).
func limitFreeBusy(c *ical.Calendar, rs, re time.Time) *ical.Calendar {
	out := &ical.Calendar{Component: &ical.Component{Name: c.Name, Props: c.Props}}
	for _, ch := range c.Children {
		if ch.Name != ical.CompFreeBusy || len(ch.Props.Values(ical.PropFreeBusy)) == 0 {
			out.Children = append(out.Children, ch)
			continue
		}
		n := &ical.Component{Name: ch.Name, Props: ical.Props{}, Children: ch.Children}
		for name, ps := range ch.Props {
			if name != ical.PropFreeBusy {
				n.Props[name] = ps
			}
		}
		for _, p := range ch.Props.Values(ical.PropFreeBusy) {
			var keep []string
			for _, v := range strings.Split(p.Value, ",") {
				if s, e, ok := parsePeriod(v); !ok || overlaps(s, e, rs, re) {
					keep = append(keep, v)
				}
			}
			if len(keep) > 0 {
				np := p
				np.Value = strings.Join(keep, ",")
				n.Props.Add(&np)
			}
		}
		out.Children = append(out.Children, n)
	}
	return out
}

// parsePeriod reads a UTC PERIOD value: start/end or start/duration.
func parsePeriod(v string) (start, end time.Time, ok bool) {
	a, b, found := strings.Cut(strings.TrimSpace(v), "/")
	if !found {
		return
	}
	start, err := time.Parse(utcFormat, a)
	if err != nil {
		return
	}
	if end, err = time.Parse(utcFormat, b); err == nil {
		return start, end, true
	}
	d, err := (&ical.Prop{Name: "DURATION", Value: b}).Duration()
	if err != nil {
		return
	}
	return start, start.Add(d), true
}
