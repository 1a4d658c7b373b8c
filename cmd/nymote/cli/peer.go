package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nymote/nymote/replica"
	"github.com/nymote/nymote/signpost"
	"github.com/nymote/nymote/store"
)

func newPeerCmd(g *globals) *cobra.Command {
	d := &dataFlags{g: g}
	cmd := &cobra.Command{
		Use:   "peer",
		Short: "Add, list and delete the peers a store replicates with, and show their status",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
		Long: `A store's peers are the person's other nodes holding the same data (a
board at home, a VM in the cloud). A running appliance pushes its new commits
to every peer within moments and pulls and merges theirs, with the typed
merges of mail, contacts and calendar.

The peer records (name and URL) are kept in the store and replicate; each
peer's token, the secret both nodes share for replication only (not a
person's password), is a node file of each node and is never committed.
Give both nodes the same token: add the peer on one node (a token is made
and printed), then on the other with --token-stdin. Nodes of one Signpost
network need no token: add each as the other's peer with --tunnel and a
URL naming it in the network (http://NODE.PERSON.nymote:PORT/replica); the
running appliances reach each other through the tunnel and each takes the
other's requests by its node key.`,
	}
	d.register(cmd)
	var tokenStdin, viaTunnel, tokenOnly bool
	var caFile, self string
	add := &cobra.Command{
		Use:   "add NAME URL",
		Short: "Add a peer: its name and the URL of its replication endpoint (https://HOST:PORT/replica)",
		Args:  exactArgs("NAME", "URL"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if err := replica.ValidateName(args[0]); err != nil {
				return usageError{err}
			}
			if err := replica.ValidateURL(args[1]); err != nil {
				return usageError{err}
			}
			cur, err := replica.Self(s)
			if err != nil {
				return err
			}
			if self != "" && self != cur {
				if err := replica.SetSelf(s, self); err != nil {
					return usageError{fmt.Errorf("--as: %w", err)}
				}
				cur = self
			}
			if cur == "" {
				return usageError{fmt.Errorf("%s: this node has no name yet: give it one with --as NAME (its peers know it by it)", cmd.CommandPath())}
			}
			opts := replica.AddOptions{Tunnel: viaTunnel}
			if tokenStdin && viaTunnel {
				return usageError{fmt.Errorf("--tunnel and --token-stdin: a peer over the tunnel needs no token")}
			}
			if tokenStdin {
				tok, err := g.readPassword(true, false, "")
				if err != nil {
					return err
				}
				opts.Token = strings.TrimSpace(tok)
			}
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--ca: %w", err)
				}
				opts.CA = b
			}
			out := cmd.OutOrStdout()
			if tokenOnly {
				// A new node: its store must stay without commits, so
				// that its first boot clones the peer's (replica.Join
				// records the peer then).
				if viaTunnel {
					return usageError{errors.New("--token-only and --tunnel: a peer over the tunnel needs no token")}
				}
				if opts.Token == "" {
					opts.Token = replica.NewToken()
				}
				if err := replica.SetToken(s, args[0], opts.Token); err != nil {
					return err
				}
				if opts.CA != nil {
					if err := replica.SetCA(s, args[0], opts.CA); err != nil {
						return fmt.Errorf("--ca: %w", err)
					}
				}
				fmt.Fprintf(out, "Kept the token for peer %s (this node is %s); nothing recorded: boot with --set peer=%s=%s --set peer-as=%s, and the first boot clones %s's store\n",
					args[0], cur, args[0], args[1], cur, args[0])
				if !tokenStdin {
					fmt.Fprintf(out, "Token (give it to %s's `nymote peer add %s URL --token-stdin`):\n%s\n", args[0], cur, opts.Token)
				}
				return nil
			}
			tok, err := replica.AddPeer(cmd.Context(), s, args[0], args[1], opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Added peer %s at %s (this node is %s)\n", args[0], args[1], cur)
			if viaTunnel {
				fmt.Fprintf(out, "No token: %s is reached through the Signpost tunnel, its node key its credential\n", args[0])
			} else if !tokenStdin {
				fmt.Fprintf(out, "Token (give it to %s's `nymote peer add %s URL --token-stdin`):\n%s\n", args[0], cur, tok)
			}
			return nil
		}),
	}
	add.Flags().BoolVar(&tokenStdin, "token-stdin", false, "read the token shared with the peer from standard input (default: make a new one and print it)")
	add.Flags().BoolVar(&viaTunnel, "tunnel", false, "the peer is a node of this node's Signpost network: reached through the tunnel, no token")
	add.Flags().StringVar(&caFile, "ca", "", "PEM file of the peer's certificate, trusted for its https endpoint")
	add.Flags().StringVar(&self, "as", "", "this node's name, as its peers know it (set once)")
	add.Flags().BoolVar(&tokenOnly, "token-only", false, "keep the token (and --ca, --as) as node files and record nothing: for a new node whose first boot (--set peer=NAME=URL) clones the peer's store")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the peers",
		Args:  exactArgs(),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			ps, err := replica.Peers(s)
			if err != nil {
				return err
			}
			self, _ := replica.Self(s)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tURL\tADDED\tTOKEN")
			for _, p := range ps {
				tok := "yes"
				switch {
				case p.Name == self:
					tok = "(this node)"
				case !replica.HasToken(s, p.Name):
					tok = "none on this node"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.URL, p.Added.Format(time.RFC3339), tok)
			}
			return tw.Flush()
		}),
	}
	del := &cobra.Command{
		Use:   "del NAME",
		Short: "Delete a peer: its replication record and this node's token, and revoke its Signpost key (it can no longer connect, sync or join)",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "data", d.data); err != nil {
				return err
			}
			// A peer may be a replica, a node of this node's Signpost
			// network, or both (a laptop's data directory has no
			// store): delete what there is.
			rerr := fmt.Errorf("replica: no peer named %q: %w", args[0], replica.ErrNoPeer)
			if _, err := os.Stat(filepath.Join(d.data, store.RepoDir)); err == nil {
				s, err := d.open(cmd)
				if err != nil {
					return err
				}
				rerr = replica.DelPeer(cmd.Context(), s, args[0])
				s.Close()
				if rerr == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "Deleted peer %s\n", args[0])
				}
			}
			p, serr := signpost.Revoke(d.data, args[0])
			if serr == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "Revoked %s (key %s)\n", p.Name, p.WG)
			}
			rgone, sgone := errors.Is(rerr, replica.ErrNoPeer), errors.Is(serr, signpost.ErrNoPeer)
			switch {
			case rerr != nil && !rgone:
				return rerr
			case serr != nil && !sgone:
				return serr
			case rgone && sgone:
				return fmt.Errorf("no peer named %q: %w (neither a replica nor a Signpost node of this node)", args[0], signpost.ErrNoPeer)
			}
			return nil
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show each peer's last contact, commits ahead and behind, and last error (as the running appliance last wrote them)",
		Args:  exactArgs(),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			ps, err := replica.Peers(s)
			if err != nil {
				return err
			}
			written, sts, err := replica.ReadStatus(s)
			if err != nil {
				return err
			}
			byName := map[string]replica.Status{}
			for _, st := range sts {
				byName[st.Name] = st
			}
			self, _ := replica.Self(s)
			out := cmd.OutOrStdout()
			if written.IsZero() {
				fmt.Fprintln(out, "No status yet: the appliance has not run with peers on this data.")
			} else {
				fmt.Fprintf(out, "Status as of %s\n", written.Local().Format(time.RFC3339))
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tLAST CONTACT\tAHEAD\tBEHIND\tLAST ERROR")
			for _, p := range ps {
				if p.Name == self {
					continue
				}
				st, ok := byName[p.Name]
				contact := "never"
				if !st.LastContact.IsZero() {
					contact = st.LastContact.Local().Format(time.RFC3339)
				}
				errText := st.LastError
				if !ok {
					errText = "(not synced yet)"
				}
				if !replica.HasToken(s, p.Name) && (!ok || st.LastContact.IsZero() && st.LastError == "") {
					errText = "no token on this node (nymote peer del, then add with --token-stdin; or a node of the Signpost network, --tunnel, not reached yet)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", p.Name, contact, st.Ahead, st.Behind, errText)
			}
			return tw.Flush()
		}),
	}
	cmd.AddCommand(add, list, del, status)
	cmd.AddCommand(signpostPeerCmds(d)...)
	return cmd
}
