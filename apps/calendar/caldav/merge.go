package caldav

import (
	"bytes"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
		if t, _, err := timeOf(p, newZones(nil, time.UTC)); err == nil {
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
	var b bytes.Buffer
	encodeLenient(&b, c)
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
// one both changed takes the higher SEQUENCE, then the later DTSTAMP, and
// what the other side's version had differently is kept in the instance's
// DESCRIPTION (withConflictNote), where every calendar app shows it; an
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
			res = withConflictNote(tc, oc)
		default:
			res = withConflictNote(oc, tc)
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
	encodeLenient(&buf, out.Component)
	return buf.Bytes(), nil
}

// conflictSkip are the properties a conflict note leaves out: those that
// every edit changes, and the instance's identity.
var conflictSkip = map[string]bool{
	ical.PropDateTimeStamp: true, ical.PropSequence: true, ical.PropLastModified: true,
	ical.PropCreated: true, ical.PropUID: true, ical.PropRecurrenceID: true,
}

// conflictText are the properties whose values a note shows as text.
var conflictText = map[string]bool{
	ical.PropSummary: true, ical.PropLocation: true, ical.PropDescription: true, ical.PropComment: true,
}

// withConflictNote returns win, the instance a merge keeps where both sides
// changed it, with what lose had differently appended to its DESCRIPTION
// (dav.ConflictNote): each property whose values differ, with lose's, and
// its alarms if they differ (named only). Nothing is added when only the
// properties that every edit changes differ.
func withConflictNote(win, lose *ical.Component) *ical.Component {
	names := map[string]bool{}
	for _, c := range []*ical.Component{win, lose} {
		for n := range c.Props {
			if !conflictSkip[n] {
				names[n] = true
			}
		}
	}
	lines := func(c *ical.Component, n string) string {
		var b bytes.Buffer
		encodeLenient(&b, &ical.Component{Name: "X", Props: ical.Props{n: c.Props[n]}})
		return b.String()
	}
	var props []dav.ConflictProp
	for _, n := range slices.Sorted(maps.Keys(names)) {
		if lines(win, n) == lines(lose, n) {
			continue
		}
		p := dav.ConflictProp{Name: n, Opaque: n == ical.PropAttach}
		for i := range lose.Props[n] {
			q := &lose.Props[n][i]
			v := q.Value
			if conflictText[n] {
				// (Joined: a comma that a client left unescaped splits
				// the value.)
				if l, err := q.TextList(); err == nil {
					v = strings.Join(l, ",")
				}
			}
			if tz := q.Params.Get(ical.ParamTimezoneID); tz != "" {
				v += " (" + tz + ")"
			}
			if q.Params.Get(ical.ParamEncoding) != "" {
				p.Opaque = true
			}
			p.Values = append(p.Values, v)
		}
		props = append(props, p)
	}
	var wa, la []string
	for _, ch := range win.Children {
		wa = append(wa, encodeComp(ch))
	}
	for _, ch := range lose.Children {
		la = append(la, encodeComp(ch))
	}
	if !slices.Equal(wa, la) {
		props = append(props, dav.ConflictProp{Name: ical.CompAlarm, Opaque: true})
	}
	if len(props) == 0 {
		return win
	}
	note := dav.ConflictNote(props)
	if d, err := win.Props.Text(ical.PropDescription); err == nil && d != "" {
		note = d + "\n\n" + note
	}
	win.Props.SetText(ical.PropDescription, note)
	return win
}

// encodeLenient writes a calendar as iCalendar text without go-ical's
// checks of required properties: merges must not fail on objects that
// clients stored without, say, a DTSTAMP.
func encodeLenient(b *bytes.Buffer, c *ical.Component) {
	b.WriteString("BEGIN:" + c.Name + "\r\n")
	names := make([]string, 0, len(c.Props))
	for n := range c.Props {
		names = append(names, n)
	}
	sort.Strings(names)
	// BEGIN, then VERSION/UID first for readability, then the rest sorted.
	sort.SliceStable(names, func(i, j int) bool {
		rank := func(n string) int {
			switch n {
			case ical.PropVersion, ical.PropUID:
				return 0
			}
			return 1
		}
		return rank(names[i]) < rank(names[j])
	})
	for _, n := range names {
		for _, p := range c.Props[n] {
			line := p.Name
			pnames := make([]string, 0, len(p.Params))
			for k := range p.Params {
				pnames = append(pnames, k)
			}
			sort.Strings(pnames)
			for _, k := range pnames {
				vals := make([]string, len(p.Params[k]))
				for i, v := range p.Params[k] {
					if strings.ContainsAny(v, ":;,") {
						v = `"` + strings.ReplaceAll(v, `"`, "") + `"`
					}
					vals[i] = v
				}
				line += ";" + k + "=" + strings.Join(vals, ",")
			}
			line += ":" + p.Value
			writeFolded(b, line)
		}
	}
	for _, ch := range c.Children {
		encodeLenient(b, ch)
	}
	b.WriteString("END:" + c.Name + "\r\n")
}

// writeFolded writes a content line folded at 75 octets (RFC 5545 3.1),
// never inside a UTF-8 sequence.
func writeFolded(b *bytes.Buffer, line string) {
	for len(line) > 75 {
		i := 75
		for i > 0 && !utf8.RuneStart(line[i]) {
			i--
		}
		b.WriteString(line[:i] + "\r\n ")
		line = line[i:]
	}
	b.WriteString(line + "\r\n")
}
