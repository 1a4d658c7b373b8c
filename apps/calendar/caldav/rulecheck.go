package caldav

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/teambition/rrule-go"
)

// Recurrence rules are expanded by rrule-go, whose generator has loops that
// no caller can bound: for FREQ=HOURLY, MINUTELY and SECONDLY it steps
// until BYHOUR, BYMINUTE and BYSECOND match, forever when the step can
// never reach them (FREQ=HOURLY;INTERVAL=24;BYHOUR=1 from 00:00), and for
// every frequency it walks day by day (up to the year 9999) through days
// that BYMONTH, BYMONTHDAY, BYYEARDAY or BYDAY reject. A goroutine stuck
// in such a loop cannot be stopped, so checkRule keeps these rules from
// ever reaching the library: it refuses a rule
//
//   - that RFC 5545 forbids (BYDAY with an ordinal outside MONTHLY and
//     YEARLY, BYWEEKNO outside YEARLY, BYYEARDAY with DAILY, WEEKLY or
//     MONTHLY, BYMONTHDAY with WEEKLY) or that the RFC does not define
//     (BYEASTER), with an INTERVAL above maxInterval, or a BYSETPOS that
//     no set of its frequency is large enough to hold;
//   - whose time steps can never meet its BYHOUR, BYMINUTE and BYSECOND
//     (the library's endless loop);
//   - that has no occurrence on any day it visits in the 400 years (one
//     Gregorian cycle) after DTSTART (BYWEEKNO is not applied: a rule that
//     it alone empties costs the library a few thousand yearly steps), or
//     whose BYSETPOS is beyond every period's set, or, for the sub-daily
//     frequencies,
//     whose occurrences are so sparse that the library would step more than
//     maxRuleWork times between two of them.
//
// What passes costs the library a bounded amount of work per occurrence
// (at most one Gregorian cycle of days for DAILY and above, maxRuleWork
// steps below), and instances counts the occurrences it takes.
const (
	maxInterval = 1_000_000
	cycleDays   = 146097 // days in 400 Gregorian years
	maxRuleWork = 2_000_000
	minRuleYear = 1
	maxRuleYear = 9999
)

// errRule marks a rule that checkRule refuses; Validate answers it with
// CALDAV:valid-calendar-object-resource.
var errRule = errors.New("unsafe recurrence rule")

// ruleError is checkRule's refusal of a rule: what is wrong, for the
// client.
type ruleError struct{ msg string }

func (e *ruleError) Error() string { return e.msg }
func (e *ruleError) Unwrap() error { return errRule }

func refuse(value, format string, args ...any) error {
	return &ruleError{fmt.Sprintf("RRULE %q: ", value) + fmt.Sprintf(format, args...)}
}

// ruleChecks caches checkRule's verdicts by rule and start, so that
// queries over stored objects pay for the check once.
var ruleChecks = struct {
	sync.Mutex
	m map[string]error
}{m: map[string]error{}}

// checkRule refuses the rules that rrule-go cannot expand in bounded time
// (see above). opt is the parsed rule with Dtstart set to the wall-clock
// start (a UTC time); value is the rule as written, for messages.
//
// It first drops repeated values from the BY parts (the library scans
// them linearly for every day, and a long rule could repeat a value a
// hundred thousand times), which leaves each list bounded by the range of
// its values.
func checkRule(value string, opt *rrule.ROption) error {
	for _, l := range []*[]int{&opt.Bysetpos, &opt.Bymonth, &opt.Bymonthday, &opt.Byyearday, &opt.Byweekno, &opt.Byhour, &opt.Byminute, &opt.Bysecond, &opt.Byeaster} {
		*l = uniq(*l)
	}
	seen := map[weekdayN]bool{}
	days := opt.Byweekday[:0:0]
	for _, w := range opt.Byweekday {
		if k := (weekdayN{w.Day(), w.N()}); !seen[k] {
			seen[k] = true
			days = append(days, w)
		}
	}
	opt.Byweekday = days
	if len(value) > 512 {
		return checkRuleUncached(value, opt) // not worth a place in the cache
	}
	key := value + "\x00" + opt.Dtstart.Format(time.RFC3339)
	ruleChecks.Lock()
	err, ok := ruleChecks.m[key]
	ruleChecks.Unlock()
	if ok {
		return err
	}
	err = checkRuleUncached(value, opt)
	ruleChecks.Lock()
	if len(ruleChecks.m) >= 10000 {
		ruleChecks.m = map[string]error{}
	}
	ruleChecks.m[key] = err
	ruleChecks.Unlock()
	return err
}

