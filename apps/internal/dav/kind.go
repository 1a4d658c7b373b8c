package dav

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/nymote/nymote/store"
)

// Profile is what tells one kind of DAV collections from another, as
// data: the generic engine reads it instead of asking which kind it serves.
// A kind's Profile is fixed once the Handler is made.
type Profile struct {
	// Name is the store prefix and the service name ("contacts").
	Name string
	// Capability is the DAV: header token ("addressbook", "calendar-access").
	Capability string
	// WellKnown is the path that redirects to the root
	// ("/.well-known/carddav", RFC 6764).
	WellKnown string
	// CollectionType is the resourcetype element of the kind's collections;
	// StoredType is Collection.Type of them (TypeAddressBook, TypeCalendar).
	CollectionType xml.Name
	StoredType     string
	// MakeMethod is the kind's own method that makes a collection of its
	// type ("MKCALENDAR"; "": only extended MKCOL), and MakeBody the root
	// element of that method's body.
	MakeMethod string
	MakeBody   xml.Name
	// Components is the supported component set of a new collection that
	// names none (nil: the kind has no components).
	Components []string
	// HomeSet is the home-set property of a principal; UserAddressSet a
	// principal property the kind answers with the user's mailto: address
	// (zero: none).
	HomeSet, UserAddressSet xml.Name
	// MediaType is the objects' media type ("text/vcard"); MediaTypes are
	// the media types a PUT may name (MediaType and older aliases).
	MediaType  string
	MediaTypes []string
	// NS is the namespace of the kind's preconditions (max-resource-size,
	// supported-collation, ...).
	NS string
	// CollectionLocationOK is the precondition of a collection made
	// inside one of the kind's collections, where none may be nested
	// ("addressbook-collection-location-ok").
	CollectionLocationOK string
	// SupportedData is the precondition of a PUT whose media type the kind
	// does not take ("supported-address-data").
	SupportedData string
	// DataProp is the property that carries an object's data in REPORTs
	// (address-data, calendar-data).
	DataProp xml.Name
	// DescriptionProp and ColorProp name the collection description and
	// colour properties.
	DescriptionProp, ColorProp xml.Name
	// Multiget names the kind's multiget REPORT, which the engine answers;
	// Reports the kind's own REPORTs (answered by Kind.Report), in the
	// order supported-report-set lists them.
	Multiget xml.Name
	Reports  []xml.Name
	// MatchTypes: text-match takes a match-type attribute (RFC 6352
	// section 10.5.4); without it, text-match is a substring match (RFC
	// 4791 section 9.7.5).
	MatchTypes bool
}

// precond is a precondition element in the kind's namespace.
func (p *Profile) precond(local string) xml.Name { return Name(p.NS, local) }

// acceptsMediaType reports whether a PUT's media type is acceptable.
func (p *Profile) acceptsMediaType(t string) bool {
	for _, m := range p.MediaTypes {
		if m == t {
			return true
		}
	}
	return t == p.MediaType
}

// Kind is what makes a server a CardDAV or a CalDAV server: its Profile
// (the data: names, types, media type, REPORTs) and the behaviour that data
// cannot say (validation, rendering, the kind's own properties and
// REPORTs). The generic WebDAV machinery (storage, auth, PROPFIND,
// PROPPATCH, MKCOL, PUT, DELETE, multiget, sync-collection) lives in this
// package.
type Kind interface {
	// Profile returns the kind's data; the same value on every call.
	Profile() *Profile
	// Name is Profile().Name.
	Name() string
	// Validate checks one object resource and returns its UID. Failures
	// are *Error values saying what is wrong.
	Validate(data []byte, c *Collection) (uid string, err error)
	// RenderData renders DataProp's inner XML for an object of collection
	// c, following the request element (nil or empty: the whole object).
	RenderData(c *Collection, o *Object, req *Node) (string, error)
	// CollectionProps returns the kind's live properties of a collection.
	CollectionProps(c *Collection) []PropValue
	// MkcolProp sets a property of a collection that the kind keeps
	// itself (such as supported-calendar-component-set), on MKCOL,
	// MKCALENDAR or PROPPATCH; ok is false for properties it does not
	// handle, which are kept as dead properties. It may refuse a value of
	// such a property too (CalDAV's calendar-timezone must be a VTIMEZONE),
	// with ok true and an error.
	MkcolProp(c *Collection, p *Node) (ok bool, err error)
	// Report answers the kind's own REPORTs (Profile().Reports); handled
	// is false for a REPORT it does not know.
	Report(ctx context.Context, r *ReportRequest) (handled bool, err error)
}

// Object is one stored object resource.
type Object struct {
	// Name is the resource's last path segment; Href its full URL path.
	Name, Href string
	// ETag is the object's blob hash.
	ETag store.Hash
	// Data is the object's bytes, as the client sent them.
	Data []byte
}

