package console

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/nymote/nymote/apps/internal/console/browsertest"
)

// TestBrowserContactChange: in a real browser (headless chromium), a
// contact edited over CardDAV shows in the timeline in words, and opened,
// the phone field before and after; an app password made on the account
// page works over CardDAV until revoked there. The screenshots (timeline,
// change, storage, app password) are the test's artefacts (NYMOTE_SCREENSHOTS=dir keeps them).
func TestBrowserContactChange(t *testing.T) {
	ctx := browsertest.New(t)
	e := newEnv(t)
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+1 555 0100"))
	e.davPut(e.contacts, "alice", "/alice/default/jane.vcf", "text/vcard", vcard("jane-1", "Jane Doe", "+1 555 0199"))
	e.davPut(e.calendar, "alice", "/alice/default/dentist.ics", "text/calendar", vevent("ev-1", "Dentist", "20261207T100000Z"))
	e.davPut(e.calendar, "alice", "/alice/default/dentist.ics", "text/calendar", vevent("ev-1", "Dentist", "20261208T100000Z"))
	e.deliver("alice", "Lunch on Friday?", "Your invoice")
	browsertest.Login(t, ctx, e.srv.URL, "alice", passwords["alice"])
	tl := browsertest.Text(t, ctx, `ol.timeline`)
	for _, want := range []string{"contact “Jane Doe”: phone changed", "event “Dentist” moved to Tuesday", "2 messages arrived in INBOX"} {
		if !strings.Contains(tl, want) {
			t.Errorf("the timeline lacks %q:\n%s", want, tl)
		}
	}
	browsertest.Screenshot(t, ctx, "console-timeline")
	browsertest.Do(t, ctx, "open the contact change",
		chromedp.Click(chromedp.Search(`//a[contains(., "phone changed")]`)),
		chromedp.WaitVisible(`table`))
	table := browsertest.Text(t, ctx, `table`)
	if !strings.Contains(table, "phone") || !strings.Contains(table, "+1 555 0100 (cell)") || !strings.Contains(table, "+1 555 0199 (cell)") {
		t.Errorf("the change's fields:\n%s", table)
	}
	browsertest.Screenshot(t, ctx, "console-change")
	browsertest.Do(t, ctx, "storage page", chromedp.Navigate(e.srv.URL+"/console/storage"), chromedp.WaitVisible(`img.plot`))
	browsertest.Screenshot(t, ctx, "console-storage")

	// An app password for a phone: made on the account page, shown once,
	// taken by CardDAV, listed, revoked.
	browsertest.Do(t, ctx, "make an app password",
		chromedp.Navigate(e.srv.URL+"/console/account"),
		chromedp.WaitVisible(`#app-passwords input[name=name]`),
		chromedp.SendKeys(`#app-passwords input[name=name]`, "phone"),
		chromedp.Click(`#app-passwords button[type=submit]`),
		chromedp.WaitVisible(`#new-app-password`))
	pw := browsertest.Text(t, ctx, `#new-app-password`)
	browsertest.Screenshot(t, ctx, "console-app-password")
	if st := e.davPutAs(e.contacts, "alice", pw, "/alice/default/bob.vcf", vcard("bob-1", "Bob", "+1 555 0111")); st != 201 {
		t.Errorf("CardDAV with the app password the page showed (%q): %d", pw, st)
	}
	browsertest.Do(t, ctx, "revoke it",
		chromedp.Navigate(e.srv.URL+"/console/account"),
		chromedp.WaitVisible(`#app-passwords td.app-name`),
		chromedp.Click(`#app-passwords button.danger`),
		chromedp.WaitVisible(chromedp.Search(`//section[@id="app-passwords"]/p[.="None yet."]`)))
	if aps, _ := e.st.AppPasswords("alice"); len(aps) != 0 {
		t.Errorf("after Revoke: %+v", aps)
	}
	if st := e.davPutAs(e.contacts, "alice", pw, "/alice/default/bob.vcf", vcard("bob-1", "Bob", "+1 555 0112")); st != 401 {
		t.Errorf("CardDAV with the revoked app password: %d, want 401", st)
	}
}