func checkRuleUncached(value string, o *rrule.ROption) error {
	start := o.Dtstart
	if y := start.Year(); y < minRuleYear || y > maxRuleYear {
		return refuse(value, "DTSTART in the year %d; recurring components must start in the years %d to %d", y, minRuleYear, maxRuleYear)
	}
	if !o.Until.IsZero() && (o.Until.Year() < minRuleYear || o.Until.Year() > maxRuleYear) {
		return refuse(value, "UNTIL in the year %d; want the years %d to %d", o.Until.Year(), minRuleYear, maxRuleYear)
	}
	if o.Interval > maxInterval {
		return refuse(value, "INTERVAL=%d; at most %d", o.Interval, maxInterval)
	}
	if len(o.Byeaster) > 0 {
		return refuse(value, "BYEASTER is not part of iCalendar (RFC 5545)")
	}
	f := o.Freq
	for _, w := range o.Byweekday {
		if w.N() != 0 && f != rrule.MONTHLY && f != rrule.YEARLY {
			return refuse(value, "BYDAY with an ordinal (such as 2MO) needs FREQ=MONTHLY or YEARLY (RFC 5545 section 3.3.10)")
		}
	}
	if len(o.Byweekno) > 0 && f != rrule.YEARLY {
		return refuse(value, "BYWEEKNO needs FREQ=YEARLY (RFC 5545 section 3.3.10)")
	}
	if len(o.Byyearday) > 0 && (f == rrule.DAILY || f == rrule.WEEKLY || f == rrule.MONTHLY) {
		return refuse(value, "BYYEARDAY cannot be used with FREQ=%s (RFC 5545 section 3.3.10)", f)
	}
	if len(o.Bymonthday) > 0 && f == rrule.WEEKLY {
		return refuse(value, "BYMONTHDAY cannot be used with FREQ=WEEKLY (RFC 5545 section 3.3.10)")
	}
	interval := max(o.Interval, 1)

	// The library's defaults (python-dateutil's): a rule without day
	// parts takes them from DTSTART; BYHOUR, BYMINUTE and BYSECOND default
	// to DTSTART's above their frequency.
	bymonth, bymonthday, byday := o.Bymonth, o.Bymonthday, weekdays(o.Byweekday)
	// Ordinals of BYDAY count within the month (MONTHLY, or YEARLY with
	// BYMONTH) or the year.
	nthInMonth := f == rrule.MONTHLY || len(bymonth) > 0
	if len(o.Byweekno) == 0 && len(o.Byyearday) == 0 && len(o.Bymonthday) == 0 && len(o.Byweekday) == 0 {
		switch f {
		case rrule.YEARLY:
			if len(bymonth) == 0 {
				bymonth = []int{int(start.Month())}
			}
			bymonthday = []int{start.Day()}
		case rrule.MONTHLY:
			bymonthday = []int{start.Day()}
		case rrule.WEEKLY:
			byday = []weekdayN{{wd: pyWeekday(start.Weekday())}}
		}
	}
	count := func(given []int) int { return max(len(given), 1) }
	// The size of the set BYSETPOS picks from, at most.
	perDay := count(o.Byhour) * count(o.Byminute) * count(o.Bysecond)
	setSize := map[rrule.Frequency]int{
		rrule.YEARLY:   366 * perDay,
		rrule.MONTHLY:  31 * perDay,
		rrule.WEEKLY:   7 * perDay,
		rrule.DAILY:    perDay,
		rrule.HOURLY:   count(o.Byminute) * count(o.Bysecond),
		rrule.MINUTELY: count(o.Bysecond),
		rrule.SECONDLY: 1,
	}[f]
	if len(o.Bysetpos) > 0 {
		fits := false
		for _, p := range o.Bysetpos {
			fits = fits || (p <= setSize && p >= -setSize)
		}
		if !fits {
			return refuse(value, "BYSETPOS picks beyond the %d occurrences a FREQ=%s period holds", setSize, f)
		}
	}

	// Sub-daily rules step through the day by the interval (in seconds)
	// from DTSTART's time; the reachable seconds of the day are those
	// congruent to DTSTART's modulo gcd(step, 86400).
	step := 0
	switch f {
	case rrule.HOURLY:
		step = 3600 * interval
	case rrule.MINUTELY:
		step = 60 * interval
	case rrule.SECONDLY:
		step = interval
	}
	t0 := start.Hour()*3600 + start.Minute()*60 + start.Second()
	var hit []bool // see stepHits
	if step > 0 {
		in := func(set []int, v int) bool { return len(set) == 0 || containsInt(set, v) }
		match := make([]bool, 86400)
		g := gcd(step, 86400)
		reach := false
		for s := range match {
			h, m, sec := s/3600, s/60%60, s%60
			ok := in(o.Byhour, h)
			if f != rrule.HOURLY {
				ok = ok && in(o.Byminute, m)
			} else {
				ok = ok && m == start.Minute() && sec == start.Second()
			}
			if f == rrule.SECONDLY {
				ok = ok && in(o.Bysecond, sec)
			} else {
				ok = ok && sec == start.Second()
			}
			match[s] = ok
			reach = reach || (ok && s%g == t0%g)
		}
		if !reach {
			return refuse(value, "FREQ=%s;INTERVAL=%d from DTSTART at %s never reaches a time that BYHOUR, BYMINUTE and BYSECOND allow", f, interval, start.Format("15:04:05"))
		}
		hit = match
		if step < 86400 {
			// Whether a residue modulo step holds an allowed second.
			hit = make([]bool, step)
			for s, ok := range match {
				hit[s%step] = hit[s%step] || ok
			}
		}
	}
	if len(bymonth) == 0 && len(bymonthday) == 0 && len(o.Byyearday) == 0 && len(byday) == 0 && step == 0 && len(o.Bysetpos) == 0 {
		return nil // every visited day has occurrences
	}

	// Walk one Gregorian cycle of days from DTSTART: which days the rule
	// visits (its FREQ and INTERVAL), which of them the day parts allow
	// (BYWEEKNO, ordinals and BYSETPOS are not applied, so the walk finds
	// at least the days the library finds), and for sub-daily rules which
	// of them a step lands on at an allowed time.
	filter := newDayFilter(bymonth, bymonthday, o.Byyearday, byday, nthInMonth)
	d := newDay(start)
	wkst := o.Wkst.Day()
	weekIdx, monthIdx := 0, 0
	first, last, gap := -1, -1, 0
	period, inPeriod, maxPeriod := 0, 0, 0 // for BYSETPOS: allowed days per period
	for i := 0; i < cycleDays; i++ {
		if i > 0 {
			if d.next() {
				monthIdx++
			}
			if d.wd == wkst {
				weekIdx++
			}
		}
		year := d.y
		var visited bool
		p := i
		switch f {
		case rrule.YEARLY:
			visited, p = (year-start.Year())%interval == 0, year
		case rrule.MONTHLY:
			visited, p = monthIdx%interval == 0, monthIdx
		case rrule.WEEKLY:
			visited, p = weekIdx%interval == 0, weekIdx
		case rrule.DAILY:
			visited = i%interval == 0
		default:
			// A step lands on day i at second s when i*86400+s-t0 is a
			// multiple of step (i = 0: at or after DTSTART).
			visited = stepHits(hit, step, t0, i)
		}
		if p != period {
			period, inPeriod = p, 0
		}
		if !visited || !filter.allows(d) {
			continue
		}
		inPeriod++
		maxPeriod = max(maxPeriod, inPeriod)
		if first < 0 {
			first = i
		} else if i-last > gap {
			gap = i - last
		}
		last = i
	}
	if len(o.Bysetpos) > 0 && step == 0 && first >= 0 {
		fits, size := false, maxPeriod*perDay
		for _, p := range o.Bysetpos {
			fits = fits || (p <= size && p >= -size)
		}
		if !fits {
			return refuse(value, "BYSETPOS picks beyond the %d occurrences a FREQ=%s period holds", size, f)
		}
	}
	if first < 0 {
		return refuse(value, "no occurrence in the 400 years after DTSTART (%s): BYMONTH, BYMONTHDAY, BYYEARDAY and BYDAY never meet the days FREQ=%s;INTERVAL=%d visits", start.Format("2006-01-02"), f, interval)
	}
	if step > 0 {
		perDay := 1
		if step < 86400 {
			perDay = (86400 + step - 1) / step
		}
		gap = max(gap, first, cycleDays-last)
		if gap*perDay > maxRuleWork {
			return refuse(value, "occurrences up to %d days apart at FREQ=%s;INTERVAL=%d take more than %d steps to find; use a coarser FREQ", gap, f, interval, maxRuleWork)
		}
	}
	return nil
}

