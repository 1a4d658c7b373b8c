package davapp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/store"
)

// serveReplicated serves cfg on lns until ctx ends, as a replica: the
// boot options' peers joined first (join), the replication engine's
// endpoint and the console (which shows its peers) added to cfg. Both the
// appliance and the host program end here.
func serveReplicated(ctx context.Context, st *store.Store, cfg dav.Config, lns []dav.Listener, peers *replica.BootPeers,
	ropts replica.Options, app string, out io.Writer, log *slog.Logger, dataDir string) error {
	if err := join(ctx, st, peers, ropts, lns, cfg.TLS, app, out); err != nil {
		return err
	}
	eng, err := replica.Start(st, ropts)
	if err != nil {
		return err
	}
	defer eng.Close()
	cfg.Replica = eng.Handler()
	addConsole(&cfg, app, log, eng, dataDir)
	err = dav.Serve(ctx, cfg, lns)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// join runs replica.Join for the boot options' peers. While a new node
// copies its store from a peer (Join retries until one answers), its
// listeners (lns, replaced in place) are open and answer every request
// with 503 Service Unavailable, Retry-After and the reason, rather than
// leave the ports closed; they go to the service once Join returns.
func join(ctx context.Context, st *store.Store, peers *replica.BootPeers, ropts replica.Options, lns []dav.Listener,
	tlsConfig *tls.Config, app string, out io.Writer) error {
	if peers == nil || len(peers.Peers) == 0 {
		return nil
	}
	fresh, err := replica.Fresh(st)
	if err != nil {
		return err
	}
	if fresh {
		msg := "This node is copying its store from its peer; try again in a minute."
		var held []*svc.Held
		for i := range lns {
			var t *tls.Config
			if lns[i].Proto == "https" {
				t = tlsConfig
			}
			h := svc.Hold(lns[i].Listener, svc.RefuseHTTP(msg, 30*time.Second, t))
			held = append(held, h)
			lns[i].Listener = h
		}
		fmt.Fprintf(out, "nymote: %s: copying the store from a peer first; meanwhile HTTP(S) answers 503\n", app)
		defer func() {
			for _, h := range held {
				h.Release()
			}
			fmt.Fprintf(out, "nymote: %s: done copying the store; serving\n", app)
		}()
	}
	return replica.Join(ctx, st, peers, ropts)
}
