// Package carddav is the CardDAV (RFC 6352) kind of the dav core: address
// books of vCards, their validation, addressbook-query and the vCard merge
// function that store replicas use.
package carddav

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/emersion/go-vcard"

	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/store"
)

// MediaType is the media type of vCards.
const MediaType = "text/vcard"

// Namespace of address book colours (as InfCloud and DAVx5 use them).
const nsInf = "http://inf-it.com/ns/ab/"

// Kind is the CardDAV dav.Kind. The zero value is not usable; use New.
type Kind struct {
	// MaxObjectSize is advertised as max-resource-size.
	MaxObjectSize int64

	cards *dav.ParseCache[vcard.Card]
}

var _ dav.Kind = (*Kind)(nil)

// New returns the CardDAV kind; maxSize is the object size limit it
// advertises (zero: dav.DefaultMaxObjectSize).
func New(maxSize int64) *Kind {
	if maxSize == 0 {
		maxSize = dav.DefaultMaxObjectSize
	}
	return &Kind{MaxObjectSize: maxSize, cards: dav.NewParseCache(0, Parse)}
}

// profile is what CardDAV is, as data.
var profile = &dav.Profile{
	Name:                 "contacts",
	Capability:           "addressbook",
	WellKnown:            "/.well-known/carddav",
	CollectionType:       dav.Name(dav.NSCardDAV, "addressbook"),
	StoredType:           dav.TypeAddressBook,
	HomeSet:              dav.Name(dav.NSCardDAV, "addressbook-home-set"),
	MediaType:            MediaType,
	MediaTypes:           []string{"text/x-vcard"}, // the older name
	NS:                   dav.NSCardDAV,
	CollectionLocationOK: "addressbook-collection-location-ok",
	SupportedData:        "supported-address-data",
	DataProp:             dav.Name(dav.NSCardDAV, "address-data"),
	DescriptionProp:      dav.Name(dav.NSCardDAV, "addressbook-description"),
	ColorProp:            dav.Name(nsInf, "addressbook-color"),
	Multiget:             dav.Name(dav.NSCardDAV, "addressbook-multiget"),
	Reports:              []xml.Name{dav.Name(dav.NSCardDAV, "addressbook-query")},
	MatchTypes:           true,
}

func (k *Kind) Profile() *dav.Profile { return profile }
func (k *Kind) Name() string          { return profile.Name }

func (k *Kind) MkcolProp(c *dav.Collection, p *dav.Node) (bool, error) { return false, nil }

// CollectionProps are supported-address-data and max-resource-size.
func (k *Kind) CollectionProps(c *dav.Collection) []dav.PropValue {
	if c.Type != dav.TypeAddressBook {
		return nil
	}
	data := ""
	for _, v := range []string{"3.0", "4.0"} {
		data += `<card:address-data-type content-type="text/vcard" version="` + v + `"/>`
	}
	return []dav.PropValue{
		{Name: dav.Name(dav.NSCardDAV, "supported-address-data"), Inner: data},
		{Name: dav.Name(dav.NSCardDAV, "max-resource-size"), Inner: strconv.FormatInt(k.MaxObjectSize, 10)},
	}
}

func invalid(format string, args ...any) error {
	return &dav.Error{Status: http.StatusBadRequest, Cond: dav.Name(dav.NSCardDAV, "valid-address-data"), Message: fmt.Sprintf(format, args...)}
}

// Parse decodes exactly one vCard.
func Parse(data []byte) (vcard.Card, error) {
	return dav.DecodeOne(data, vcardFormat, vcard.NewDecoder(bytes.NewReader(data)).Decode, invalid)
}

var vcardFormat = dav.Format{
	Name: "vCard", Object: "the vCard", Outer: "the vCard",
	None: "the body holds no vCard (BEGIN:VCARD … END:VCARD)",
	Many: "the body holds more than one vCard; put each in its own resource",
}

// Validate checks that data is one vCard 3.0 or 4.0 with a UID and an FN.
func (k *Kind) Validate(data []byte, c *dav.Collection) (string, error) {
	card, err := Parse(data)
	if err != nil {
		return "", err
	}
	switch v := card.Value(vcard.FieldVersion); v {
	case "3.0", "4.0":
	case "":
		return "", invalid("the vCard has no VERSION")
	default:
		return "", invalid("vCard version %q; this server takes 3.0 and 4.0", v)
	}
	uid := strings.TrimSpace(card.Value(vcard.FieldUID))
	if uid == "" {
		return "", invalid("the vCard has no UID")
	}
	if card.Get(vcard.FieldFormattedName) == nil {
		return "", invalid("the vCard has no FN (formatted name)")
	}
	// Cache the parse under the ETag: the first query after a PUT need not
	// parse the card again.
	h := store.BlobHash(data)
	k.cards.Put(h, len(data), card)
	return uid, nil
}

// card returns the parsed vCard of an object, cached by ETag.
func (k *Kind) card(o *dav.Object) (vcard.Card, error) { return k.cards.Get(o) }

