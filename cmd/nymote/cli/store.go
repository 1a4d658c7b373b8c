package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nymote/nymote/apps/gitsvc"
	"github.com/nymote/nymote/store"
)

// dataFlags is the --data flag of the commands that work on a store.
type dataFlags struct {
	g    *globals
	data string
}

func (d *dataFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&d.data, "data", os.Getenv("NYMOTE_DATA"),
		"data directory holding the store (default $NYMOTE_DATA)")
}

func (d *dataFlags) open(cmd *cobra.Command) (*store.Store, error) {
	if err := requireFlag(cmd, "data", d.data); err != nil {
		return nil, err
	}
	s, err := store.OpenData(d.data, store.Options{Logger: d.g.log})
	if errors.Is(err, store.ErrNotExist) {
		return nil, fmt.Errorf("%w (create one with: nymote store init --data %s)", err, d.data)
	}
	return s, err
}

// withStore opens the store, runs fn and closes the store.
func (d *dataFlags) withStore(fn func(cmd *cobra.Command, s *store.Store, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, err := d.open(cmd)
		if err != nil {
			return err
		}
		defer s.Close()
		return fn(cmd, s, args)
	}
}

// remoteFlags describe the other replica of pull, push and clone.
type remoteFlags struct {
	user          string
	passwordStdin bool
	caFile        string
}

func (r *remoteFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.user, "user", "", "user name for an http(s) remote (the password comes from $NYMOTE_PASSWORD, --password-stdin or a prompt)")
	cmd.Flags().BoolVar(&r.passwordStdin, "password-stdin", false, "read the remote's password from standard input")
	cmd.Flags().StringVar(&r.caFile, "ca-file", "", "PEM certificate(s) to trust for an https remote (the certificate file nymote store serve prints, for its self-signed certificate)")
}

func (r *remoteFlags) remote(g *globals, url string) (store.Remote, error) {
	rem := store.Remote{URL: url}
	if r.caFile != "" {
		b, err := os.ReadFile(r.caFile)
		if err != nil {
			return rem, fmt.Errorf("--ca-file: %w", err)
		}
		if !strings.Contains(string(b), "-----BEGIN CERTIFICATE-----") {
			return rem, fmt.Errorf("--ca-file %s: no PEM certificate in it", r.caFile)
		}
		rem.CABundle = b
	}
	if r.user == "" || !(strings.HasPrefix(url, "http://") || strings.HasPrefix(url, "https://")) {
		return rem, nil
	}
	rem.Username = r.user
	if pw := os.Getenv("NYMOTE_PASSWORD"); pw != "" && !r.passwordStdin {
		rem.Password = pw
		return rem, nil
	}
	pw, err := g.readPassword(r.passwordStdin, false, fmt.Sprintf("Password for %s at %s: ", r.user, url))
	rem.Password = pw
	return rem, err
}

