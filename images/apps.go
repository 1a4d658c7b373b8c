package images

import (
	"fmt"

	"github.com/nymote/nymote/appliance/app"
)

// The apps images can build are those of package app (app.Apps): what to
// compile (app.App.Package), the ports a QEMU script forwards and the
// manifest lists, and kernel command line options, all declared there.

// Apps returns the names of the apps images can build, sorted.
func Apps() []string { return app.Names() }

// LookupApp returns the app called name.
func LookupApp(name string) (app.App, error) {
	a, err := app.Lookup(name)
	if err != nil {
		return app.App{}, fmt.Errorf("images: %w", err)
	}
	if err := a.Data.Check(); err != nil {
		return app.App{}, fmt.Errorf("images: app %s: %w", name, err)
	}
	return a, nil
}
