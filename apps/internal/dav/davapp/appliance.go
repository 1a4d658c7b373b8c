package davapp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/apps/internal/svc"
)

// Ports are the ports a DAV appliance serves inside its VM: plain HTTP and
// HTTPS (with the certificate generated into the store).
var Ports = []appliance.Port{{Name: "http", Port: 80}, {Name: "https", Port: 443}}

// Appliance is the app as the appliance runtime runs it (as PID 1, on
// netstack listeners). Options come from the kernel command line:
// nymote.hostname=NAME[,NAME...] for the generated certificate (default
// localhost) and nymote.max-object-size=BYTES.
func (a App) Appliance() appliance.Service {
	return appliance.Service{
		Name:  a.Name,
		Ports: Ports,
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
			st, err := svc.OpenStore(env.DataDir, env.Log)
			if err != nil {
				return err
			}
			defer st.Close()
			cfg := dav.Config{Options: dav.Options{Store: st, Logger: env.Log, MaxObjectSize: maxSize, DefaultDisplayName: a.DefaultDisplayName}}
			cfg.Kind = a.NewKind(maxSize)
			if m, ok := cfg.Kind.(Merger); ok {
				st.SetMergeFunc(cfg.Kind.Name()+"/", m.MergeFunc())
			}
			st.SetValidateFunc(cfg.Kind.Name()+"/", dav.ValidateFunc(cfg.Kind, cfg.MaxObjectSize))
			tcfg, fp, err := svc.TLSConfig(ctx, st, svc.TLSOptions{Hostnames: hosts}, env.Log)
			if err != nil {
				return err
			}
			cfg.TLS = tcfg
			fmt.Fprintf(env.Console, "nymote: %s tls certificate sha256 %s\n", a.Name, fp)
			var lns []dav.Listener
			for _, p := range Ports {
				if ln := env.Listeners[p.Name]; ln != nil {
					lns = append(lns, dav.Listener{Proto: p.Name, Listener: ln})
				}
			}
			err = dav.Serve(ctx, cfg, lns)
			if errors.Is(err, context.Canceled) {
				err = nil
			}
			return err
		},
	}
}

// Main is the main function of a DAV appliance program: as PID 1 (or as
// the image's /sbin/poweroff) it runs the appliance runtime (and does not
// return); on a host it serves with the
// command line's options until interrupted, and exits 1 on an error.
func (a App) Main() {
	if appliance.InImage() {
		appliance.Main(a.Appliance())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", a.Name, err)
		os.Exit(1)
	}
}
