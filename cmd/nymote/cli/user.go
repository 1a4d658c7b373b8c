package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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
argon2id hashes in the store; they are never logged. A user's mail and
DAV clients may each have their own app password instead (nymote user
app-password), revoked one at a time.`,
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
			fmt.Fprintln(tw, "NAME\tGIT\tSTORAGE\tMESSAGES\tCREATED")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Git, formatStorage(u.Quota.StorageKiB),
					formatLimit(u.Quota.Messages), u.Created.Format(time.RFC3339))
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

	var storageFlag, messagesFlag string
	quota := &cobra.Command{
		Use:   "quota NAME [--storage SIZE] [--messages N]",
		Short: "Set a user's quota (IMAP QUOTA's STORAGE and MESSAGE): none lifts a limit",
		Long: `Set the limits a user's mail is held to (RFC 9208's STORAGE and MESSAGE
resources): --storage as a size with a unit (500M, 2G, 1024K), --messages as
a count; none (or 0) lifts a limit. A limit not given stays as it is. Mail
over quota is refused: IMAP APPEND, COPY and MOVE answer NO [OVERQUOTA],
SMTP answers 552 5.2.2. The limits are in the user's record, so they
replicate with the store.`,
		Args: exactArgs("NAME"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if !cmd.Flags().Changed("storage") && !cmd.Flags().Changed("messages") {
				return usageError{errors.New("give --storage SIZE, --messages N or both")}
			}
			u, err := s.LookupUser(args[0])
			if err != nil {
				return err
			}
			q := u.Quota
			if cmd.Flags().Changed("storage") {
				if q.StorageKiB, err = parseStorage(storageFlag); err != nil {
					return usageError{fmt.Errorf("--storage: %w", err)}
				}
			}
			if cmd.Flags().Changed("messages") {
				if q.Messages, err = parseMessages(messagesFlag); err != nil {
					return usageError{fmt.Errorf("--messages: %w", err)}
				}
			}
			if err := s.SetQuota(cmd.Context(), args[0], q); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s now has quota: storage %s, messages %s\n", args[0],
				formatStorage(q.StorageKiB), formatLimit(q.Messages))
			return nil
		}),
	}
	quota.Flags().StringVar(&storageFlag, "storage", "", "storage limit with a unit (K, M, G, T; e.g. 500M), or none")
	quota.Flags().StringVar(&messagesFlag, "messages", "", "limit on the number of messages, or none")

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
	cmd.AddCommand(add, list, passwd, gitCmd, quota, del, newAppPasswordCmd(d))
	return cmd
}

// parseStorage parses a storage limit into KiB: a whole number with a unit
// K, M, G or T (KiB, MiB...; B and iB suffixes are accepted), or none or 0
// for no limit. A bare number is refused: bytes or KiB would be a guess.
func parseStorage(s string) (uint64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "NONE" || t == "0" {
		return 0, nil
	}
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	var kib uint64
	switch {
	case strings.HasSuffix(t, "K"):
		kib = 1
	case strings.HasSuffix(t, "M"):
		kib = 1 << 10
	case strings.HasSuffix(t, "G"):
		kib = 1 << 20
	case strings.HasSuffix(t, "T"):
		kib = 1 << 30
	default:
		return 0, fmt.Errorf("%q: give a unit, K, M, G or T (e.g. 500M), or none", s)
	}
	n, err := strconv.ParseUint(t[:len(t)-1], 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q: want a whole number above 0 with a unit K, M, G or T (e.g. 500M), or none", s)
	}
	if n > store.MaxQuota/kib {
		return 0, fmt.Errorf("%q: at most %d KiB", s, uint64(store.MaxQuota))
	}
	return n * kib, nil
}

// parseMessages parses a message count limit, or none or 0 for no limit.
func parseMessages(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "none") {
		return 0, nil
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want a whole number of messages, or none", s)
	}
	if n > store.MaxQuota {
		return 0, fmt.Errorf("%q: at most %d", s, uint64(store.MaxQuota))
	}
	return n, nil
}

// formatStorage writes a limit in KiB in the largest unit that divides it.
func formatStorage(kib uint64) string {
	if kib == 0 {
		return "none"
	}
	for _, u := range []struct {
		n    uint64
		name string
	}{{1 << 30, "T"}, {1 << 20, "G"}, {1 << 10, "M"}} {
		if kib%u.n == 0 {
			return fmt.Sprintf("%d%s", kib/u.n, u.name)
		}
	}
	return fmt.Sprintf("%dK", kib)
}

func formatLimit(n uint64) string {
	if n == 0 {
		return "none"
	}
	return strconv.FormatUint(n, 10)
}
