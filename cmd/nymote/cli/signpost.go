package cli

import (
	"encoding/base64"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nymote/nymote/signpost"
	"github.com/nymote/nymote/signpost/capability"
)

// This file is Signpost's part of the host tool: `nymote id` (the node's
// identity) and the subcommands of `nymote peer` that pair nodes
// (invite, join); `peer del` revokes through signpost.Revoke.

func newIDCmd(g *globals) *cobra.Command {
	d := &dataFlags{g: g}
	cmd := &cobra.Command{
		Use:   "id",
		Short: "Show this node's identity in its network (keys and tunnel addresses)",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
		Long: `Every node (an appliance, or the host tool acting for a laptop) has a key
pair made at first start and kept with its data (DIR/node/signpost, never
committed): Curve25519 for its WireGuard tunnel, Ed25519 for signatures
(invitations, capability tokens). Its tunnel addresses are derived from its
key within its network.`,
	}
	d.register(cmd)
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the node's keys (public halves), network and tunnel addresses (keys are made if there are none)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "data", d.data); err != nil {
				return err
			}
			if _, err := os.Stat(d.data); err != nil {
				return fmt.Errorf("--data %s: %w", d.data, err)
			}
			id, err := signpost.LoadOrCreateIdentity(d.data)
			if err != nil {
				return err
			}
			st, err := signpost.ReadState(d.data)
			if err != nil {
				return err
			}
			v4, v6 := st.Addrs(id.WG)
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			name := st.Name
			if name == "" {
				name = "hub (the founder of its network)"
			}
			fmt.Fprintf(w, "name\t%s\n", name)
			fmt.Fprintf(w, "wireguard key\t%s\n", id.WG)
			fmt.Fprintf(w, "ed25519 key\t%s\n", base64.StdEncoding.EncodeToString(id.EdPublic()))
			fmt.Fprintf(w, "network\t%s (%s, %s)\n", st.Network, st.Network.Prefix6(), st.Network.Prefix4())
			fmt.Fprintf(w, "tunnel addresses\t%s %s\n", v4, v6)
			if st.Endpoint != "" {
				fmt.Fprintf(w, "endpoint\t%s (hub)\n", st.Endpoint)
			}
			fmt.Fprintf(w, "dns zone\t%s\n", st.Zone())
			fmt.Fprintf(w, "peers\t%d\n", len(st.Peers))
			for _, p := range st.Peers {
				p4, p6 := st.Addrs(p.WG)
				where := p.Endpoint
				if where == "" {
					where = "behind NAT"
				}
				if p.Hub {
					where += ", hub"
				}
				fmt.Fprintf(w, "  %s.%s\t%s %s (%s) %s\n", p.Name, st.Zone(), p4, p6, where, p.WG)
			}
			if len(st.Revoked) > 0 {
				fmt.Fprintf(w, "revoked keys\t%d\n", len(st.Revoked))
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(show)
	return cmd
}

