// Command calendar is Nymote's calendar appliance: a CalDAV server over the
// versioned store. On a host:
//
//	go run ./apps/calendar --data DIR --https 127.0.0.1:8444
//
// (--http ADDR then only redirects to HTTPS; with neither flag it serves
// plain HTTP on 127.0.0.1:8009, for trying it out on loopback.)
//
// Users come from the store (nymote user add NAME --data DIR).
package main

import (
	_ "time/tzdata" // appliances have no zoneinfo on disk

	"github.com/nymote/nymote/apps/calendar/caldav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davapp"
)

// App is the calendar appliance.
var App = davapp.App{
	Name:               "calendar",
	DefaultHTTP:        "127.0.0.1:8009",
	NewKind:            func(max int64) dav.Kind { return caldav.New(max) },
	DefaultDisplayName: "Calendar",
}

func main() { App.Main() }
