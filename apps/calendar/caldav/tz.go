package caldav

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"

	"github.com/nymote/nymote/apps/internal/dav"
)

// Time zones (RFC 5545 section 3.6.5). A TZID is looked up first in the
// object's own VTIMEZONE components, whose STANDARD and DAYLIGHT
// observances (with their RRULEs and RDATEs) are turned into a
// *time.Location; so zones that are not IANA names, such as Outlook's
// "W. Europe Standard Time", are interpreted by the rules the object
// carries. A TZID with no usable VTIMEZONE is looked up in the IANA
// database (also behind "/mozilla.org/…/" style prefixes); a TZID that is
// neither is read as floating. Floating times are read in the zone the
// caller gives (a calendar's CALDAV:calendar-timezone, or UTC).
//
// Local times are turned into instants as RFC 5545 section 3.3.5 says, not
// as time.Date does: a time that a DST change skips is read with the
// offset from before the gap (02:30 on a spring-forward day is 03:30
// daylight time), and a time that occurs twice means the first occurrence.

// maxTZYear is the last year for which a VTIMEZONE's recurring observances
// are expanded; later times keep the offset of the last transition.
const maxTZYear = 2200

// zones resolves the TZIDs of one calendar object.
type zones struct {
	cal      *ical.Calendar
	floating *time.Location
	memo     map[string]*time.Location
	// work is the request's budget (nil: unbounded).
	work *work
}

func newZones(cal *ical.Calendar, floating *time.Location) *zones {
	if floating == nil {
		floating = time.UTC
	}
	return &zones{cal: cal, floating: floating}
}

// location returns the zone a TZID names (the floating zone for "" or an
// unknown TZID).
func (z *zones) location(tzid string) *time.Location {
	if tzid == "" {
		return z.floating
	}
	if l, ok := z.memo[tzid]; ok {
		return l
	}
	l := z.lookup(tzid)
	if z.memo == nil {
		z.memo = map[string]*time.Location{}
	}
	z.memo[tzid] = l
	return l
}

