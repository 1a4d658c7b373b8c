// Command mail is Nymote's mail appliance: IMAP and SMTP over the versioned
// store. On a host:
//
//	go run ./apps/mail --data DIR --domain example.org --imap 127.0.0.1:1143 \
//		--smtp 127.0.0.1:1025 --submission 127.0.0.1:1587
//
// Users are the store's (nymote user add). See package mailsvc. As PID 1 of
// an appliance image (nymote build mail) it runs under the appliance
// runtime on netstack listeners (mailsvc.Appliance).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/apps/mail/mailsvc"
)

func main() {
	if appliance.InImage() { // init, or /sbin/poweroff
		appliance.Main(mailsvc.Appliance()) // does not return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := mailsvc.Main(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mail:", err)
		os.Exit(1)
	}
}
