// Package caldav is the CalDAV (RFC 4791) kind of the dav core: calendars
// of iCalendar objects, their validation, calendar-query with time ranges
// that follow recurrence (RRULE, RDATE, EXDATE, overridden instances) and
// time zones (the object's VTIMEZONE rules, else the IANA database; the
// calendar's calendar-timezone for floating times), calendar-data with
// partial retrieval (comp, prop, allprop, allcomp), expand,
// limit-recurrence-set and limit-freebusy-set, free-busy-query, and the
// iCalendar merge function that store replicas use.
package caldav

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-ical"

	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/store"
)

// MediaType is the media type of iCalendar objects.
const MediaType = "text/calendar"

// Kind is the CalDAV dav.Kind; make it with New.
type Kind struct {
	MaxObjectSize int64

	cals *dav.ParseCache[*ical.Calendar]
}

var (
	_ dav.Kind            = (*Kind)(nil)
	_ dav.ContextRenderer = (*Kind)(nil)
)

// New returns the CalDAV kind; maxSize is the object size limit it
// advertises (zero: dav.DefaultMaxObjectSize).
func New(maxSize int64) *Kind {
	if maxSize == 0 {
		maxSize = dav.DefaultMaxObjectSize
	}
	return &Kind{MaxObjectSize: maxSize, cals: dav.NewParseCache(0, Parse)}
}

// profile is what CalDAV is, as data.
var profile = &dav.Profile{
	Name:           "calendar",
	Capability:     "calendar-access",
	WellKnown:      "/.well-known/caldav",
	CollectionType: dav.Name(dav.NSCalDAV, "calendar"),
	StoredType:     dav.TypeCalendar,
	MakeMethod:     "MKCALENDAR",
	MakeBody:       dav.Name(dav.NSCalDAV, "mkcalendar"),
	// What a calendar made without supported-calendar-component-set
	// takes.
	Components:           []string{ical.CompEvent, ical.CompToDo},
	HomeSet:              dav.Name(dav.NSCalDAV, "calendar-home-set"),
	UserAddressSet:       dav.Name(dav.NSCalDAV, "calendar-user-address-set"),
	MediaType:            MediaType,
	NS:                   dav.NSCalDAV,
	CollectionLocationOK: "calendar-collection-location-ok",
	SupportedData:        "supported-calendar-data",
	DataProp:             dav.Name(dav.NSCalDAV, "calendar-data"),
	DescriptionProp:      dav.Name(dav.NSCalDAV, "calendar-description"),
	ColorProp:            dav.Name(dav.NSApple, "calendar-color"),
	Multiget:             dav.Name(dav.NSCalDAV, "calendar-multiget"),
	Reports:              []xml.Name{dav.Name(dav.NSCalDAV, "calendar-query"), dav.Name(dav.NSCalDAV, "free-busy-query")},
}

func (k *Kind) Profile() *dav.Profile { return profile }
func (k *Kind) Name() string          { return profile.Name }

// components are the object components a calendar may hold.
var components = []string{ical.CompEvent, ical.CompToDo, ical.CompJournal, ical.CompFreeBusy}

// MkcolProp handles supported-calendar-component-set, and checks a
// calendar-timezone (which is then kept as a dead property): it must be a
// VCALENDAR holding one VTIMEZONE (RFC 4791 section 5.2.2).
func (k *Kind) MkcolProp(c *dav.Collection, p *dav.Node) (bool, error) {
	if p.Name == calendarTimezone {
		if _, err := parseCalendarTimezone("calendar-timezone", p.Text); err != nil {
			return true, err
		}
		return false, nil
	}
	if p.Name != dav.Name(dav.NSCalDAV, "supported-calendar-component-set") {
		return false, nil
	}
	var set []string
	for _, comp := range p.All(dav.Name(dav.NSCalDAV, "comp")) {
		name := strings.ToUpper(comp.AttrValue("name"))
		ok := false
		for _, n := range components {
			ok = ok || n == name
		}
		if !ok {
			return true, dav.Errorf(http.StatusForbidden, dav.Name(dav.NSCalDAV, "supported-calendar-component"), "unknown calendar component %q", name)
		}
		set = append(set, name)
	}
	if len(set) == 0 {
		return true, dav.Errorf(http.StatusForbidden, dav.Name(dav.NSCalDAV, "supported-calendar-component"), "supported-calendar-component-set names no component")
	}
	c.Components = set
	return true, nil
}

// CollectionProps are supported-calendar-component-set,
// supported-calendar-data and max-resource-size.
func (k *Kind) CollectionProps(c *dav.Collection) []dav.PropValue {
	if c.Type != dav.TypeCalendar {
		return nil
	}
	var comps strings.Builder
	for _, n := range c.Components {
		comps.WriteString(`<cal:comp name="` + n + `"/>`)
	}
	return []dav.PropValue{
		{Name: dav.Name(dav.NSCalDAV, "supported-calendar-component-set"), Inner: comps.String()},
		{Name: dav.Name(dav.NSCalDAV, "supported-calendar-data"), Inner: `<cal:calendar-data content-type="text/calendar" version="2.0"/>`},
		{Name: dav.Name(dav.NSCalDAV, "max-resource-size"), Inner: strconv.FormatInt(k.MaxObjectSize, 10)},
	}
}