// RenderData returns the vCard; an address-data request naming properties
// gets only those (and VERSION, UID).
func (k *Kind) RenderData(_ *dav.Collection, o *dav.Object, req *dav.Node) (string, error) {
	props := req.All(dav.Name(dav.NSCardDAV, "prop"))
	if len(props) == 0 || req.Child(dav.Name(dav.NSCardDAV, "allprop")) != nil {
		return dav.Text(string(o.Data)), nil
	}
	card, err := k.card(o)
	if err != nil {
		return "", err
	}
	out := vcard.Card{}
	for _, f := range []string{vcard.FieldVersion, vcard.FieldUID} {
		if v, ok := card[f]; ok {
			out[f] = v
		}
	}
	for _, p := range props {
		name := strings.ToUpper(p.AttrValue("name"))
		if v, ok := card[name]; ok {
			out[name] = v
		}
	}
	var b bytes.Buffer
	if err := vcard.NewEncoder(&b).Encode(out); err != nil {
		return "", err
	}
	return dav.Text(b.String()), nil
}

// Report answers addressbook-query.
func (k *Kind) Report(ctx context.Context, r *dav.ReportRequest) (bool, error) {
	if r.Body.Name != dav.Name(dav.NSCardDAV, "addressbook-query") {
		return false, nil
	}
	filter := r.Body.Child(dav.Name(dav.NSCardDAV, "filter"))
	limit := -1
	if l := r.Body.Child(dav.Name(dav.NSCardDAV, "limit")); l != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(l.Child(dav.Name(dav.NSCardDAV, "nresults")).Text)); err == nil && n >= 0 {
			limit = n
		}
	}
	objs, err := r.Objects()
	if err != nil {
		return true, err
	}
	var out []*dav.Object
	for _, o := range objs {
		if limit >= 0 && len(out) >= limit {
			break
		}
		card, err := k.card(o)
		if err != nil {
			continue // stored before validation tightened; never matches
		}
		ok, err := MatchFilter(filter, card)
		if err != nil {
			return true, err
		}
		if ok {
			out = append(out, o)
		}
	}
	return true, r.Respond(out)
}

// MatchFilter evaluates a CARDDAV:filter element against a card (RFC 6352
// section 10.5). A nil or empty filter matches every card.
func MatchFilter(filter *dav.Node, card vcard.Card) (bool, error) {
	pfs := filter.All(dav.Name(dav.NSCardDAV, "prop-filter"))
	if len(pfs) == 0 {
		return true, nil
	}
	allof := filter.AttrValue("test") == "allof"
	for _, pf := range pfs {
		ok, err := matchPropFilter(pf, card)
		if err != nil {
			return false, err
		}
		if ok && !allof {
			return true, nil
		}
		if !ok && allof {
			return false, nil
		}
	}
	return allof, nil
}

func matchPropFilter(pf *dav.Node, card vcard.Card) (bool, error) {
	name := strings.ToUpper(pf.AttrValue("name"))
	fields := card[name]
	if pf.Child(dav.Name(dav.NSCardDAV, "is-not-defined")) != nil {
		return len(fields) == 0, nil
	}
	if len(fields) == 0 {
		return false, nil
	}
	tms := pf.All(dav.Name(dav.NSCardDAV, "text-match"))
	params := pf.All(dav.Name(dav.NSCardDAV, "param-filter"))
	if len(tms) == 0 && len(params) == 0 {
		return true, nil
	}
	allof := pf.AttrValue("test") == "allof"
	// The prop-filter matches when some instance of the property matches.
	for _, f := range fields {
		var results []bool
		for _, tm := range tms {
			ok, err := TextMatch(tm, f.Value)
			if err != nil {
				return false, err
			}
			results = append(results, ok)
		}
		for _, p := range params {
			pname := strings.ToUpper(p.AttrValue("name"))
			vals := f.Params[pname]
			if p.Child(dav.Name(dav.NSCardDAV, "is-not-defined")) != nil {
				results = append(results, len(vals) == 0)
				continue
			}
			tm := p.Child(dav.Name(dav.NSCardDAV, "text-match"))
			ok := len(vals) > 0 && tm == nil
			for _, v := range vals {
				if tm == nil {
					break
				}
				m, err := TextMatch(tm, v)
				if err != nil {
					return false, err
				}
				ok = ok || m
			}
			results = append(results, ok)
		}
		if combine(results, allof) {
			return true, nil
		}
	}
	return false, nil
}

func combine(rs []bool, allof bool) bool {
	for _, r := range rs {
		if r && !allof {
			return true
		}
		if !r && allof {
			return false
		}
	}
	return allof
}

// TextMatch evaluates a CARDDAV:text-match element (dav.Profile.TextMatch,
// with match-type).
func TextMatch(tm *dav.Node, value string) (bool, error) { return profile.TextMatch(tm, value) }
