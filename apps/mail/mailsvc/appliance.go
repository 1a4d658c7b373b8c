package mailsvc

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/replica"
)

// Service is the mail app (app.Mail) as the appliance runtime runs it.
// As PID 1 it serves on netstack listeners, with options from the kernel
// command line: nymote.domain=DOMAIN[,DOMAIN...] (default "localhost") and
// nymote.hostname=NAME, and for certificates from an ACME CA
// nymote.acme=URL (or "letsencrypt"), nymote.acme-email=ADDR and
// nymote.acme-names=NAME[,NAME...], and nymote.acme-ca=PATH, a PEM file of
// the roots to trust for the ACME server's own HTTPS (test CAs such as
// Pebble; a relative PATH is in the data directory, the data disk's root;
// default: the system's). Peers from boot (see replica.ParseBoot):
// nymote.peer=NAME=URL[,NAME=URL...], nymote.peer-as=NAME,
// nymote.peer-token=FILE and nymote.peer-ca=FILE (files on the data disk,
// relative to its root): a data disk with no store yet is cloned from the
// peer at the first boot. On a host it is the mail program with its own
// flags (see Main; --peer, --peer-as, --peer-token, --peer-ca alike).
func Service() appliance.Service {
	return appliance.Service{
		App:  app.Mail,
		Host: runHost,
		Serve: func(ctx context.Context, env *appliance.Env) error {
			domains := SplitDomains(env.Config["domain"])
			if len(domains) == 0 {
				domains = []string{"localhost"}
			}
			cfg := Config{
				DataDir:  env.DataDir,
				Domains:  domains,
				Hostname: env.Config["hostname"],
				Dial:     env.Dial,
				Logger:   env.Log,
				Stdout:   env.Console,

				ListenLinesPrinted: true,
				SetUpdateAuth:      env.SetUpdateAuth,
			}
			acme, err := applianceACME(env.Config, env.DataDir)
			if err != nil {
				return err
			}
			cfg.ACME = acme
			peers, err := replica.ParseBootConfig(env.Config, env.DataDir)
			if err != nil {
				return err
			}
			cfg.Peers = peers
			if env.Resolver != nil {
				cfg.Resolver = env.Resolver
			}
			l := env.Listeners
			return Serve(ctx, cfg, Listeners{
				IMAP: l["imap"], IMAPS: l["imaps"], SMTP: l["smtp"],
				Submission: l["submission"], Submissions: l["submissions"],
				HTTP: l["http"], HTTPS: l["https"],
			})
		},
	}
}

// applianceACME is the ACME configuration of the kernel command line's
// options (config, without their "nymote." prefix): nil without
// nymote.acme. A relative nymote.acme-ca is in dataDir.
func applianceACME(config map[string]string, dataDir string) (*ACME, error) {
	dir := config["acme"]
	if dir == "" {
		if config["acme-email"] != "" || config["acme-names"] != "" || config["acme-ca"] != "" {
			return nil, errors.New("nymote.acme-email, nymote.acme-names and nymote.acme-ca need nymote.acme")
		}
		return nil, nil
	}
	a := &ACME{DirectoryURL: dir, Email: config["acme-email"], Names: SplitDomains(config["acme-names"])}
	if ca := config["acme-ca"]; ca != "" {
		if !filepath.IsAbs(ca) {
			ca = filepath.Join(dataDir, ca)
		}
		hc, err := acmeCAClient(ca)
		if err != nil {
			return nil, fmt.Errorf("nymote.acme-ca: %w", err)
		}
		a.HTTPClient = hc
	}
	return a, nil
}