// stepHits reports whether a step of a sub-daily rule that starts at
// second t0 of day 0 lands on day i at an allowed second: the seconds s of
// day i it lands on are those with i*86400 + s - t0 a multiple of step.
// For a step under a day, hit says which residues modulo step hold an
// allowed second; for longer steps it is the allowed seconds of the day.
func stepHits(hit []bool, step, t0, i int) bool {
	r := (t0 - i*86400%step) % step
	if r < 0 {
		r += step
	}
	if step >= 86400 {
		return r < 86400 && hit[r]
	}
	return hit[r]
}

// day is a civil date, stepped one day at a time without time.Time.
type day struct {
	y, m, d   int // year, month 1-12, day of the month
	wd        int // weekday, Monday 0
	yd        int // day of the year, from 1
	dim, ylen int // days in the month and in the year
}

func newDay(t time.Time) day {
	return day{y: t.Year(), m: int(t.Month()), d: t.Day(), wd: pyWeekday(t.Weekday()), yd: t.YearDay(),
		dim: daysInMonthOf(t.Year(), t.Month()), ylen: yearLen(t.Year())}
}

// next moves to the following day; it reports a change of month.
func (d *day) next() bool {
	d.wd = (d.wd + 1) % 7
	d.d++
	d.yd++
	if d.d <= d.dim {
		return false
	}
	d.d = 1
	if d.m++; d.m > 12 {
		d.m, d.yd = 1, 1
		d.y++
		d.ylen = yearLen(d.y)
	}
	d.dim = daysInMonthOf(d.y, time.Month(d.m))
	return true
}

