package mailsvc

import (
	"context"

	"github.com/nymote/nymote/appliance"
	"github.com/nymote/nymote/appliance/app"
)

// Service is the mail app (app.Mail) as the appliance runtime runs it.
// As PID 1 it serves on netstack listeners, with options from the kernel
// command line: nymote.domain=DOMAIN[,DOMAIN...] (default "localhost") and
// nymote.hostname=NAME, and for certificates from an ACME CA
// nymote.acme=URL (or "letsencrypt"), nymote.acme-email=ADDR and
// nymote.acme-names=NAME[,NAME...]. On a host it is the mail program with its own
// flags (see Main).
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
			if dir := env.Config["acme"]; dir != "" {
				cfg.ACME = &ACME{DirectoryURL: dir, Email: env.Config["acme-email"], Names: SplitDomains(env.Config["acme-names"])}
			}
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
