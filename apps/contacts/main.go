// Command contacts is Nymote's contacts appliance: a CardDAV server over the
// versioned store. On a host:
//
//	go run ./apps/contacts --data DIR --https 127.0.0.1:8443
//
// (--http ADDR then only redirects to HTTPS; with neither flag it serves
// plain HTTP on 127.0.0.1:8008, for trying it out on loopback.)
//
// Add --net tap:NAME [--ip ADDR/LEN --gw ADDR] to serve on a netstack over
// a TAP device (give --https then). Users come from the store (nymote user
// add NAME --data DIR). As PID 1 of an appliance image (nymote build
// contacts) it runs under the appliance runtime; the runtime decides which
// (appliance.Main). Its ports are app.Contacts's.
package main

import (
	_ "time/tzdata" // appliances have no zoneinfo on disk

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/apps/contacts/carddav"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/dav/davapp"
)

func main() {
	appliance.Main(davapp.Service(app.Contacts, func(max int64) dav.Kind { return carddav.New(max) }, "Contacts"))
}
