package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nymote/nymote/jitsu"
)

func newSummonCmd(g *globals) *cobra.Command {
	var config, signpostDir string
	cmd := &cobra.Command{
		Use:   "summon",
		Short: "Serve DNS for your zone and boot each appliance when its name is looked up (jitsu)",
		Long: `summon runs jitsu: an authoritative DNS server for the zones in the
configuration that boots an appliance when its name is looked up, answers
once the appliance accepts connections, and powers it off cleanly when it
has been idle for twice its TTL. jitsu holds the appliances' ports itself
and proxies each connection once the appliance is up, so a client that
connects right after the answer is never refused.

With --signpost DIR (or signpost: in the configuration) it also answers
for your network's nodes, NODE.PERSON.nymote and SERVICE.NODE.PERSON.nymote,
with their tunnel addresses, from a signpost node's data directory on this
host (a hub's, or a laptop's that joined with nymote peer join --wg-quick).
A zone with mail: serves the records nymote mail dns prints, from the mail
appliance's data directory, following its DKIM rotations.

Ctrl-C powers the running appliances off cleanly and stops. See package
jitsu for the configuration (jitsu.yaml). Logs go to standard error, at
level info unless --log-level says otherwise.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := jitsu.LoadConfig(config)
			if err != nil {
				return err
			}
			if signpostDir != "" {
				cfg.SetSignpost(signpostDir)
			}
			log := g.log
			if !cmd.Root().PersistentFlags().Changed("log-level") {
				log = slog.New(slog.NewTextHandler(g.stdio.Err, &slog.HandlerOptions{Level: slog.LevelInfo}))
			}
			s, err := jitsu.New(cfg, jitsu.Options{Log: log})
			if err != nil {
				return err
			}
			if err := s.Start(); err != nil {
				return err
			}
			fmt.Fprintf(g.stdio.Err, "summon: DNS on %s (UDP and TCP)", s.DNSAddr())
			if a := s.ControlAddr(); a != "" {
				fmt.Fprintf(g.stdio.Err, ", status on http://%s/status", a)
			}
			fmt.Fprintf(g.stdio.Err, "; %d appliance(s); Ctrl-C stops\n", len(cfg.Appliances))
			<-cmd.Context().Done()
			fmt.Fprintln(g.stdio.Err, "summon: powering the appliances off")
			return s.Close()
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", "jitsu.yaml", "configuration file")
	cmd.Flags().StringVar(&signpostDir, "signpost", "", "answer for your network's nodes (NODE.PERSON.nymote) from this signpost node's data directory")
	cmd.AddCommand(newSummonStatusCmd(g))
	return cmd
}

func newSummonStatusCmd(g *globals) *cobra.Command {
	var config, control string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the appliances of a running summon: state, uptime, last query",
		Long: `status asks a running nymote summon (its control endpoint on loopback,
from --control or the configuration's control address) for its
appliances: state (stopped, booting, running, suspended, stopping,
failed), uptime, last query, open connections, boots and the last error.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if control == "" {
				cfg, err := jitsu.LoadConfig(config)
				if err != nil {
					return err
				}
				if cfg.Control == "" {
					return usageError{fmt.Errorf("%s has no control address: give --control HOST:PORT", config)}
				}
				control = cfg.Control
			}
			st, err := fetchStatus(cmd.Context(), control)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				e := json.NewEncoder(w)
				e.SetIndent("", "  ")
				return e.Encode(st)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tUPTIME\tLAST QUERY\tCONNS\tBOOTS\tLAST ERROR")
			for _, a := range st {
				last := "-"
				if !a.LastQuery.IsZero() {
					last = time.Since(a.LastQuery).Round(time.Second).String() + " ago"
				}
				uptime := a.Uptime
				if uptime == "" {
					uptime = "-"
				}
				errText := a.LastError
				if len(errText) > 80 {
					errText = errText[:77] + "..."
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", strings.TrimSuffix(a.Name, "."), a.State, uptime, last,
					a.Connections, a.Boots, errText)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", "jitsu.yaml", "configuration file (for its control address)")
	cmd.Flags().StringVar(&control, "control", "", "control address of the running summon (default: from the configuration)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func fetchStatus(ctx context.Context, control string) ([]jitsu.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+control+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no summon answering on %s (is nymote summon running?): %w", control, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("summon on %s: %s", control, resp.Status)
	}
	var st []jitsu.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("summon on %s: %w", control, err)
	}
	return st, nil
}
