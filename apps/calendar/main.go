// Command calendar is Nymote's calendar appliance: a CalDAV server over the
// versioned store. On a host:
//
//	go run ./apps/calendar --data DIR --https 127.0.0.1:8444
//
// (--http ADDR then only redirects to HTTPS; with neither flag it serves
// plain HTTP on 127.0.0.1:8009, for trying it out on loopback.)
//
// Add --net tap:NAME [--ip ADDR/LEN --gw ADDR] to serve on a netstack over
// a TAP device (give --https then). Users come from the store (nymote user
// add NAME --data DIR). As PID 1 of an appliance image (nymote build
// calendar) it runs under the appliance runtime; the runtime decides which
// (appliance.Main). Its ports are app.Calendar's.
package main

import (
	_ "time/tzdata" // appliances have no zoneinfo on disk

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/apps/calendar/caldav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davapp"
)

func main() {
	appliance.Main(davapp.Service(app.Calendar, func(max int64) dav.Kind { return caldav.New(max) }, "Calendar"))
}
