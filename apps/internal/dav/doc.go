// Package dav is the WebDAV core that Nymote's contacts (CardDAV) and
// calendar (CalDAV) appliances share: collections and objects kept in the
// versioned store, HTTP basic authentication against the store's users,
// discovery (current-user-principal and home sets), PROPFIND, PROPPATCH,
// MKCOL (extended, RFC 5689) and MKCALENDAR, PUT and DELETE with
// If-Match/If-None-Match, COPY and MOVE of objects and collections (one
// commit each), multiget, and sync-collection (RFC 6578) with sync
// tokens that name store commits.
//
// A Kind (apps/contacts/carddav, apps/calendar/caldav) supplies what differs:
// a Profile, the data (collection type, media type, DAV capability, the
// method that makes its collections, property and REPORT names, the
// namespace of its preconditions), and a little behaviour (validation,
// rendering of the data property, its own properties and query REPORTs).
// The engine reads the Profile and never asks which kind it serves. Kinds
// share one ParseCache type for their parsed objects and one text-match
// (Profile.TextMatch). NewHandler makes the http.Handler; Serve runs it on
// listeners it is handed, over TLS: a plain HTTP listener only redirects to
// https (Config.InsecureHTTP serves DAV there, for loopback tests), and
// every listener and login goes through apps/internal/guard (connection
// caps, handshake deadline, login rate limits).
//
// Why not go-webdav's server: its carddav and caldav Handlers keep the
// WebDAV machinery in an internal package, so properties (getctag,
// sync-token, colours, supported-report-set, dead properties), PROPPATCH,
// sync-collection, expand and free-busy cannot be added around them, and
// they re-encode objects, so GET does not return what was PUT under the
// stored ETag. This package therefore owns the HTTP side and uses go-vcard
// and go-ical for the data; go-webdav's client drives the tests.
//
// Status codes for refused writes: a wrong Content-Type is 415, a malformed
// object 400, a UID used by another object 409 (no-uid-conflict), an object
// over the size limit 413 (max-resource-size), a failed If-Match or
// If-None-Match 412; each with a DAV:error body that names the precondition
// and a message. Nothing is stored on any of them.
//
// Every request is bounded, logged in or not: an XML body is read as a
// stream of at most MaxXMLBody bytes (413 beyond), MaxXMLDepth levels and
// MaxXMLElements elements (400 naming the limit); a resource keeps at
// most MaxDeadProps dead properties in MaxPropBytes, and a collection
// MaxCollectionObjects objects; a COPY or MOVE of a collection takes at
// most MaxCopyItems items, copied by blob hash (507 beyond each, with a
// message). Multistatus responses are streamed once they pass 256 KiB, so
// a listing with every object's data holds one object at a time.
package dav
