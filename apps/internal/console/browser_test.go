package console

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/nymote/nymote/apps/internal/console/browsertest"
)

// TestBrowserContactChange: in a real browser (headless chromium), a
// contact edited over CardDAV shows in the timeline in words, and opened,
// the phone field before and after. The screenshots (timeline, change)
// are the test's artefacts (NYMOTE_SCREENSHOTS=dir keeps them).
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
}
