package caldav

import (
	"bytes"
	"sort"
	"strconv"
	"time"

	"github.com/emersion/go-ical"

	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/store"
)

// MergeFunc is the store merge function for the calendar prefix.
func (k *Kind) MergeFunc() store.MergeFunc { return dav.MergeFunc(MergeICal) }

// compKey names a component within an object: its type, UID and
// RECURRENCE-ID (in UTC), or a VTIMEZONE's TZID.
func compKey(c *ical.Component) string {
	if c.Name == ical.CompTimezone {
		return c.Name + "\x00" + propValue(c, ical.PropTimezoneID)
	}
	rid := ""
	if p := c.Props.Get(ical.PropRecurrenceID); p != nil {
		if t, _, err := timeOf(p, time.UTC); err == nil {
			rid = t.UTC().Format(utcFormat)
		} else {
			rid = p.Value
		}
	}
	return c.Name + "\x00" + propValue(c, ical.PropUID) + "\x00" + rid
}

func encodeComp(c *ical.Component) string {
	if c == nil {
		return ""
	}
	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropVersion, "2.0")
	cal.Props.SetText(ical.PropProductID, "x")
	cal.Children = []*ical.Component{c}
	var b bytes.Buffer
	if err := ical.NewEncoder(&b).Encode(cal); err != nil {
		return "!" + err.Error()
	}
	return b.String()
}

// newer reports whether a should win over b: the higher SEQUENCE, then the
// later DTSTAMP, then (for a deterministic result) the greater encoding.
func newer(a, b *ical.Component) bool {
	sa, _ := strconv.Atoi(propValue(a, ical.PropSequence))
	sb, _ := strconv.Atoi(propValue(b, ical.PropSequence))
	if sa != sb {
		return sa > sb
	}
	da, db := propValue(a, ical.PropDateTimeStamp), propValue(b, ical.PropDateTimeStamp)
	if da != db {
		return da > db
	}
	return encodeComp(a) > encodeComp(b)
}

// MergeICal merges two edits of an iCalendar object 3-way, per component
// and RECURRENCE-ID instance: an instance one side changed takes that side;
// one both changed takes the higher SEQUENCE, then the later DTSTAMP; an
// instance one side added is kept; one side's deletion applies unless the
// other side edited the instance (an edit beats a delete, for whole objects
// too).
func MergeICal(base, ours, theirs []byte) ([]byte, error) {
	if ours == nil || theirs == nil {
		if ours == nil {
			return theirs, nil
		}
		return ours, nil
	}
	o, err := Parse(ours)
	if err != nil {
		return nil, err
	}
	t, err := Parse(theirs)
	if err != nil {
		return nil, err
	}
	b := ical.NewCalendar()
	if base != nil {
		if b, err = Parse(base); err != nil {
			return nil, err
		}
	}
	index := func(c *ical.Calendar) map[string]*ical.Component {
		m := map[string]*ical.Component{}
		for _, ch := range c.Children {
			m[compKey(ch)] = ch
		}
		return m
	}
	bi, oi, ti := index(b), index(o), index(t)
	keys := map[string]bool{}
	for _, m := range []map[string]*ical.Component{bi, oi, ti} {
		for k := range m {
			keys[k] = true
		}
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	out := ical.NewCalendar()
	for n, ps := range o.Props {
		out.Props[n] = ps
	}
	for _, k := range sorted {
		bc, oc, tc := bi[k], oi[k], ti[k]
		be, oe, te := encodeComp(bc), encodeComp(oc), encodeComp(tc)
		var res *ical.Component
		switch {
		case oe == te, te == be:
			res = oc
		case oe == be:
			res = tc
		case oc == nil: // we deleted it, they edited it
			res = tc
		case tc == nil:
			res = oc
		case newer(tc, oc):
			res = tc
		default:
			res = oc
		}
		if res != nil {
			out.Children = append(out.Children, res)
		}
	}
	// Timezones first, then the master, then its overrides.
	sort.SliceStable(out.Children, func(i, j int) bool {
		ti, tj := out.Children[i].Name == ical.CompTimezone, out.Children[j].Name == ical.CompTimezone
		if ti != tj {
			return ti
		}
		mi, mj := out.Children[i].Props.Get(ical.PropRecurrenceID) == nil, out.Children[j].Props.Get(ical.PropRecurrenceID) == nil
		return mi && !mj
	})
	objects := 0
	for _, c := range out.Children {
		if c.Name != ical.CompTimezone {
			objects++
		}
	}
	if objects == 0 {
		return nil, nil // nothing but time zones left: the object is gone
	}
	var buf bytes.Buffer
	if err := ical.NewEncoder(&buf).Encode(out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