// ETagString is the quoted entity tag.
func (o *Object) ETagString() string { return `"` + o.ETag.String() + `"` }

// ReportRequest is a REPORT handed to a Kind.
type ReportRequest struct {
	Body       *Node
	Collection *Collection
	// Objects loads every object of the collection, data included.
	Objects func() ([]*Object, error)
	// Respond writes a 207 multistatus with the properties that Body's
	// DAV:prop asks for, one response per object.
	Respond func(objs []*Object) error
	W       http.ResponseWriter
}

// Error is an HTTP error with an optional WebDAV precondition element and a
// message that says what was wrong.
type Error struct {
	Status int
	// Cond is the precondition or postcondition element (zero: none).
	Cond xml.Name
	// CondInner is inner XML of Cond (such as a DAV:href).
	CondInner string
	Message   string
}

func (e *Error) Error() string {
	if e.Cond.Local != "" {
		return fmt.Sprintf("%d %s: %s", e.Status, e.Cond.Local, e.Message)
	}
	return fmt.Sprintf("%d: %s", e.Status, e.Message)
}

// Errorf makes an *Error.
func Errorf(status int, cond xml.Name, format string, args ...any) *Error {
	return &Error{Status: status, Cond: cond, Message: fmt.Sprintf(format, args...)}
}

func statusText(code int) string {
	if code == 207 {
		return "Multi-Status"
	}
	if code == 424 {
		return "Failed Dependency"
	}
	return http.StatusText(code)
}

// Format names a kind's object format in the messages of DecodeOne.
type Format struct {
	// Name is the format ("iCalendar"), Object one object of it ("the
	// iCalendar object"), Outer its outermost component ("the VCALENDAR").
	Name, Object, Outer string
	// None and Many say that the body holds no object, or more than one.
	None, Many string
}

// DecodeOne decodes the one object that data must hold, for a kind's
// Parse: next is a decoder's Decode over data. Invalid UTF-8, no object, a
// malformed object (also one the decoder panics on: such input is
// malformed, not a server failure) and anything after the object are
// refused through invalid, with messages in f's words.
func DecodeOne[T any](data []byte, f Format, next func() (T, error), invalid func(string, ...any) error) (obj T, err error) {
	var zero T
	defer func() {
		if p := recover(); p != nil {
			obj, err = zero, invalid("malformed %s (the parser gave up: %v)", f.Name, p)
		}
	}()
	if !utf8.Valid(data) {
		return zero, invalid("%s is not valid UTF-8", f.Object)
	}
	obj, err = next()
	if err == io.EOF {
		return zero, invalid("%s", f.None)
	}
	if err != nil {
		return zero, invalid("malformed %s: %v", f.Name, err)
	}
	if _, err := next(); err != io.EOF {
		if err == nil {
			return zero, invalid("%s", f.Many)
		}
		return zero, invalid("malformed data after %s: %v", f.Outer, err)
	}
	return obj, nil
}

// A ContextRenderer is a Kind whose rendering of DataProp can cost much
// CPU (CalDAV's calendar-data with expand steps through recurrences). The
// handler calls RenderContext once per request (a REPORT or PROPFIND) and
// renders every object of that request with RenderDataContext in the
// context it returned, so that the kind bounds the request's renderings as
// a whole (beyond its budget it returns a *Error, such as 507, which the
// handler answers if the response has not begun, and cuts the connection
// otherwise) and stops them when the request's context ends (the client
// went away). The same context is what Report is called with.
type ContextRenderer interface {
	// RenderContext returns ctx with the kind's budget for one request.
	RenderContext(ctx context.Context) context.Context
	// RenderDataContext is RenderData within a context from
	// RenderContext.
	RenderDataContext(ctx context.Context, c *Collection, o *Object, req *Node) (string, error)
}

// renderContext is the context of one request's renderings (see
// ContextRenderer).
func (h *Handler) renderContext(ctx context.Context) context.Context {
	if cr, ok := h.kind.(ContextRenderer); ok {
		return cr.RenderContext(ctx)
	}
	return ctx
}

// renderData renders DataProp for o within ctx (from renderContext).
func (h *Handler) renderData(ctx context.Context, c *Collection, o *Object, req *Node) (string, error) {
	if cr, ok := h.kind.(ContextRenderer); ok {
		return cr.RenderDataContext(ctx, c, o, req)
	}
	return h.kind.RenderData(c, o, req)
}

// newComponents is the component set of a new collection of the kind (a
// copy: collections own theirs).
func (p *Profile) newComponents() []string {
	if p.Components == nil {
		return nil
	}
	return append([]string(nil), p.Components...)
}