func yearLen(y int) int {
	if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		return 366
	}
	return 365
}

// dayFilter is BYMONTH, BYMONTHDAY, BYYEARDAY and BYDAY as tables; a
// nil table lets every day through. BYDAY's ordinals count within the
// month when nthInMonth, else within the year.
type dayFilter struct {
	month      []bool // by month 1-12
	monthday   []bool // by day of the month -31..31, offset 31
	yearday    []bool // by day of the year -366..366, offset 366
	weekday    []bool // by weekday*107 + ordinal+53 (ordinal 0: every)
	nthInMonth bool
}

func newDayFilter(bymonth, bymonthday, byyearday []int, byday []weekdayN, nthInMonth bool) *dayFilter {
	table := func(vals []int, size, offset int) []bool {
		if len(vals) == 0 {
			return nil
		}
		t := make([]bool, size)
		for _, v := range vals {
			if v+offset >= 0 && v+offset < size {
				t[v+offset] = true
			}
		}
		return t
	}
	f := &dayFilter{
		month:      table(bymonth, 13, 0),
		monthday:   table(bymonthday, 63, 31),
		yearday:    table(byyearday, 733, 366),
		nthInMonth: nthInMonth,
	}
	if len(byday) > 0 {
		f.weekday = make([]bool, 7*107)
		for _, w := range byday {
			if w.wd >= 0 && w.wd < 7 && w.n >= -53 && w.n <= 53 {
				f.weekday[w.wd*107+w.n+53] = true
			}
		}
	}
	return f
}

// allows applies the filter to a day.
func (f *dayFilter) allows(d day) bool {
	if f.month != nil && !f.month[d.m] {
		return false
	}
	if f.monthday != nil && !f.monthday[d.d+31] && !f.monthday[d.d-d.dim-1+31] {
		return false
	}
	if f.yearday != nil && !f.yearday[d.yd+366] && !f.yearday[d.yd-d.ylen-1+366] {
		return false
	}
	if f.weekday == nil {
		return true
	}
	pos, n := d.yd, d.ylen
	if f.nthInMonth {
		pos, n = d.d, d.dim
	}
	row := f.weekday[d.wd*107 : d.wd*107+107]
	return row[53] || row[(pos-1)/7+1+53] || row[-((n-pos)/7+1)+53]
}

func daysInMonthOf(y int, m time.Month) int {
	if m == time.February {
		return yearLen(y) - 337
	}
	return [...]int{31, 0, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
}

// weekdayN is a BYDAY entry: a weekday (Monday 0, as rrule-go numbers
// them) and its ordinal (0: every such day).
type weekdayN struct{ wd, n int }

func weekdays(ws []rrule.Weekday) []weekdayN {
	out := make([]weekdayN, 0, len(ws))
	for _, w := range ws {
		out = append(out, weekdayN{w.Day(), w.N()})
	}
	return out
}

// pyWeekday numbers a weekday from Monday 0, as rrule-go does.
func pyWeekday(w time.Weekday) int { return (int(w) + 6) % 7 }

// uniq drops repeated values, keeping the first of each.
func uniq(xs []int) []int {
	seen := map[int]bool{}
	out := xs[:0:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func containsInt(set []int, v int) bool {
	for _, x := range set {
		if x == v {
			return true
		}
	}
	return false
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
