package images

import (
	"slices"
	"strings"
	"testing"

	"github.com/nymote/nymote/appliance/app"
)

// TestApps: images builds exactly the apps declared in package app, and an
// unknown one is named in the error with the known ones.
func TestApps(t *testing.T) {
	if got, want := Apps(), app.Names(); !slices.Equal(got, want) {
		t.Errorf("Apps() = %v, want %v", got, want)
	}
	for _, name := range Apps() {
		if a, err := LookupApp(name); err != nil || a.Name != name || a.Package == "" {
			t.Errorf("LookupApp(%q) = %+v, %v", name, a, err)
		}
	}
	if _, err := LookupApp("nope"); err == nil || !strings.Contains(err.Error(), `images: unknown app "nope" (known apps: `) {
		t.Errorf("LookupApp(nope): %v", err)
	}
}