func (z *zones) lookup(tzid string) *time.Location {
	if z.cal != nil {
		for _, c := range z.cal.Children {
			if c.Name == ical.CompTimezone && propValue(c, ical.PropTimezoneID) == tzid {
				if l, err := vtimezoneLocation(c); err == nil {
					return l
				}
			}
		}
	}
	if l, err := loadLocation(tzid); err == nil {
		return l
	}
	return z.floating
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

// wallOf returns the wall-clock reading of t as a UTC time.
func wallOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// instant returns the instant at which the wall clock of loc reads wall
// (a UTC time holding the reading), in loc, following RFC 5545: in a gap
// the offset before the gap applies; of two readings the first counts.
func instant(wall time.Time, loc *time.Location) time.Time {
	if loc == time.UTC {
		return wall
	}
	w := wall.Unix()
	_, before := time.Unix(w-86400, 0).In(loc).Zone()
	_, after := time.Unix(w+86400, 0).In(loc).Zone()
	var best int64
	found := false
	for _, off := range []int{before, after} {
		t := w - int64(off)
		if _, o := time.Unix(t, 0).In(loc).Zone(); o == off && (!found || t < best) {
			best, found = t, true
		}
	}
	if !found {
		best = w - int64(before)
	}
	return time.Unix(best, int64(wall.Nanosecond())).In(loc)
}

// tzCache holds the locations built from VTIMEZONEs, by their text.
var tzCache struct {
	sync.Mutex
	m map[string]*time.Location
}

// vtimezoneLocation builds the zone a VTIMEZONE describes.
func vtimezoneLocation(tz *ical.Component) (*time.Location, error) {
	var key bytes.Buffer
	encodeLenient(&key, tz)
	tzCache.Lock()
	l, ok := tzCache.m[key.String()]
	tzCache.Unlock()
	if ok {
		return l, nil
	}
	l, err := buildLocation(tz)
	if err != nil {
		return nil, err
	}
	tzCache.Lock()
	if tzCache.m == nil || len(tzCache.m) > 1000 {
		tzCache.m = map[string]*time.Location{}
	}
	tzCache.m[key.String()] = l
	tzCache.Unlock()
	return l, nil
}

// zoneType is one local time type of a zone.
type zoneType struct {
	off  int // seconds east of UTC
	dst  bool
	name string
}

type transition struct {
	at       int64 // Unix seconds
	from, to zoneType
}

// parseOffset reads a UTC offset such as +0100 or -043000.
func parseOffset(s string) (int, error) {
	s = strings.TrimSpace(s)
	if (len(s) != 5 && len(s) != 7) || (s[0] != '+' && s[0] != '-') {
		return 0, fmt.Errorf("bad UTC offset %q", s)
	}
	n := 0
	for i := 1; i < len(s); i += 2 {
		v, err := strconv.Atoi(s[i : i+2])
		if err != nil {
			return 0, fmt.Errorf("bad UTC offset %q", s)
		}
		n = n*60 + v
	}
	if len(s) == 5 {
		n *= 60
	}
	if s[0] == '-' {
		n = -n
	}
	return n, nil
}

func offsetName(off int) string {
	sign := '+'
	if off < 0 {
		sign, off = '-', -off
	}
	return fmt.Sprintf("%c%02d%02d", sign, off/3600, off/60%60)
}

// buildLocation expands a VTIMEZONE's observances into transitions and
// makes a *time.Location of them.
func buildLocation(tz *ical.Component) (*time.Location, error) {
	tzid := propValue(tz, ical.PropTimezoneID)
	var txs []transition
	for _, ob := range tz.Children {
		if ob.Name != "STANDARD" && ob.Name != "DAYLIGHT" {
			continue
		}
		from, err := parseOffset(propValue(ob, "TZOFFSETFROM"))
		if err != nil {
			return nil, fmt.Errorf("VTIMEZONE %q: TZOFFSETFROM: %v", tzid, err)
		}
		to, err := parseOffset(propValue(ob, "TZOFFSETTO"))
		if err != nil {
			return nil, fmt.Errorf("VTIMEZONE %q: TZOFFSETTO: %v", tzid, err)
		}
		name := propValue(ob, "TZNAME")
		if name == "" {
			name = offsetName(to)
		}
		onsets, err := observanceOnsets(ob, from)
		if err != nil {
			return nil, fmt.Errorf("VTIMEZONE %q %s: %v", tzid, ob.Name, err)
		}
		for _, w := range onsets {
			txs = append(txs, transition{at: w.Unix() - int64(from), from: zoneType{off: from, dst: false, name: offsetName(from)}, to: zoneType{off: to, dst: ob.Name == "DAYLIGHT", name: name}})
		}
	}
	if len(txs) == 0 {
		return nil, fmt.Errorf("VTIMEZONE %q has no STANDARD or DAYLIGHT observance", tzid)
	}
	sort.Slice(txs, func(i, j int) bool { return txs[i].at < txs[j].at })
	// Before the first onset: the offset it changes from, named as the
	// observance that changes to that offset is.
	first := txs[0].from
	for _, t := range txs {
		if t.to.off == first.off && !t.to.dst {
			first.name = t.to.name
			break
		}
	}
	return time.LoadLocationFromTZData(tzid, tzif(first, txs))
}

// observanceOnsets lists the local times at which an observance begins:
// DTSTART, its RRULE occurrences (up to maxTZYear) and RDATEs.
func observanceOnsets(ob *ical.Component, from int) ([]time.Time, error) {
	wall := func(v string) (time.Time, error) {
		v = strings.TrimSpace(v)
		if t, err := time.Parse("20060102T150405Z", v); err == nil {
			return t.Add(time.Duration(from) * time.Second), nil
		}
		if t, err := time.Parse("20060102T150405", v); err == nil {
			return t, nil
		}
		return time.Parse("20060102", v)
	}
	start, err := wall(propValue(ob, ical.PropDateTimeStart))
	if err != nil {
		return nil, fmt.Errorf("bad DTSTART %q", propValue(ob, ical.PropDateTimeStart))
	}
	out := []time.Time{start}
	if rr := ob.Props.Get(ical.PropRecurrenceRule); rr != nil {
		rule, err := wallRule(rr.Value, shiftYearly(rr.Value, start), time.UTC)
		if err != nil {
			return nil, err
		}
		for n := 0; n < 10000; n++ {
			t, more := rule.Next()
			if !more || t.Year() > maxTZYear {
				break
			}
			out = append(out, t)
		}
		if rule.err != nil {
			return nil, rule.err
		}
	}
	for _, p := range ob.Props.Values(ical.PropRecurrenceDates) {
		for _, v := range strings.Split(p.Value, ",") {
			v, _, _ = strings.Cut(v, "/")
			t, err := wall(v)
			if err != nil {
				return nil, fmt.Errorf("bad RDATE %q", v)
			}
			out = append(out, t)
		}
	}
	return out, nil
}

// shiftYearly moves the start of a yearly rule without COUNT that begins
// before 1900 (Outlook's begin in 1601) to a year since 1900 that the rule
// is aligned to, because rrule-go stops after 292 years (the span of a
// time.Duration). The onsets skipped are of no use to dates after 1900.
func shiftYearly(rule string, start time.Time) time.Time {
	if start.Year() >= 1900 {
		return start
	}
	opt, err := parseRule(rule)
	if err != nil || opt.Freq != rrule.YEARLY || opt.Count != 0 {
		return start
	}
	n := max(opt.Interval, 1)
	years := (1900 - start.Year() + n - 1) / n * n
	return start.AddDate(years, 0, 0)
}

// wallRule makes an RRULE that runs on wall-clock readings (UTC times)
// from start; a UTC UNTIL is turned into a reading in loc. It refuses the
// rules that the library cannot expand in bounded time (checkRule), and
// its occurrences come through a guard that turns the library's panics
// into an error.
func wallRule(value string, start time.Time, loc *time.Location) (*ruleIter, error) {
	opt, err := parseRule(value)
	if err != nil {
		return nil, fmt.Errorf("bad RRULE %q: %v", value, err)
	}
	opt.Dtstart = start
	if !opt.Until.IsZero() && untilIsUTC(value) {
		opt.Until = wallOf(opt.Until.In(loc))
	}
	if err := checkRule(value, opt); err != nil {
		return nil, err
	}
	it := &ruleIter{value: value}
	it.guard(func() {
		var rule *rrule.RRule
		if rule, err = rrule.NewRRule(*opt); err == nil {
			it.next = rule.Iterator()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bad RRULE %q: %v", value, err)
	}
	if it.err != nil {
		return nil, it.err
	}
	return it, nil
}

// parseRule parses an RRULE value, turning a panic of the library's
// parser into an error.
func parseRule(value string) (opt *rrule.ROption, err error) {
	defer func() {
		if p := recover(); p != nil {
			opt, err = nil, fmt.Errorf("the recurrence library failed: %v", p)
		}
	}()
	return rrule.StrToROptionInLocation(value, time.UTC)
}

// ruleIter steps through a checked rule's occurrences. A panic inside the
// library ends them and is kept in err.
type ruleIter struct {
	value string
	next  rrule.Next
	err   error
}

// guard runs f, turning a panic into it.err.
func (it *ruleIter) guard(f func()) {
	defer func() {
		if p := recover(); p != nil {
			it.err = fmt.Errorf("RRULE %q: the recurrence library failed: %v", it.value, p)
		}
	}()
	f()
}

// Next returns the next occurrence; false at the end of the rule or after
// a failure (see err).
func (it *ruleIter) Next() (t time.Time, ok bool) {
	if it.err != nil || it.next == nil {
		return time.Time{}, false
	}
	it.guard(func() { t, ok = it.next() })
	if it.err != nil {
		return time.Time{}, false
	}
	return t, ok
}

func untilIsUTC(rule string) bool {
	for _, part := range strings.Split(rule, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(k, "UNTIL") {
			return strings.HasSuffix(strings.ToUpper(strings.TrimSpace(v)), "Z")
		}
	}
	return false
}

// tzif encodes a zone as TZif version 2 data (RFC 8536) for
// time.LoadLocationFromTZData: local time type 0 is first, for the times
// before the first transition, and no transition uses it.
func tzif(first zoneType, txs []transition) []byte {
	types := []zoneType{first}
	index := map[zoneType]int{}
	var chars bytes.Buffer
	abbr := map[string]int{}
	for _, t := range txs {
		if _, ok := index[t.to]; !ok && len(types) < 255 {
			index[t.to] = len(types)
			types = append(types, t.to)
		}
	}
	for _, t := range types {
		if _, ok := abbr[t.name]; !ok {
			abbr[t.name] = chars.Len()
			chars.WriteString(t.name)
			chars.WriteByte(0)
		}
	}
	var b bytes.Buffer
	header := func(timecnt, typecnt, charcnt int) {
		b.WriteString("TZif2")
		b.Write(make([]byte, 15))
		for _, n := range []int{0, 0, 0, timecnt, typecnt, charcnt} {
			binary.Write(&b, binary.BigEndian, uint32(n))
		}
	}
	header(0, 0, 0) // an empty version 1 block: readers of version 2 skip it
	var at []int64
	var idx []byte
	last := -1
	for _, t := range txs {
		i, ok := index[t.to]
		if !ok || i == last {
			continue
		}
		at, idx, last = append(at, t.at), append(idx, byte(i)), i
	}
	header(len(at), len(types), chars.Len())
	for _, a := range at {
		binary.Write(&b, binary.BigEndian, a)
	}
	b.Write(idx)
	for _, t := range types {
		binary.Write(&b, binary.BigEndian, int32(t.off))
		dst := byte(0)
		if t.dst {
			dst = 1
		}
		b.WriteByte(dst)
		b.WriteByte(byte(abbr[t.name]))
	}
	b.Write(chars.Bytes())
	b.WriteString("\n\n")
	return b.Bytes()
}

// calendarTimezone is the CALDAV:calendar-timezone property: the zone of a
// calendar's floating times (RFC 4791 sections 5.2.2 and 7.3).
var calendarTimezone = dav.Name(dav.NSCalDAV, "calendar-timezone")

// parseCalendarTimezone reads a calendar-timezone (or a calendar-query's
// timezone) value: a VCALENDAR with exactly one VTIMEZONE. Its zone is the
// VTIMEZONE's rules, or the IANA zone of its TZID when the rules are
// unusable.
// field names the element in errors.
func parseCalendarTimezone(field, text string) (*time.Location, error) {
	bad := func(format string, args ...any) error {
		return dav.Errorf(http.StatusForbidden, dav.Name(dav.NSCalDAV, "valid-calendar-data"), field+": "+format, args...)
	}
	cal, err := Parse([]byte(strings.TrimSpace(text)))
	if err != nil {
		return nil, bad("%v", err)
	}
	var tzs []*ical.Component
	for _, c := range cal.Children {
		if c.Name == ical.CompTimezone {
			tzs = append(tzs, c)
		} else {
			return nil, bad("a %s is not a time zone; want one VTIMEZONE", c.Name)
		}
	}
	if len(tzs) != 1 {
		return nil, bad("%d VTIMEZONE components; want one", len(tzs))
	}
	tzid := propValue(tzs[0], ical.PropTimezoneID)
	if tzid == "" {
		return nil, bad("the VTIMEZONE has no TZID")
	}
	if l, err := vtimezoneLocation(tzs[0]); err == nil {
		return l, nil
	} else if l, ierr := loadLocation(tzid); ierr == nil {
		return l, nil
	} else {
		return nil, bad("%v, and %q is not an IANA time zone", err, tzid)
	}
}

// floatingZone is the zone of a calendar's floating times: its
// calendar-timezone, or UTC.
func (k *Kind) floatingZone(c *dav.Collection) *time.Location {
	if c == nil {
		return time.UTC
	}
	raw, ok := c.Dead["{"+calendarTimezone.Space+"}"+calendarTimezone.Local]
	if !ok {
		return time.UTC
	}
	n, err := dav.ParseXML(strings.NewReader("<x>" + raw + "</x>"))
	if err != nil {
		return time.UTC
	}
	l, err := parseCalendarTimezone("calendar-timezone", n.Text)
	if err != nil {
		return time.UTC
	}
	return l
}
