// Command contacts is Nymote's contacts appliance: a CardDAV server over the
// versioned store. On a host:
//
//	go run ./apps/contacts --data DIR --https 127.0.0.1:8443
//
// (--http ADDR then only redirects to HTTPS; with neither flag it serves
// plain HTTP on 127.0.0.1:8008, for trying it out on loopback.)
//
// Users come from the store (nymote user add NAME --data DIR).
package main

import (
	_ "time/tzdata" // appliances have no zoneinfo on disk

	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davapp"
)

// App is the contacts appliance.
var App = davapp.App{
	Name:               "contacts",
	DefaultHTTP:        "127.0.0.1:8008",
	NewKind:            func(max int64) dav.Kind { return carddav.New(max) },
	DefaultDisplayName: "Contacts",
}

func main() { App.Main() }
