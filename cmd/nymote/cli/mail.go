package cli

import (
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nymote/nymote/apps/mail/msgauth"
	"github.com/nymote/nymote/store"
)

func newMailCmd(g *globals) *cobra.Command {
	d := &dataFlags{g: g}
	cmd := &cobra.Command{
		Use:   "mail",
		Short: "The mail appliance's DNS records and DKIM keys",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	d.register(cmd)
	var o msgauth.RecordOptions
	var ips, caa string
	dnsCmd := &cobra.Command{
		Use:   "dns",
		Short: "Print the DNS records a mail domain needs, in zone-file syntax",
		Long: `Prints every record the domain needs for mail on the internet: MX, SPF,
the DKIM keys' records (made on first use, kept among the node's secrets in
the data directory), DMARC, MTA-STS and TLS-RPT, the names the MTA-STS
policy and client autoconfiguration are fetched from, the SRV records of
RFC 6186 and RFC 8314, and CAA. During a DKIM key rotation both selectors
are printed.`,
		Args: exactArgs(),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if o.Domain == "" {
				return usageError{fmt.Errorf("--domain is required")}
			}
			o.Domain = strings.ToLower(o.Domain)
			if o.Hostname == "" {
				o.Hostname = o.Domain
			}
			for _, f := range splitComma(ips) {
				ip := net.ParseIP(f)
				if ip == nil {
					return usageError{fmt.Errorf("--ip: %q is not an IP address", f)}
				}
				o.IPs = append(o.IPs, ip)
			}
			o.CAAIssuers = splitComma(caa)
			keys, err := msgauth.NewKeyring(s, nil).Published(o.Domain)
			if err != nil {
				return err
			}
			o.DKIM = keys
			rrs, err := msgauth.Records(o)
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "; mail records of %s (server %s)\n%s", o.Domain, o.Hostname, msgauth.Zone(rrs))
			return nil
		}),
	}
	dnsCmd.Flags().StringVar(&o.Domain, "domain", "", "the mail domain")
	dnsCmd.Flags().StringVar(&o.Hostname, "hostname", "", "the server's name, its MX (default: the domain)")
	dnsCmd.Flags().StringVar(&ips, "ip", "", "the server's addresses, comma-separated: A/AAAA records and SPF terms")
	dnsCmd.Flags().StringVar(&o.DMARCPolicy, "dmarc-policy", "reject", "DMARC policy: reject, quarantine or none")
	dnsCmd.Flags().StringVar(&o.STSMode, "mta-sts-mode", "enforce", "MTA-STS mode: enforce, testing or none")
	dnsCmd.Flags().StringVar(&caa, "caa", "letsencrypt.org", "CAs that may issue the domain's certificates (CAA), comma-separated; empty: no CAA record")
	dnsCmd.Flags().Uint32Var(&o.TTL, "ttl", 3600, "TTL of the records")

	var rotDomain string
	rotate := &cobra.Command{
		Use:   "dkim-rotate",
		Short: "Make a new DKIM key pair for a domain (publish it; it signs three days later)",
		Long: fmt.Sprintf(`Makes a new Ed25519 and RSA key pair for the domain. Publish the records
nymote mail dns prints now: the new keys sign from %s after they were
made, and the old ones stay in the records for %s after that.`, msgauth.RotationDelay, msgauth.RetainFor),
		Args: exactArgs(),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if rotDomain == "" {
				return usageError{fmt.Errorf("--domain is required")}
			}
			keys, err := msgauth.NewKeyring(s, nil).Rotate(strings.ToLower(rotDomain))
			if err != nil {
				return err
			}
			for _, k := range keys {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", k.Selector, k.Algorithm, k.Created.Format("2006-01-02T15:04:05Z"))
			}
			return nil
		}),
	}
	rotate.Flags().StringVar(&rotDomain, "domain", "", "the mail domain")
	cmd.AddCommand(dnsCmd, rotate)
	return cmd
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
