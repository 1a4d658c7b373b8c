package mailsvc

import (
	"context"

	"github.com/nymote/nymote/appliance"
)

// Appliance is the mail service as the appliance runtime runs it (as PID 1
// on netstack listeners). Its options come from the kernel command line:
// nymote.domain=DOMAIN[,DOMAIN...] (default "localhost") and
// nymote.hostname=NAME.
func Appliance() appliance.Service {
	return appliance.Service{
		Name: "mail",
		Ports: []appliance.Port{
			{Name: "imap", Port: 143}, {Name: "smtp", Port: 25},
			{Name: "submission", Port: 587}, {Name: "imaps", Port: 993},
			{Name: "submissions", Port: 465},
		},
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
			}
			if env.Resolver != nil {
				cfg.Resolver = env.Resolver
			}
			l := env.Listeners
			return Serve(ctx, cfg, Listeners{
				IMAP: l["imap"], IMAPS: l["imaps"], SMTP: l["smtp"],
				Submission: l["submission"], Submissions: l["submissions"],
			})
		},
	}
}
