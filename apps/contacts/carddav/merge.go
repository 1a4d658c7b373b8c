package carddav

import (
	"bytes"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-vcard"

	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/store"
)

// setFields are the multi-valued properties merged as sets.
var setFields = map[string]bool{
	vcard.FieldEmail: true, vcard.FieldTelephone: true, vcard.FieldIMPP: true, vcard.FieldURL: true,
	vcard.FieldCategories: true, vcard.FieldAddress: true,
}

// MergeFunc is the store merge function for the contacts prefix.
func (k *Kind) MergeFunc() store.MergeFunc { return dav.MergeFunc(MergeVCard) }

// MergeVCard merges two edits of a vCard 3-way, per property: a property
// that one side changed takes that side's value; EMAIL, TEL, IMPP, URL,
// CATEGORIES and ADR are sets (each side's additions and removals apply);
// where both sides changed the same single-valued property, the card with
// the later REV wins (and, for equal REVs, the greater value, so that every
// replica picks the same), and the other side's value is kept in the
// card's NOTE (conflictNote), where every contacts app shows it. An edit
// beats a delete.
func MergeVCard(base, ours, theirs []byte) ([]byte, error) {
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
	b := vcard.Card{}
	if base != nil {
		if b, err = Parse(base); err != nil {
			return nil, err
		}
	}
	oRev, tRev := o.Value(vcard.FieldRevision), t.Value(vcard.FieldRevision)
	theirsWins := tRev > oRev || (tRev == oRev && bytes.Compare(theirs, ours) > 0)
	out := vcard.Card{}
	lost := map[string][]*vcard.Field{} // a conflict's losing side, by property
	names := map[string]bool{}
	for _, c := range []vcard.Card{b, o, t} {
		for n := range c {
			names[n] = true
		}
	}
	for n := range names {
		if n == vcard.FieldRevision {
			continue
		}
		bf, of, tf := b[n], o[n], t[n]
		var res []*vcard.Field
		switch {
		case setFields[n]:
			res = mergeSet(bf, of, tf)
		case sameFields(of, tf), sameFields(tf, bf):
			res = of
		case sameFields(of, bf):
			res = tf
		case theirsWins:
			res, lost[n] = tf, of
		default:
			res, lost[n] = of, tf
		}
		if len(res) > 0 {
			out[n] = res
		}
	}
	if len(lost) > 0 {
		note := conflictNote(lost)
		if f := out.Get(vcard.FieldNote); f != nil && f.Value != "" {
			f.Value += "\n\n" + note
		} else {
			out.SetValue(vcard.FieldNote, note)
		}
	}
	rev := oRev
	if tRev > rev {
		rev = tRev
	}
	if rev != "" {
		out.SetValue(vcard.FieldRevision, rev)
	}
	var buf bytes.Buffer
	if err := vcard.NewEncoder(&buf).Encode(out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// conflictNote says what a merge dropped where both sides changed one
// property (lost: the losing side's values by property name; none where
// that side removed the property), for the card's NOTE (dav.ConflictNote).
// A photo, a key or a sound is named, not copied.
func conflictNote(lost map[string][]*vcard.Field) string {
	var props []dav.ConflictProp
	for _, n := range slices.Sorted(maps.Keys(lost)) {
		p := dav.ConflictProp{Name: n}
		for _, f := range lost[n] {
			if f.Params.Get("ENCODING") != "" || strings.HasPrefix(f.Value, "data:") {
				p.Opaque = true
			}
			// A structured value's components, as words.
			p.Values = append(p.Values, strings.Join(strings.FieldsFunc(f.Value, func(r rune) bool { return r == ';' }), " "))
		}
		props = append(props, p)
	}
	return dav.ConflictNote(props)
}

// fieldKey identifies a property value for set merges: its value and its
// parameters, sorted.
func fieldKey(f *vcard.Field) string {
	var ps []string
	for k, vs := range f.Params {
		vs = append([]string(nil), vs...)
		sort.Strings(vs)
		ps = append(ps, strings.ToUpper(k)+"="+strings.Join(vs, ","))
	}
	sort.Strings(ps)
	return f.Value + "\x00" + strings.Join(ps, ";") + "\x00" + f.Group
}

func sameFields(a, b []*vcard.Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if fieldKey(a[i]) != fieldKey(b[i]) {
			return false
		}
	}
	return true
}

// mergeSet keeps the values both sides kept and the values either added.
func mergeSet(base, ours, theirs []*vcard.Field) []*vcard.Field {
	in := func(fs []*vcard.Field) map[string]bool {
		m := map[string]bool{}
		for _, f := range fs {
			m[fieldKey(f)] = true
		}
		return m
	}
	b, o, t := in(base), in(ours), in(theirs)
	var out []*vcard.Field
	seen := map[string]bool{}
	for _, fs := range [][]*vcard.Field{ours, theirs} {
		for _, f := range fs {
			k := fieldKey(f)
			if seen[k] {
				continue
			}
			seen[k] = true
			if (o[k] && t[k]) || !b[k] {
				out = append(out, f)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return fieldKey(out[i]) < fieldKey(out[j]) })
	return out
}
