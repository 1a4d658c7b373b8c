package dav_test

import (
	"context"
	"encoding/xml"
	"net/http"
	"strings"
	"testing"

	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
)

// notes is a made-up kind (plain-text notes) that the engine knows only
// by its Profile: nothing in the engine names it.
type notes struct{}

var notesProfile = &dav.Profile{
	Name:                 "notes",
	Capability:           "x-notes",
	WellKnown:            "/.well-known/notes",
	CollectionType:       dav.Name("urn:x-nymote:notes", "notebook"),
	StoredType:           dav.TypeAddressBook, // a kind's collections of its own type
	HomeSet:              dav.Name("urn:x-nymote:notes", "notebook-home-set"),
	MediaType:            "text/plain",
	NS:                   "urn:x-nymote:notes",
	CollectionLocationOK: "notebook-location-ok",
	SupportedData:        "supported-note-data",
	DataProp:             dav.Name("urn:x-nymote:notes", "note-data"),
	DescriptionProp:      dav.Name("urn:x-nymote:notes", "notebook-description"),
	ColorProp:            dav.Name("urn:x-nymote:notes", "notebook-color"),
	Multiget:             dav.Name("urn:x-nymote:notes", "notebook-multiget"),
	Reports:              []xml.Name{dav.Name("urn:x-nymote:notes", "notebook-query")},
}

func (notes) Profile() *dav.Profile { return notesProfile }
func (notes) Name() string          { return notesProfile.Name }
func (notes) Validate(data []byte, c *dav.Collection) (string, error) {
	uid, _, _ := strings.Cut(string(data), "\n")
	if uid == "" {
		return "", dav.Errorf(http.StatusBadRequest, dav.Name(notesProfile.NS, "valid-note"), "a note starts with its UID line")
	}
	return uid, nil
}
func (notes) RenderData(_ *dav.Collection, o *dav.Object, _ *dav.Node) (string, error) {
	return dav.Text(string(o.Data)), nil
}
func (notes) CollectionProps(*dav.Collection) []dav.PropValue          { return nil }
func (notes) MkcolProp(*dav.Collection, *dav.Node) (bool, error)       { return false, nil }
func (notes) Report(context.Context, *dav.ReportRequest) (bool, error) { return false, nil }

// TestProfileKind: the engine serves a kind it has never heard of from its
// Profile alone: DAV header, Allow, well-known path, media type,
// resourcetype, supported-report-set, its multiget, and no MKCALENDAR.
func TestProfileKind(t *testing.T) {
	s := davtest.Start(t, notes{})
	r := s.Do("alice", "OPTIONS", "/", "")
	if !strings.HasSuffix(r.Header.Get("DAV"), ", x-notes") || strings.Contains(r.Header.Get("Allow"), "MKCALENDAR") {
		t.Errorf("OPTIONS: DAV %q, Allow %q", r.Header.Get("DAV"), r.Header.Get("Allow"))
	}
	if r := s.Do("alice", "MKCALENDAR", "/alice/cal/", ""); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("MKCALENDAR: %d %s", r.Status, r.Body)
	}
	if r := s.Do("alice", "PUT", "/alice/default/a.txt", "a\nbuy milk & bread\n", "Content-Type", "text/plain"); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	if r := s.Do("alice", "PUT", "/alice/default/b.txt", "b\n", "Content-Type", "text/vcard"); r.Status != 415 || !strings.Contains(r.Body, "supported-note-data") {
		t.Errorf("PUT of another media type: %d %s", r.Status, r.Body)
	}
	r = s.Do("alice", "PROPFIND", "/alice/default/", `<propfind xmlns="DAV:"><prop><resourcetype/><supported-report-set/></prop></propfind>`, "Depth", "0")
	for _, want := range []string{"notebook", "notebook-multiget", "notebook-query", "sync-collection"} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("PROPFIND lacks %s: %s", want, r.Body)
		}
	}
	r = s.Do("alice", "REPORT", "/alice/default/", `<N:notebook-multiget xmlns:D="DAV:" xmlns:N="urn:x-nymote:notes"><D:prop><D:getetag/><N:note-data/></D:prop><D:href>/alice/default/a.txt</D:href><D:href>/alice/default/none.txt</D:href></N:notebook-multiget>`, "Depth", "1")
	if r.Status != 207 || !strings.Contains(r.Body, "buy milk &amp; bread") || !strings.Contains(r.Body, "404") {
		t.Errorf("multiget: %d %s", r.Status, r.Body)
	}
	if r := s.Do("alice", "GET", "/.well-known/notes", ""); r.Status != 200 && r.Status != 207 && r.Status/100 != 3 {
		t.Errorf("well-known: %d", r.Status)
	}
	if r := s.Do("alice", "GET", "/.well-known/caldav", ""); r.Status != 404 {
		t.Errorf("/.well-known/caldav on a notes server: %d", r.Status)
	}
}
