package mailstore

import (
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestGroupList(t *testing.T) {
	show := func(l []imap.Address) string {
		s := ""
		for _, a := range l {
			s += fmt.Sprintf("[%s|%s|%s]", a.Name, a.Mailbox, a.Host)
		}
		return s
	}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`Team: a@x.org, "B" <b@x.org>;, c@x.org`, `[|Team|][|a|x.org][B|b|x.org][||][|c|x.org]`, true},
		{`undisclosed-recipients:;`, `[|undisclosed-recipients|][||]`, true},
		{`"Our, Group": <t@x.org>;`, `[|Our, Group|][|t|x.org][||]`, true},
		{`=?utf-8?q?Caf=C3=A9?= (c: x) : d@x.org`, `[|Café|][|d|x.org][||]`, true},
		{`Open: e@x.org, f@x.org`, `[|Open|][|e|x.org][|f|x.org][||]`, true}, // no ";": ends with the list
		{`G: bad@@, g@x.org;`, `[|G|][|g|x.org][||]`, true},                  // one bad member loses itself
		// A colon in a quoted name, a comment or a route is not a group.
		{`"a:b" <a@x.org>, (c:d) b@x.org`, ``, false},
		{`<@route:a@x.org>`, ``, false},
	} {
		l, ok := groupList(tc.in)
		if ok != tc.ok || (ok && show(l) != tc.want) {
			t.Errorf("groupList(%q) = %s, %v; want %s, %v", tc.in, show(l), ok, tc.want, tc.ok)
		}
	}
}
