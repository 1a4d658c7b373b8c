package carddav_test

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/emersion/go-vcard"
	wcarddav "github.com/emersion/go-webdav/carddav"

	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davtest"
)

func card(uid, fn, email string) vcard.Card {
	c := vcard.Card{}
	c.SetValue(vcard.FieldVersion, "3.0")
	c.SetValue(vcard.FieldUID, uid)
	c.SetValue(vcard.FieldFormattedName, fn)
	c.AddValue(vcard.FieldEmail, email)
	return c
}

func TestGoWebDAVClient(t *testing.T) {
	s := davtest.Start(t, carddav.New(0), func(o *dav.Options) { o.DefaultDisplayName = "Contacts" })
	ctx := context.Background()
	c, err := wcarddav.NewClient(davtest.Client("alice"), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.HasSupport(ctx); err != nil {
		t.Fatalf("HasSupport: %v", err)
	}
	principal, err := c.FindCurrentUserPrincipal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	home, err := c.FindAddressBookHomeSet(ctx, principal)
	if err != nil || home != "/alice/" {
		t.Fatalf("home %q, %v", home, err)
	}
	books, err := c.FindAddressBooks(ctx, home)
	if err != nil || len(books) != 1 || books[0].Name != "Contacts" {
		t.Fatalf("address books %+v, %v", books, err)
	}
	book := books[0].Path
	people := []struct{ uid, fn, email string }{
		{"ann", "Ann Archer", "ann@example.com"}, {"bob", "Bob Baker", "bob@example.org"}, {"cy", "Cy Carver", "cy@example.com"},
	}
	for _, p := range people {
		if _, err := c.PutAddressObject(ctx, book+p.uid+".vcf", card(p.uid, p.fn, p.email)); err != nil {
			t.Fatalf("put %s: %v", p.uid, err)
		}
	}
	ao, err := c.GetAddressObject(ctx, book+"bob.vcf")
	if err != nil || ao.Card.PreferredValue(vcard.FieldFormattedName) != "Bob Baker" || ao.ETag == "" {
		t.Fatalf("get: %+v, %v", ao, err)
	}
	got, err := c.MultiGetAddressBook(ctx, book, &wcarddav.AddressBookMultiGet{Paths: []string{book + "ann.vcf", book + "cy.vcf"}, DataRequest: wcarddav.AddressDataRequest{AllProp: true}})
	if err != nil || len(got) != 2 {
		t.Fatalf("multiget: %d, %v", len(got), err)
	}
	queries := []struct {
		name string
		q    wcarddav.AddressBookQuery
		want string
	}{
		{"email contains example.com", wcarddav.AddressBookQuery{PropFilters: []wcarddav.PropFilter{{Name: "EMAIL", TextMatches: []wcarddav.TextMatch{{Text: "example.com"}}}}}, "ann,cy"},
		{"name starts with bob, any case", wcarddav.AddressBookQuery{PropFilters: []wcarddav.PropFilter{{Name: "FN", TextMatches: []wcarddav.TextMatch{{Text: "BOB", MatchType: wcarddav.MatchStartsWith}}}}}, "bob"},
		{"negated", wcarddav.AddressBookQuery{PropFilters: []wcarddav.PropFilter{{Name: "FN", TextMatches: []wcarddav.TextMatch{{Text: "bob", NegateCondition: true}}}}}, "ann,cy"},
	}
	for _, q := range queries {
		q.q.DataRequest.AllProp = true
		res, err := c.QueryAddressBook(ctx, book, &q.q)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		var uids []string
		for _, r := range res {
			uids = append(uids, r.Card.Value(vcard.FieldUID))
		}
		sort.Strings(uids)
		if strings.Join(uids, ",") != q.want {
			t.Errorf("%s: got %v, want %s", q.name, uids, q.want)
		}
	}
	sync, err := c.SyncCollection(ctx, book, &wcarddav.SyncQuery{})
	if err != nil || len(sync.Updated) != 3 || sync.SyncToken == "" {
		t.Fatalf("initial sync: %+v, %v", sync, err)
	}
	if _, err := c.PutAddressObject(ctx, book+"ann.vcf", card("ann", "Ann Archer-Smith", "ann@example.com")); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveAll(ctx, book+"bob.vcf"); err != nil {
		t.Fatal(err)
	}
	sync2, err := c.SyncCollection(ctx, book, &wcarddav.SyncQuery{SyncToken: sync.SyncToken})
	if err != nil || len(sync2.Updated) != 1 || len(sync2.Deleted) != 1 || sync2.Deleted[0] != book+"bob.vcf" {
		t.Fatalf("incremental sync: %+v, %v", sync2, err)
	}
}

// TestUnsupportedCollation: an addressbook-query naming a collation the
// server lacks is 403 with CARDDAV:supported-collation (RFC 6352 section
// 8.3), as in CalDAV; the supported ones answer.
func TestUnsupportedCollation(t *testing.T) {
	s := davtest.Start(t, carddav.New(0))
	if r := s.Do("alice", "PUT", "/alice/default/ann.vcf", "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ann\r\nFN:Ann Archer\r\nEND:VCARD\r\n", "Content-Type", "text/vcard"); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	q := func(collation string) davtest.Response {
		return s.Do("alice", "REPORT", "/alice/default/", `<?xml version="1.0"?><C:addressbook-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/></D:prop>
<C:filter><C:prop-filter name="FN"><C:text-match collation="`+collation+`" match-type="starts-with">ann</C:text-match></C:prop-filter></C:filter></C:addressbook-query>`, "Depth", "1")
	}
	if r := q("i;basic"); r.Status != 403 || !strings.Contains(r.Body, "supported-collation") {
		t.Errorf("unsupported collation: %d %s; want 403 supported-collation", r.Status, r.Body)
	}
	if r := q("i;unicode-casemap"); r.Status != 207 || !strings.Contains(r.Body, "ann.vcf") {
		t.Errorf("i;unicode-casemap: %d %s", r.Status, r.Body)
	}
}
