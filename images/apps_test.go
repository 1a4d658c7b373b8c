package images

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/apps/mail/mailsvc"
)

// TestAppPorts checks that the ports nymote run forwards are the ports
// each app's service serves.
func TestAppPorts(t *testing.T) {
	for name, svc := range map[string]appliance.Service{"mail": mailsvc.Appliance()} {
		app, err := LookupApp(name)
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, p := range app.Ports {
			got = append(got, fmt.Sprintf("%s:%d", p.Name, p.Port))
		}
		for _, p := range svc.Ports {
			want = append(want, fmt.Sprintf("%s:%d", p.Name, p.Port))
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: images forwards %v, the service serves %v", name, got, want)
		}
	}
}