func newStoreCmd(g *globals) *cobra.Command {
	d := &dataFlags{g: g}
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Create, inspect, merge, sync and repack a store",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
		Long: `A store is the versioned data of an appliance: a bare git repository
(DATA/store.git) in which every change is a commit.`,
	}
	d.register(cmd)
	var author, email, message string
	commitOpts := func(branch string) store.CommitOptions {
		return store.CommitOptions{Branch: branch, Author: store.Signature{Name: author, Email: email}, Message: message}
	}
	addCommitFlags := func(c *cobra.Command) {
		c.Flags().StringVar(&author, "author", "", "author name of the commit (default: nymote)")
		c.Flags().StringVar(&email, "email", "", "author email of the commit")
		c.Flags().StringVarP(&message, "message", "m", "", "commit message")
	}

	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create an empty store in the data directory",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "data", d.data); err != nil {
				return err
			}
			s, err := store.InitData(d.data, store.Options{Logger: g.log})
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "Initialised an empty store in %s\n", s.Path())
			return nil
		},
	}

	var logRev string
	var logLimit int
	logCmd := &cobra.Command{
		Use:   "log [PATH]",
		Short: "Show the history of the store, or of one path",
		Args:  rangeArgs(0, 1, "[PATH]"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			opts := store.LogOptions{Rev: logRev, Limit: logLimit}
			if len(args) == 1 {
				opts.Path = args[0]
			}
			cs, err := s.Log(opts)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, c := range cs {
				fmt.Fprintf(w, "%s %s %s <%s> %s\n", c.Hash.String()[:12], c.When.Format(time.RFC3339), c.Author.Name, c.Author.Email, c.Subject())
			}
			return nil
		}),
	}
	logCmd.Flags().StringVar(&logRev, "rev", "", "start from this revision (default: main)")
	logCmd.Flags().IntVarP(&logLimit, "max-count", "n", 0, "show at most this many commits")

	showCmd := &cobra.Command{
		Use:   "show [REV]",
		Short: "Show a commit and the paths it changed",
		Args:  rangeArgs(0, 1, "[REV]"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			rev := ""
			if len(args) == 1 {
				rev = args[0]
			}
			c, changes, err := s.Show(rev)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "commit %s\n", c.Hash)
			for _, p := range c.Parents {
				fmt.Fprintf(w, "parent %s\n", p)
			}
			fmt.Fprintf(w, "author %s <%s>\ndate   %s\n\n", c.Author.Name, c.Author.Email, c.When.Format(time.RFC1123Z))
			for _, l := range strings.Split(strings.TrimRight(c.Message, "\n"), "\n") {
				fmt.Fprintf(w, "    %s\n", l)
			}
			fmt.Fprintln(w)
			for _, ch := range changes {
				fmt.Fprintf(w, "%-6s %s\n", ch.Action(), ch.Path)
			}
			return nil
		}),
	}

	var catRev string
	catCmd := &cobra.Command{
		Use:   "cat PATH",
		Short: "Print the item at PATH",
		Args:  exactArgs("PATH"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			b, err := s.Read(catRev, args[0])
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		}),
	}
	catCmd.Flags().StringVar(&catRev, "rev", "", "read at this revision (default: main)")

	var lsRev string
	lsCmd := &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "List the items under PREFIX, recursively",
		Args:  rangeArgs(0, 1, "[PREFIX]"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			es, err := s.List(lsRev, prefix)
			if err != nil {
				return err
			}
			for _, e := range es {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", e.Hash.String()[:12], e.Path)
			}
			return nil
		}),
	}
	lsCmd.Flags().StringVar(&lsRev, "rev", "", "list at this revision (default: main)")

	var revertBranch string
	revertCmd := &cobra.Command{
		Use:   "revert REV",
		Short: "Make a new commit that undoes the commit REV",
		Args:  exactArgs("REV"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			h, err := s.Revert(cmd.Context(), args[0], commitOpts(revertBranch))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Reverted %s in %s\n", args[0], h)
			return nil
		}),
	}
	revertCmd.Flags().StringVar(&revertBranch, "branch", "", "branch to commit the revert to (default: main)")
	addCommitFlags(revertCmd)

	var mergeInto string
	mergeCmd := &cobra.Command{
		Use:   "merge FROM",
		Short: "Merge revision FROM (a branch, a remote branch such as origin/main, or a commit) into a branch",
		Args:  exactArgs("FROM"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			res, err := s.Merge(cmd.Context(), args[0], commitOpts(mergeInto))
			if err != nil {
				return err
			}
			printMerge(cmd, res)
			return nil
		}),
	}
	mergeCmd.Flags().StringVar(&mergeInto, "into", "", "branch to merge into (default: main)")
	addCommitFlags(mergeCmd)

	gcCmd := &cobra.Command{
		Use:   "gc",
		Short: "Repack the store's objects into one pack and prune unreachable ones",
		Args:  exactArgs(),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			st, err := s.GC(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Packed %d objects (%d loose, %d packs before; %d pruned): %s -> %s in %s\n",
				st.Objects, st.LooseBefore, st.PacksBefore, st.Pruned, bytesHuman(st.SizeBefore), bytesHuman(st.SizeAfter), st.Duration.Round(time.Millisecond))
			return nil
		}),
	}

	var rf remoteFlags
	var syncBranch, remoteBranch string
	pullCmd := &cobra.Command{
		Use:   "pull URL",
		Short: "Fetch a branch from another store (a path or an http(s) URL) and merge it",
		Args:  exactArgs("URL"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			rem, err := rf.remote(g, args[0])
			if err != nil {
				return err
			}
			res, err := s.Pull(cmd.Context(), rem, store.SyncOptions{Commit: commitOpts(syncBranch), RemoteBranch: remoteBranch})
			if err != nil {
				return err
			}
			printMerge(cmd, res)
			return nil
		}),
	}
	pushCmd := &cobra.Command{
		Use:   "push URL",
		Short: "Send a branch to another store (fast-forward only: pull first if it has changed)",
		Args:  exactArgs("URL"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			rem, err := rf.remote(g, args[0])
			if err != nil {
				return err
			}
			if err := s.Push(cmd.Context(), rem, store.SyncOptions{Commit: commitOpts(syncBranch), RemoteBranch: remoteBranch}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Pushed to %s\n", rem)
			return nil
		}),
	}
	for _, c := range []*cobra.Command{pullCmd, pushCmd} {
		rf.register(c)
		c.Flags().StringVar(&syncBranch, "branch", "", "local branch (default: main)")
		c.Flags().StringVar(&remoteBranch, "remote-branch", "", "the remote's branch (default: the local branch's name)")
	}
	addCommitFlags(pullCmd)

	cloneCmd := &cobra.Command{
		Use:   "clone URL",
		Short: "Create the data directory's store as a copy of another store",
		Args:  exactArgs("URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "data", d.data); err != nil {
				return err
			}
			rem, err := rf.remote(g, args[0])
			if err != nil {
				return err
			}
			s, err := store.Clone(cmd.Context(), rem, d.data+"/"+store.RepoDir, store.Options{Logger: g.log})
			if err != nil {
				return err
			}
			defer s.Close()
			h, _ := s.Resolve("")
			fmt.Fprintf(cmd.OutOrStdout(), "Cloned %s into %s at %s\n", rem, s.Path(), h)
			return nil
		},
	}
	rf.register(cloneCmd)

	var so serveOptions
	serveCmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the store over git smart HTTPS (git clone/fetch/push), with its users' passwords",
		Long: `Serve the store over git smart HTTPS (git clone/fetch/push), with its users'
passwords. The certificate is --tls-cert and --tls-key, or else a self-signed
one kept among the node's files (outside the store, never replicated), which
clients can trust with GIT_SSL_CAINFO=FILE git clone ... (the file is printed).
Connections are capped in total and per host, the TLS handshake and headers
must come in time, and password guessing is slowed down per host and per
account, as on the appliances.`,
		Args: exactArgs(),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if so.insecure && !isLoopback(so.listen) {
				return fmt.Errorf("--insecure-http sends passwords in the clear: only on a loopback --listen address (127.0.0.1, ::1), not %s", so.listen)
			}
			ln, err := net.Listen("tcp", so.listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", so.listen, err)
			}
			return serveGit(cmd.Context(), g, s, ln, so)
		}),
	}
	serveCmd.Flags().StringVar(&so.listen, "listen", "127.0.0.1:9418", "address to listen on")
	serveCmd.Flags().StringVar(&so.certFile, "tls-cert", "", "TLS certificate (PEM); default: a self-signed one kept among the node's files")
	serveCmd.Flags().StringVar(&so.keyFile, "tls-key", "", "TLS key (PEM)")
	serveCmd.Flags().BoolVar(&so.insecure, "insecure-http", false, "serve plain HTTP, passwords in the clear (loopback tests only)")

	cmd.AddCommand(initCmd, logCmd, showCmd, catCmd, lsCmd, revertCmd, newBranchCmd(d), mergeCmd, cloneCmd, pullCmd, pushCmd, gcCmd, serveCmd)
	return cmd
}

