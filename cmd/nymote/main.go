// Command nymote is Nymote's host tool: it creates and inspects stores and
// their users, syncs replicas, and (as later layers land) builds and runs
// appliance images. Run "nymote --help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/nymote/nymote/cmd/nymote/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
