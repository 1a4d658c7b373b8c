package dav

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/nymote/nymote/store"
)

// ObjectMerger reconciles one object changed on both sides of a store
// merge (base, ours or theirs is nil where the object is absent); nil
// deletes it.
type ObjectMerger func(base, ours, theirs []byte) ([]byte, error)

// MergeFunc is the store merge function for a kind's prefix: objects go
// to merge; collection properties merge per property (an edit beats a
// delete); anything else keeps the side that changed, ours when both did.
// Both replicas of a merge must reach the same result whichever side is
// "ours", so where both sides changed one value, the greater one wins.
func MergeFunc(merge ObjectMerger) store.MergeFunc {
	return func(p string, base, ours, theirs []byte) ([]byte, error) {
		switch {
		case strings.Contains(p, "/o/"):
			return merge(base, ours, theirs)
		case strings.HasSuffix(p, "/props.json"):
			return mergeJSON(base, ours, theirs)
		}
		if ours == nil {
			return theirs, nil
		}
		if theirs == nil {
			return ours, nil
		}
		if bytes.Compare(theirs, ours) > 0 {
			return theirs, nil
		}
		return ours, nil
	}
}

// mergeJSON merges two edits of a JSON object per top-level key.
func mergeJSON(base, ours, theirs []byte) ([]byte, error) {
	if ours == nil || theirs == nil { // an edit beats a delete
		if ours == nil {
			return theirs, nil
		}
		return ours, nil
	}
	var b, o, t map[string]json.RawMessage
	if base != nil {
		if err := json.Unmarshal(base, &b); err != nil {
			return nil, err
		}
	}
	if err := json.Unmarshal(ours, &o); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(theirs, &t); err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	keys := map[string]bool{}
	for k := range o {
		keys[k] = true
	}
	for k := range t {
		keys[k] = true
	}
	for k := range keys {
		bv, ov, tv := b[k], o[k], t[k]
		switch {
		case bytes.Equal(ov, tv), bytes.Equal(tv, bv):
			if ov != nil {
				out[k] = ov
			}
		case bytes.Equal(ov, bv):
			if tv != nil {
				out[k] = tv
			}
		case ov == nil:
			out[k] = tv
		case tv == nil:
			out[k] = ov
		case bytes.Compare(tv, ov) > 0:
			out[k] = tv
		default:
			out[k] = ov
		}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	return append(data, '\n'), err
}

// ConflictProp is one property of the version that a kind's merge did not
// keep, for ConflictNote: its values as text (none: that version had no
// such property); Opaque where they are not text to read (a photo, an
// attachment, alarms).
type ConflictProp struct {
	Name   string
	Values []string
	Opaque bool
}

// ConflictNote is the text that a kind's merge adds to the object it keeps
// where both sides changed the same property (a contact's NOTE, an event's
// DESCRIPTION), so that a person sees the other side's version, not kept:
// each property with its values quoted, "no NAME" where that version had
// none, and values too long or opaque to read there named only (the
// object's history holds them).
func ConflictNote(props []ConflictProp) string {
	parts := make([]string, 0, len(props))
	for _, p := range props {
		readable := !p.Opaque
		for _, v := range p.Values {
			if len(v) > 200 {
				readable = false
			}
		}
		switch {
		case len(p.Values) == 0 && !p.Opaque:
			parts = append(parts, "no "+p.Name)
		case !readable:
			parts = append(parts, p.Name+" changed (the other value is in the history)")
		default:
			q := make([]string, len(p.Values))
			for i, v := range p.Values {
				q[i] = "“" + v + "”"
			}
			parts = append(parts, p.Name+" "+strings.Join(q, ", "))
		}
	}
	return "Changed on two devices at once. The other device's version, not kept: " + strings.Join(parts, "; ") + "."
}
