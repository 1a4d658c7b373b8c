package davapp

import (
	"context"
	"fmt"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/svc"
	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/signpost"
)

// Service is the DAV app a (app.Contacts or app.Calendar: ports "http",
// which redirects to "https") serving the objects of the kinds newKind
// makes (for an object size limit), with a collection named displayName
// made for every new user.
//
// As PID 1 it serves on netstack listeners, with options from the kernel
// command line: nymote.hostname=NAME[,NAME...] for the generated
// certificate (default localhost) and nymote.max-object-size=BYTES, and
// peers (nymote.peer=NAME=URL,..., peer-as, peer-token, peer-ca: see
// replica.ParseBoot; a data disk with no store yet is cloned from the peer
// at the first boot). On a host it is the DAV program with its own flags
// (see runHost; --peer, ... alike).
func Service(a app.App, newKind func(maxSize int64) dav.Kind, displayName string) appliance.Service {
	d := davApp{App: a, newKind: newKind, displayName: displayName}
	return appliance.Service{
		App:  a,
		Host: d.runHost,
		Serve: func(ctx context.Context, env *appliance.Env) error {
			maxSize := int64(dav.DefaultMaxObjectSize)
			if v := env.Config["max-object-size"]; v != "" {
				if _, err := fmt.Sscan(v, &maxSize); err != nil || maxSize <= 0 {
					return fmt.Errorf("nymote.max-object-size=%q: want a number of bytes", v)
				}
			}
			hosts := splitList(env.Config["hostname"])
			if len(hosts) == 0 {
				hosts = []string{"localhost"}
			}
			peers, err := replica.ParseBootConfig(env.Config, env.DataDir)
			if err != nil {
				return err
			}
			st, err := svc.OpenStore(env.DataDir, env.Log)
			if err != nil {
				return err
			}
			defer st.Close()
			cfg := dav.Config{Options: dav.Options{Store: st, Logger: env.Log, MaxObjectSize: maxSize, DefaultDisplayName: displayName}}
			subs, err := parseSubscriptions(env.Config["subscribe"], newKind(maxSize))
			if err != nil {
				return fmt.Errorf("nymote.subscribe: %w", err)
			}
			cfg.Wrap = withSubscriptions(ctx, env.DataDir, subs, env.Log)
			cfg.Kind = newKind(maxSize)
			if m, ok := cfg.Kind.(Merger); ok {
				st.SetMergeFunc(cfg.Kind.Name()+"/", m.MergeFunc())
			}
			st.SetValidateFunc(cfg.Kind.Name()+"/", dav.ValidateFunc(cfg.Kind, cfg.MaxObjectSize))
			ropts := replica.Options{Logger: env.Log, Stdout: env.Console, Dial: env.Dial,
				Tunnel: signpost.NewReplicaTunnel(env.DataDir, env.Dial)}
			tcfg, fp, err := svc.TLSConfig(ctx, st, svc.TLSOptions{Hostnames: hosts}, env.Log)
			if err != nil {
				return err
			}
			cfg.TLS = tcfg
			fmt.Fprintf(env.Console, "nymote: %s tls certificate sha256 %s\n", a.Name, fp)
			var lns []dav.Listener
			for _, p := range a.Ports {
				if ln := env.Listeners[p.Name]; ln != nil {
					lns = append(lns, dav.Listener{Proto: p.Name, Listener: ln})
				}
			}
			// Peers from the boot options: a new node's store is cloned
			// from its peer before the service writes (its ports answer
			// 503 meanwhile).
			return serveReplicated(ctx, st, cfg, lns, peers, ropts, a.Name, env.Console, env.Log, env.DataDir)
		},
	}
}
