package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nymote/nymote/store"
)

// newAppPasswordCmd is "nymote user app-password": a user's passwords per
// client.
func newAppPasswordCmd(d *dataFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "app-password",
		Aliases: []string{"app-passwords"},
		Short:   "Make, list and revoke a user's app passwords (one per mail or DAV client)",
		Args:    cobra.ArbitraryArgs,
		RunE:    groupRun,
		Long: `An app password is a password the store makes for one client of a user
("phone", "laptop"): IMAP, SMTP submission, CardDAV and CalDAV take it in
place of the user's password, the web console, the API and git do not.
It is shown once, when made; the store keeps its argon2id hash. Revoke it
alone when its device is lost. The list is in the user's record, so it
replicates; commits a DAV client makes with one name it ("Client: ...
(app password phone)").`,
	}
	add := &cobra.Command{
		Use:   "add USER CLIENT",
		Short: "Make an app password for USER's CLIENT (e.g. phone) and print it, once",
		Args:  exactArgs("USER", "CLIENT"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if err := store.ValidateUserName(args[0]); err != nil {
				return usageError{err}
			}
			if err := store.ValidateAppPasswordName(args[1]); err != nil {
				return usageError{err}
			}
			a, pw, err := s.AddAppPassword(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "App password %q (ID %s) for %s; it is not shown again:\n", a.Name, a.ID, args[0])
			fmt.Fprintln(cmd.OutOrStdout(), pw)
			return nil
		}),
	}
	list := &cobra.Command{
		Use:   "list USER",
		Short: "List USER's app passwords (never the passwords)",
		Args:  exactArgs("USER"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			aps, err := s.AppPasswords(args[0])
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCLIENT\tCREATED")
			for _, a := range aps {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", a.ID, a.Name, a.Created.Format(time.RFC3339))
			}
			return tw.Flush()
		}),
	}
	del := &cobra.Command{
		Use:     "del USER CLIENT|ID",
		Aliases: []string{"delete", "rm", "revoke"},
		Short:   "Revoke one of USER's app passwords",
		Args:    exactArgs("USER", "CLIENT|ID"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if err := s.DeleteAppPassword(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked app password %s of %s\n", args[1], args[0])
			return nil
		}),
	}
	cmd.AddCommand(add, list, del)
	return cmd
}
