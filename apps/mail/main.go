// Command mail is Nymote's mail appliance: IMAP and SMTP over the versioned
// store. On a host:
//
//	go run ./apps/mail --data DIR --domain example.org --imap 127.0.0.1:1143 \
//		--smtp 127.0.0.1:1025 --submission 127.0.0.1:1587
//
// (add --net tap:NAME [--ip ADDR/LEN --gw ADDR] to serve on a netstack
// over a TAP device). Users are the store's (nymote user add). See package
// mailsvc. As PID 1 of an appliance image (nymote build mail) it runs
// under the appliance runtime on netstack listeners; the runtime decides
// which (appliance.Main).
package main

import (
	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/apps/mail/mailsvc"
)

func main() { appliance.Main(mailsvc.Service()) }
