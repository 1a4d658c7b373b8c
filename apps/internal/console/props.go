package console

import (
	"sort"
	"strings"
)

// A vCard or iCalendar object as the console compares it: its content
// lines, unfolded, keyed by the components they sit in and their name.
// This is a reader for display only; the apps validate what they store.

// prop is one content line.
type prop struct {
	// Key is the components path and the name, such as "VEVENT/DTSTART"
	// or "VCARD/TEL".
	Key    string
	Params string
	Value  string
}

// parseProps reads the content lines of data (RFC 6350 and RFC 5545
// syntax): lines unfolded, BEGIN/END kept as the path of components.
func parseProps(data []byte) []prop {
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	text = strings.ReplaceAll(text, "\n ", "")
	text = strings.ReplaceAll(text, "\n\t", "")
	var path []string
	var out []prop
	for _, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		nameParams, value, ok := cutValue(line)
		if !ok {
			continue
		}
		name, params, _ := strings.Cut(nameParams, ";")
		name = strings.ToUpper(name)
		if g := strings.IndexByte(name, '.'); g >= 0 { // vCard groups
			name = name[g+1:]
		}
		switch name {
		case "BEGIN":
			path = append(path, strings.ToUpper(value))
			continue
		case "END":
			if len(path) > 0 {
				path = path[:len(path)-1]
			}
			continue
		}
		out = append(out, prop{Key: strings.Join(append(path[:len(path):len(path)], name), "/"), Params: params, Value: unescapeValue(value)})
	}
	return out
}

// cutValue splits a content line at the colon that ends its name and
// parameters (a colon inside a quoted parameter value does not count).
func cutValue(line string) (string, string, bool) {
	quoted := false
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '"':
			quoted = !quoted
		case ':':
			if !quoted {
				return line[:i], line[i+1:], true
			}
		}
	}
	return "", "", false
}

func unescapeValue(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	r := strings.NewReplacer(`\n`, "\n", `\N`, "\n", `\,`, ",", `\;`, ";", `\\`, `\`)
	return r.Replace(v)
}

// noise are the properties that change with every save and say nothing
// to a person.
var noise = map[string]bool{"PRODID": true, "REV": true, "DTSTAMP": true, "LAST-MODIFIED": true, "SEQUENCE": true,
	"CREATED": true, "X-MOZ-GENERATION": true, "X-MOZ-LASTACK": true, "UID": true, "VERSION": true}

// FieldChange is one property before and after a change ("" when absent).
type FieldChange struct {
	Field  string `json:"field"`
	Label  string `json:"label"`
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

// diffProps compares two objects property by property, in the order of
// the newer one.
func diffProps(before, after []prop) []FieldChange {
	group := func(ps []prop) (map[string][]string, []string) {
		m := map[string][]string{}
		var order []string
		for _, p := range ps {
			name := p.Key[strings.LastIndexByte(p.Key, '/')+1:]
			if noise[name] {
				continue
			}
			if _, ok := m[p.Key]; !ok {
				order = append(order, p.Key)
			}
			v := p.Value
			if t := typeParam(p.Params); t != "" {
				v = v + " (" + t + ")"
			}
			m[p.Key] = append(m[p.Key], v)
		}
		return m, order
	}
	bm, border := group(before)
	am, aorder := group(after)
	keys := aorder
	for _, k := range border {
		if _, ok := am[k]; !ok {
			keys = append(keys, k)
		}
	}
	var out []FieldChange
	for _, k := range keys {
		b, a := bm[k], am[k]
		sort.Strings(b)
		sort.Strings(a)
		bs, as := strings.Join(b, "\n"), strings.Join(a, "\n")
		if bs == as {
			continue
		}
		out = append(out, FieldChange{Field: k, Label: label(k), Before: bs, After: as})
	}
	return out
}

func typeParam(params string) string {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(p, "=")
		if ok && strings.EqualFold(k, "TYPE") {
			return strings.ToLower(strings.Trim(v, `"`))
		}
	}
	return ""
}

// labels are the words people use for the common properties.
var labels = map[string]string{
	"FN": "name", "N": "structured name", "TEL": "phone", "EMAIL": "email", "ADR": "address", "ORG": "organisation",
	"TITLE": "title", "NOTE": "note", "BDAY": "birthday", "URL": "web site", "PHOTO": "photo", "NICKNAME": "nickname",
	"CATEGORIES": "categories", "ROLE": "role", "IMPP": "chat address",
	"SUMMARY": "title", "DTSTART": "start", "DTEND": "end", "DURATION": "duration", "LOCATION": "location",
	"DESCRIPTION": "description", "RRULE": "repetition", "EXDATE": "exception dates", "STATUS": "status",
	"ATTENDEE": "attendees", "ORGANIZER": "organiser", "DUE": "due", "PRIORITY": "priority", "COMPLETED": "completed",
	"PERCENT-COMPLETE": "progress", "TRIGGER": "reminder", "CLASS": "visibility", "TRANSP": "busy/free",
}

func label(key string) string {
	parts := strings.Split(key, "/")
	name := parts[len(parts)-1]
	l, ok := labels[name]
	if !ok {
		l = strings.ToLower(name)
	}
	if len(parts) >= 2 && parts[len(parts)-2] == "VALARM" {
		l = "alarm " + l
	}
	return l
}

// objectName is what a person calls an object: a contact's FN, an event's
// SUMMARY; kind is "contact", "event", "task" or "item".
func objectName(ps []prop) (kind, name string) {
	kind = "item"
	for _, p := range ps {
		switch p.Key {
		case "VCARD/FN":
			return "contact", p.Value
		case "VCALENDAR/VEVENT/SUMMARY":
			return "event", p.Value
		case "VCALENDAR/VTODO/SUMMARY":
			return "task", p.Value
		case "VCALENDAR/VJOURNAL/SUMMARY":
			return "journal entry", p.Value
		}
	}
	for _, p := range ps {
		switch {
		case strings.HasPrefix(p.Key, "VCARD/"):
			kind = "contact"
		case strings.HasPrefix(p.Key, "VCALENDAR/VEVENT/"):
			kind = "event"
		case strings.HasPrefix(p.Key, "VCALENDAR/VTODO/"):
			kind = "task"
		}
	}
	return kind, ""
}

// startOf returns the DTSTART value of the object's first component.
func startOf(ps []prop) (string, string) {
	for _, p := range ps {
		if strings.HasSuffix(p.Key, "/DTSTART") && strings.Count(p.Key, "/") == 2 {
			return p.Value, p.Params
		}
	}
	return "", ""
}