// serveOptions are the flags of store serve.
type serveOptions struct {
	listen            string
	certFile, keyFile string
	insecure          bool
}

// isLoopback reports whether addr (host:port) names a loopback address.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serveGit serves s's git endpoint on ln until ctx is done, over HTTPS
// unless o.insecure, guarded as the appliances' git endpoints are (gitsvc).
func serveGit(ctx context.Context, g *globals, s *store.Store, ln net.Listener, o serveOptions) error {
	defer ln.Close()
	scheme := "http"
	var tlsConfig *tls.Config
	if !o.insecure {
		hosts := []string{"localhost", "127.0.0.1", "::1"}
		if h, _, err := net.SplitHostPort(ln.Addr().String()); err == nil && !net.ParseIP(h).IsUnspecified() && !net.ParseIP(h).IsLoopback() {
			hosts = append([]string{h}, hosts...)
		}
		var fp string
		var err error
		tlsConfig, fp, err = gitsvc.TLSConfig(ctx, s, o.certFile, o.keyFile, hosts, g.log)
		if err != nil {
			return err
		}
		scheme = "https"
		fmt.Fprintf(g.stdio.Out, "nymote: store git tls certificate sha256 %s\n", fp)
		if o.certFile == "" {
			fmt.Fprintf(g.stdio.Out, "nymote: the certificate is self-signed; trust it with: GIT_SSL_CAINFO=%[1]s git clone ... (or nymote store clone|pull|push --ca-file %[1]s)\n", gitsvc.CertFile(s))
		}
	}
	srv := gitsvc.New(gitsvc.Config{Store: s, TLS: tlsConfig, Logger: g.log})
	users, _ := s.Users()
	fmt.Fprintf(g.stdio.Out, "nymote: store git listening on %s://%s/ (%d users; clone with: git clone %s://USER@%s/ data)\n",
		scheme, ln.Addr(), len(users), scheme, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return <-errc
	}
}

