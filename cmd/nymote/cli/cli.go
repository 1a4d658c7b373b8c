// Package cli implements the nymote command line: one cobra command tree
// whose commands are thin shells over the project's packages. Main runs it
// in-process, which is how the tests drive it.
package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// IO is where a command reads and writes.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

// Main runs the nymote command line with args (without the program name)
// and returns the process exit code: 0 on success, 1 on failure, 2 on a
// usage error.
func Main(ctx context.Context, args []string, stdio IO) int {
	root := newRoot(stdio)
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stdio.Err, "nymote: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// usageError marks errors in how the command was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// globals are the flags shared by every command.
type globals struct {
	stdio    IO
	logLevel string
	log      *slog.Logger
}

func newRoot(stdio IO) *cobra.Command {
	g := &globals{stdio: stdio}
	root := &cobra.Command{
		Use:   "nymote",
		Short: "Run your own mail, contacts and calendar as appliances that keep your data in git",
		Long: `nymote is the host tool of Nymote: personal cloud services, each a
single-purpose appliance that keeps its data as a versioned git history.

It creates and inspects stores (the data of an appliance), manages their
users, and syncs replicas over git.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
				return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)}
			}
			g.log = slog.New(slog.NewTextHandler(stdio.Err, &slog.HandlerOptions{Level: lvl}))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%s: %w (see %s --help)", c.CommandPath(), err, c.CommandPath())}
	})
	root.AddCommand(newStoreCmd(g), newUserCmd(g), newPeerCmd(g))
	root.AddCommand(newBuildCmd(g), newRunCmd(g), newDiskCmd(g), newFlashCmd(g))
	root.AddCommand(newSummonCmd(g))
	root.AddCommand(newMailCmd(g))
	root.AddCommand(newKeyCmd(g), newUpdateCmd(g))
	root.AddCommand(newIDCmd(g), newShareCmd(g))
	return root
}

// exactArgs is cobra.ExactArgs with a message that names the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageError{fmt.Errorf("%s: want %d argument(s) (%s), got %d (see --help)",
				cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))}
		}
		return nil
	}
}

// rangeArgs accepts between min and max arguments.
func rangeArgs(min, max int, usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return usageError{fmt.Errorf("%s: usage: %s %s (see --help)", cmd.CommandPath(), cmd.CommandPath(), usage)}
		}
		return nil
	}
}

// requireFlag fails when a required string flag is empty.
func requireFlag(cmd *cobra.Command, name, value string) error {
	if value == "" {
		return usageError{fmt.Errorf("%s: --%s is required", cmd.CommandPath(), name)}
	}
	return nil
}

// readPassword gets a password: one line from standard input with
// fromStdin, else from the terminal (asked twice when confirm is set).
func (g *globals) readPassword(fromStdin, confirm bool, prompt string) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(g.stdio.In).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", fmt.Errorf("reading the password from standard input: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	f, ok := g.stdio.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usageError{errors.New("no terminal to ask for the password: use --password-stdin")}
	}
	ask := func(p string) (string, error) {
		fmt.Fprint(g.stdio.Err, p)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(g.stdio.Err)
		return string(b), err
	}
	pw, err := ask(prompt)
	if err != nil {
		return "", err
	}
	if confirm {
		again, err := ask("Again: ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", errors.New("the passwords do not match")
		}
	}
	return pw, nil
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// groupRun is the RunE of a command that only groups subcommands: without
// arguments it shows help, with an unknown subcommand it fails.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())}
	}
	return cmd.Help()
}