// signpostPeerCmds returns the pairing subcommands of `nymote peer`:
// invite and join. d is the peer command's data flag.
func signpostPeerCmds(d *dataFlags) []*cobra.Command {
	var endpoint, person string
	var ttl time.Duration
	invite := &cobra.Command{
		Use:   "invite NAME",
		Short: "Print a signed, single-use, expiring invitation for a new node to join this node's network as NAME",
		Args:  exactArgs("NAME"),
		Long: `invite prints an invitation (one line, about 220 characters) for a new
node, to be given to 'nymote peer join' on it. It is signed by this node's
key, names the new node and this node's public endpoint (--endpoint
HOST:PORT: WireGuard over UDP, the join over TCP, on the same port), and
expires after --ttl; the node accepts it once.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "data", d.data); err != nil {
				return err
			}
			text, err := signpost.Issue(d.data, args[0], endpoint, person, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), text)
			return nil
		},
	}
	invite.Flags().StringVar(&endpoint, "endpoint", "", "this node's public HOST:PORT (default: the one given before)")
	invite.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the invitation is valid")
	invite.Flags().StringVar(&person, "person", "", "the person whose network it is, in its DNS names NODE.PERSON.nymote (the founder's first invitation; default \"my\")")

	var wgQuick bool
	var own string
	join := &cobra.Command{
		Use:   "join INVITATION",
		Short: "Join the network of an invitation's issuer: exchange keys and addresses",
		Args:  exactArgs("INVITATION"),
		Long: `join sends this node's keys (made now if it has none) to the node that
issued the invitation, checks its signed reply, and records the network and
its nodes. With --wg-quick it prints a wg-quick configuration for this
machine (a laptop with stock WireGuard tools): save it as
/etc/wireguard/nymote.conf (mode 0600) and run 'wg-quick up nymote'.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "data", d.data); err != nil {
				return err
			}
			if err := os.MkdirAll(d.data, 0o700); err != nil {
				return err
			}
			st, err := signpost.Join(cmd.Context(), d.data, args[0], own, nil)
			if err != nil {
				return err
			}
			if wgQuick {
				conf, err := signpost.WGQuick(d.data)
				if err != nil {
					return err
				}
				fmt.Fprint(cmd.OutOrStdout(), conf)
				return nil
			}
			v4, v6 := st.Addrs(mustID(d.data).WG)
			fmt.Fprintf(cmd.OutOrStdout(), "Joined network %s as %s (%s %s), %d peers\n", st.Network, st.Name, v4, v6, len(st.Peers))
			return nil
		},
	}
	join.Flags().BoolVar(&wgQuick, "wg-quick", false, "print a wg-quick configuration for this machine")
	join.Flags().StringVar(&own, "endpoint", "", "this node's own public HOST:PORT, if it has one")
	return []*cobra.Command{invite, join}
}

func mustID(dir string) *signpost.Identity {
	id, err := signpost.LoadIdentity(dir)
	if err != nil {
		return &signpost.Identity{}
	}
	return id
}

func newShareCmd(g *globals) *cobra.Command {
	d := &dataFlags{g: g}
	cmd := &cobra.Command{
		Use:   "share",
		Short: "Share one address book or calendar by a capability token; narrow and revoke tokens",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
		Long: `A capability token gives whoever holds it the rights it names (read, or
read,write) on one collection (/USER/COLLECTION/) of the contacts or
calendar appliance whose data directory minted it, until it expires or is
revoked. The holder's CalDAV or CardDAV client gives the token as its
password (any user name) and the collection's URL as the address. Any
holder can narrow a token (share narrow) before passing it on; no one can
widen one.`,
	}
	d.register(cmd)
	var rights string
	var ttl time.Duration
	mint := &cobra.Command{
		Use:   "mint COLLECTION",
		Short: "Print a token for COLLECTION (such as /alice/work/) of this node",
		Args:  exactArgs("COLLECTION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "data", d.data); err != nil {
				return err
			}
			r, err := capability.ParseRights(rights)
			if err != nil {
				return usageError{err}
			}
			tok, err := capability.Mint(d.data, args[0], r, time.Now().Add(ttl))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	mint.Flags().StringVar(&rights, "rights", "read", "read, or read,write")
	mint.Flags().DurationVar(&ttl, "ttl", 30*24*time.Hour, "how long the token is valid")
	var nrights, ncol string
	var nttl time.Duration
	narrow := &cobra.Command{
		Use:   "narrow TOKEN",
		Short: "Print a narrower token (fewer rights, sooner expiry, a sub-collection); needs no key",
		Args:  exactArgs("TOKEN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r capability.Rights
			if nrights != "" {
				var err error
				if r, err = capability.ParseRights(nrights); err != nil {
					return usageError{err}
				}
			}
			var exp time.Time
			if nttl > 0 {
				exp = time.Now().Add(nttl)
			}
			tok, err := capability.Attenuate(args[0], r, exp, ncol)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	narrow.Flags().StringVar(&nrights, "rights", "", "limit to these rights (read)")
	narrow.Flags().DurationVar(&nttl, "ttl", 0, "expire after this long")
	narrow.Flags().StringVar(&ncol, "collection", "", "limit to this collection")
	revoke := &cobra.Command{
		Use:   "revoke TOKEN|ID",
		Short: "Revoke a token minted by this node, and every token narrowed from it",
		Args:  exactArgs("TOKEN|ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "data", d.data); err != nil {
				return err
			}
			id, err := capability.Revoke(d.data, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked token %s\n", id)
			return nil
		},
	}
	cmd.AddCommand(mint, narrow, revoke)
	return cmd
}
