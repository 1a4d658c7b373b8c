package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nymote/nymote/store"
)

func newUserCmd(g *globals) *cobra.Command {
	d := &dataFlags{g: g}
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Add, list, change and delete the users of a store",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
		Long: `Users log in to the appliance's services (IMAP, SMTP, CardDAV, CalDAV)
and, with git access, to the store's git endpoint. Passwords are stored as
argon2id hashes in the store; they are never logged.`,
	}
	d.register(cmd)
	var pwStdin bool
	var gitAccess string

	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user (password from --password-stdin or a prompt)",
		Args:  exactArgs("NAME"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if err := store.ValidateUserName(args[0]); err != nil {
				return usageError{err}
			}
			access, err := store.ParseGitAccess(gitAccess)
			if err != nil {
				return usageError{fmt.Errorf("--git: %w", err)}
			}
			pw, err := g.readPassword(pwStdin, true, fmt.Sprintf("Password for %s: ", args[0]))
			if err != nil {
				return err
			}
			if err := s.AddUser(cmd.Context(), args[0], pw, access); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Added user %s (git access: %s)\n", args[0], access)
			return nil
		}),
	}
	add.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from standard input (one line)")
	add.Flags().StringVar(&gitAccess, "git", "none", "git smart HTTP access to the whole store: none, read or write (give it only to the store's owner)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the users",
		Args:  exactArgs(),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			us, err := s.Users()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tGIT\tCREATED")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Git, u.Created.Format(time.RFC3339))
			}
			return tw.Flush()
		}),
	}

	var passwdStdin bool
	passwd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Change a user's password",
		Args:  exactArgs("NAME"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if _, err := s.LookupUser(args[0]); err != nil {
				return err
			}
			pw, err := g.readPassword(passwdStdin, true, fmt.Sprintf("New password for %s: ", args[0]))
			if err != nil {
				return err
			}
			if err := s.SetPassword(cmd.Context(), args[0], pw); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Changed the password of %s\n", args[0])
			return nil
		}),
	}
	passwd.Flags().BoolVar(&passwdStdin, "password-stdin", false, "read the password from standard input (one line)")

	gitCmd := &cobra.Command{
		Use:   "git NAME none|read|write",
		Short: "Set a user's git access to the store",
		Args:  exactArgs("NAME", "ACCESS"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			access, err := store.ParseGitAccess(args[1])
			if err != nil {
				return usageError{err}
			}
			if err := s.SetGitAccess(cmd.Context(), args[0], access); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s now has git access: %s\n", args[0], access)
			return nil
		}),
	}

	del := &cobra.Command{
		Use:     "del NAME",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a user (their data stays in the store's history)",
		Args:    exactArgs("NAME"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if err := s.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted user %s\n", args[0])
			return nil
		}),
	}
	cmd.AddCommand(add, list, passwd, gitCmd, del)
	return cmd
}