func printMerge(cmd *cobra.Command, res store.MergeResult) {
	w := cmd.OutOrStdout()
	switch {
	case res.UpToDate:
		fmt.Fprintln(w, "Already up to date.")
	case res.FastForward:
		fmt.Fprintf(w, "Fast-forward to %s\n", res.Head)
	default:
		fmt.Fprintf(w, "Merged in %s", res.Head)
		if len(res.Resolved) > 0 {
			fmt.Fprintf(w, " (%d path(s) reconciled by merge functions)", len(res.Resolved))
		}
		fmt.Fprintln(w)
	}
}

func newBranchCmd(d *dataFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "branch",
		Short: "List, create, delete and fast-forward branches",
		Args:  exactArgs(),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			bs, err := s.Branches()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, b := range bs {
				fmt.Fprintf(tw, "%s\t%s\n", b.Name, b.Head.String()[:12])
			}
			return tw.Flush()
		}),
	}
	create := &cobra.Command{
		Use:   "create NAME [REV]",
		Short: "Create branch NAME at REV (default: main)",
		Args:  rangeArgs(1, 2, "NAME [REV]"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			rev := ""
			if len(args) == 2 {
				rev = args[1]
			}
			h, err := s.CreateBranch(cmd.Context(), args[0], rev)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created branch %s at %s\n", args[0], h)
			return nil
		}),
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete branch NAME (not main)",
		Args:  exactArgs("NAME"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			if err := s.DeleteBranch(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted branch %s\n", args[0])
			return nil
		}),
	}
	ff := &cobra.Command{
		Use:   "ff NAME REV",
		Short: "Fast-forward branch NAME to REV (refused if NAME has commits REV lacks)",
		Args:  exactArgs("NAME", "REV"),
		RunE: d.withStore(func(cmd *cobra.Command, s *store.Store, args []string) error {
			h, err := s.FastForward(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is at %s\n", args[0], h)
			return nil
		}),
	}
	cmd.AddCommand(create, del, ff)
	return cmd
}

func bytesHuman(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