func invalid(format string, args ...any) error {
	return &dav.Error{Status: http.StatusBadRequest, Cond: dav.Name(dav.NSCalDAV, "valid-calendar-data"), Message: fmt.Sprintf(format, args...)}
}

func invalidObject(format string, args ...any) error {
	return &dav.Error{Status: http.StatusBadRequest, Cond: dav.Name(dav.NSCalDAV, "valid-calendar-object-resource"), Message: fmt.Sprintf(format, args...)}
}

// Parse decodes exactly one VCALENDAR.
func Parse(data []byte) (*ical.Calendar, error) {
	// go-ical's decoder panics on some malformed lines ("0;0=", found by
	// FuzzValidate); DecodeOne turns that into a refusal.
	return dav.DecodeOne(data, icalFormat, ical.NewDecoder(bytes.NewReader(data)).Decode, invalid)
}

var icalFormat = dav.Format{
	Name: "iCalendar", Object: "the iCalendar object", Outer: "the VCALENDAR",
	None: "the body holds no iCalendar object (BEGIN:VCALENDAR … END:VCALENDAR)",
	Many: "the body holds more than one VCALENDAR",
}

// Validate checks a calendar object resource (RFC 4791 section 4.1): one
// VCALENDAR whose components other than VTIMEZONE share one type and one
// UID, at most one of them without RECURRENCE-ID, with dates and rules that
// parse, of a type the calendar takes.
func (k *Kind) Validate(data []byte, c *dav.Collection) (string, error) {
	cal, err := Parse(data)
	if err != nil {
		return "", err
	}
	var typ, uid string
	masters := 0
	for _, comp := range cal.Children {
		if comp.Name == ical.CompTimezone {
			continue
		}
		if typ == "" {
			typ = comp.Name
		} else if comp.Name != typ {
			return "", invalidObject("the object mixes %s and %s; put each in its own resource", typ, comp.Name)
		}
		u := strings.TrimSpace(propValue(comp, ical.PropUID))
		if u == "" {
			return "", invalidObject("a %s has no UID", comp.Name)
		}
		if uid == "" {
			uid = u
		} else if u != uid {
			return "", invalidObject("the object holds UIDs %q and %q; put each in its own resource", uid, u)
		}
		if comp.Props.Get(ical.PropRecurrenceID) == nil {
			masters++
		}
		if comp.Name == ical.CompEvent && comp.Props.Get(ical.PropDateTimeStart) == nil && cal.Props.Get(ical.PropMethod) == nil {
			return "", invalidObject("the VEVENT %q has no DTSTART", u)
		}
	}
	if typ == "" {
		return "", invalidObject("the VCALENDAR holds no VEVENT, VTODO, VJOURNAL or VFREEBUSY")
	}
	if masters > 1 {
		return "", invalidObject("the object holds %d %s components without RECURRENCE-ID for UID %q", masters, typ, uid)
	}
	if c != nil && len(c.Components) > 0 {
		ok := false
		for _, n := range c.Components {
			ok = ok || n == typ
		}
		if !ok {
			return "", &dav.Error{Status: http.StatusForbidden, Cond: dav.Name(dav.NSCalDAV, "supported-calendar-component"),
				Message: fmt.Sprintf("this calendar takes %s, not %s", strings.Join(c.Components, ", "), typ)}
		}
	}
	// Dates and rules must parse, so that queries can use them. A range
	// around now expands a little of every rule.
	if typ != ical.CompFreeBusy {
		now := time.Now()
		if _, err := Instances(cal, typ, now, now.AddDate(0, 0, 1), time.UTC); errors.Is(err, errRule) {
			return "", invalidObject("%s %q: %v", typ, uid, err)
		} else if err != nil {
			return "", invalid("%s %q: %v", typ, uid, err)
		}
	}
	k.remember(data, cal)
	return uid, nil
}

// remember caches a validated object's parse under its ETag, so that the
// first query after a PUT need not parse it again.
func (k *Kind) remember(data []byte, c *ical.Calendar) {
	h := store.BlobHash(data)
	k.cals.Put(h, len(data), c)
}

// calendar returns the parsed object, cached by ETag. Callers must not
// change it.
func (k *Kind) calendar(o *dav.Object) (*ical.Calendar, error) { return k.cals.Get(o) }

// Report answers calendar-query and free-busy-query.
func (k *Kind) Report(ctx context.Context, r *dav.ReportRequest) (bool, error) {
	switch r.Body.Name {
	case dav.Name(dav.NSCalDAV, "calendar-query"):
		return true, k.query(ctx, r)
	case dav.Name(dav.NSCalDAV, "free-busy-query"):
		return true, k.freeBusy(ctx, r)
	}
	return false, nil
}
