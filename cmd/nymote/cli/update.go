package cli

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/images"
	"github.com/nymote/nymote/internal/sdboot"
	"github.com/nymote/nymote/update"
)

func newKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Signing keys for appliance images (create, rotate)",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	create := &cobra.Command{
		Use:   "create KEY",
		Short: "Create an Ed25519 signing key in the file KEY (mode 0600) and its public key in KEY.pub",
		Long: `key create makes a signing key for nymote build --sign. Keep it on this
host: images built with it carry only its public key (KEY.pub), and their
appliances accept only updates signed by it (or by a key it endorsed: key
rotate). An existing file is never replaced.`,
		Args: exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := update.CreateKey(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created signing key %s (public key %s%s, fingerprint %s)\n", args[0], args[0], update.PublicSuffix, update.Fingerprint(pub))
			return nil
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate OLD NEW",
		Short: "Endorse the key NEW (created if missing) with the key OLD, so that appliances trusting OLD accept NEW's images",
		Long: `key rotate signs NEW's public key with OLD and writes NEW.chain. Images
signed with NEW carry that chain: an appliance that trusts OLD accepts them,
and after that update trusts NEW. Retire OLD once every appliance runs an
image signed with NEW.`,
		Args: exactArgs("OLD", "NEW"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(args[1]); errors.Is(err, os.ErrNotExist) {
				if _, err := update.CreateKey(args[1]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Created signing key %s\n", args[1])
			}
			if err := update.Rotate(args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is endorsed by %s (%s%s)\n", args[1], args[0], args[1], update.ChainSuffix)
			return nil
		},
	}
	cmd.AddCommand(create, rotate)
	return cmd
}

// slotFlags say where an appliance's slots are.
type slotFlags struct{ disk, slots, card string }

func (f *slotFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.disk, "disk", "", "the appliance's data disk: its slots are DISK.slots beside it")
	cmd.Flags().StringVar(&f.slots, "slots", "", "the slots folder (instead of --disk)")
	cmd.Flags().StringVar(&f.card, "card", "", "an SD card board's card (the image file, or the card's device in a reader; the board powered off), instead of --disk")
}

// sdStatus prints an SD card's slots.
func sdStatus(w io.Writer, path string) error {
	c, err := sdboot.OpenCard(path, false)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.State()
	if err != nil {
		return err
	}
	for _, s := range sdboot.Slots {
		i := c.Info(s)
		what := "empty"
		switch {
		case s == st.Committed:
			what = "committed"
		case s == st.Next && st.Tried == s:
			what = "in its test boot (the next boot returns to the committed slot unless it reports good)"
		case s == st.Next:
			what = "next: boots once for a test"
		case i.App != "":
			what = "previous"
		}
		fmt.Fprintf(w, "slot %s  %-8s %-60s %s\n", s, orNone(i.App), i, what)
	}
	return nil
}

// checkCardRollback refuses, before anything is written, a rollback of
// an SD card to a slot whose image writes an older data format than the
// card's data partition is in (a migration committed since).
func checkCardRollback(path string, c *sdboot.CardFile) error {
	st, err := c.State()
	if err != nil {
		return err
	}
	to := sdboot.Other(st.Committed)
	info := c.Info(to)
	if info.App == "" {
		return nil // Rollback says there is nothing to return to
	}
	df, err := update.DiskFormatOf(fmt.Sprintf("%s?offset=%d", path, c.DataPartition()))
	if err != nil {
		return err
	}
	format := max(info.DataFormat, 1)
	if df.Least() > format {
		return fmt.Errorf("slot %s's image (%s) writes data format %d; the card's data partition is in format %d, written by a newer image: %w (a migration is never undone): refusing the rollback", to, info, format, df.Least(), update.ErrOlderFormat)
	}
	return nil
}

// diskFormat is the data disk's format (update.DiskFormatOf: the disk
// given, or the one beside the slots folder), for the checks before a
// rollback or an install.
func (f *slotFlags) diskFormat() (int, error) {
	disk := f.disk
	if disk == "" {
		disk = strings.TrimSuffix(f.slots, ".slots")
		if _, err := os.Stat(disk); disk == f.slots || err != nil {
			return 0, fmt.Errorf("the data disk of slots %s is not beside them: give --disk DATA.img, whose data format is checked first", f.slots)
		}
	}
	df, err := update.DiskFormatOf(disk)
	if err != nil {
		return 0, err
	}
	return df.Least(), nil
}

func (f *slotFlags) open(cmd *cobra.Command) (*update.Slots, error) {
	dir := f.slots
	if dir == "" {
		if f.disk == "" {
			return nil, usageError{fmt.Errorf("%s: give --disk DATA.img (or --slots DIR)", cmd.CommandPath())}
		}
		dir = update.SlotsDir(f.disk)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("slots %s: %w (nymote run --slots makes them)", dir, err)
	}
	return update.OpenSlots(dir)
}

func newUpdateCmd(g *globals) *cobra.Command {
	var img, to, board, user, fingerprint, sign string
	var pwStdin bool
	cmd := &cobra.Command{
		Use:   "update APP --to HOST[:PORT] (--image DIR | --board BOARD --sign KEY)",
		Short: "Send a signed image to a running appliance, which test-boots it once and keeps it if it comes up good",
		Long: `update sends a signed image (--image DIR, built with nymote build --sign;
or, without --image, one built now for --board and signed with --sign KEY)
to the appliance at HOST over HTTPS (its update port, ` + fmt.Sprint(app.UpdatePort.Port) + `), as an
administrator of its store (a user with git write access; --user, the
password from the terminal or --password-stdin). The appliance checks the
signature against the keys it trusts and every file against the signed
manifest before it writes anything, writes the image to its inactive slot
and reboots into it once: the new image is kept only if the appliance
reports itself good (service serving, data disk mounted); otherwise the
next boot returns to the previous image. Its data disk is never touched.
The update port's certificate is made at each boot: give its fingerprint,
printed on the appliance's console, with --fingerprint.`,
		Args: func(cmd *cobra.Command, args []string) error {
			return exactArgs("APP")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "to", to); err != nil {
				return err
			}
			if err := requireFlag(cmd, "user", user); err != nil {
				return err
			}
			dir := img
			if dir == "" {
				if sign == "" {
					return usageError{errors.New("give --image DIR (a signed image) or --sign KEY to build and sign one")}
				}
				f := imageFlags{board: board, sign: sign}
				opts, err := f.options(g, args[0])
				if err != nil {
					return err
				}
				opts.OutDir += "-update"
				if _, err := images.Build(cmd.Context(), opts); err != nil {
					return err
				}
				dir = opts.OutDir
			}
			m, err := images.ReadManifest(dir)
			if err != nil {
				return err
			}
			if m.App != args[0] {
				return usageError{fmt.Errorf("the image in %s is of app %s, not %s", dir, m.App, args[0])}
			}
			if board != "" && cmd.Flags().Changed("board") && m.Board != board {
				return usageError{fmt.Errorf("the image in %s is for board %s, not %s", dir, m.Board, board)}
			}
			var body bytes.Buffer
			if err := update.WriteBundle(&body, dir); err != nil {
				return err
			}
			pw, err := g.readPassword(pwStdin, false, "Password of "+user+": ")
			if err != nil {
				return err
			}
			start := time.Now()
			msg, err := sendUpdate(cmd, to, fingerprint, user, pw, &body)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (sent in %s)\n", to, strings.TrimSpace(msg), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&img, "image", "", "the signed image folder to send (nymote build --sign KEY -o DIR)")
	cmd.Flags().StringVar(&to, "to", "", "the appliance: HOST or HOST:PORT (default port "+fmt.Sprint(app.UpdatePort.Port)+")")
	cmd.Flags().StringVar(&board, "board", "qemu-x86_64", "board to build for, without --image")
	cmd.Flags().StringVar(&sign, "sign", "", "signing key, to build the image now (without --image)")
	cmd.Flags().StringVar(&user, "user", "", "an administrator of the appliance's store (git write access)")
	cmd.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from standard input")
	cmd.Flags().StringVar(&fingerprint, "fingerprint", "", "sha256 (hex) of the update port's certificate, from the appliance's console")

	var sf slotFlags
	status := &cobra.Command{
		Use:   "status",
		Short: "Show an appliance's two slots (host-booted: --disk; SD card board: --card): their images and which one is committed",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sf.card != "" {
				return sdStatus(cmd.OutOrStdout(), sf.card)
			}
			s, err := sf.open(cmd)
			if err != nil {
				return err
			}
			st, infos, err := s.Status()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, i := range infos {
				what := "empty"
				switch {
				case i.Committed:
					what = "committed"
				case i.Next && i.Tried:
					what = "in its test boot (the next boot returns to the committed slot unless it reports good)"
				case i.Next:
					what = "next: boots once for a test"
				case i.Version != "":
					what = "previous"
				}
				v := i.Version
				if v == "" {
					v = "-"
				}
				format := "-"
				if i.DataFormat > 0 {
					format = fmt.Sprintf("format %d", i.DataFormat)
				}
				fmt.Fprintf(w, "slot %s  %-8s %-40s %-9s %s\n", i.Slot, orNone(i.App), v, format, what)
			}
			if sf.disk != "" {
				if df, err := update.DiskFormatOf(sf.disk); err == nil {
					what := ""
					if df.Migrating != nil {
						what = fmt.Sprintf(" (its migration %s to format %d was interrupted: the next boot of an image of format %d or later resumes it)", df.Migrating.Name, df.Format+1, df.Format+1)
					}
					fmt.Fprintf(w, "data disk %s: data format %d%s\n", sf.disk, df.Format, what)
				}
			}
			if rb := st.RolledBack; rb != nil {
				fmt.Fprintf(w, "last rollback: from slot %s (%s) at %s: %s\n", rb.Slot, rb.Version, rb.At.Format(time.RFC3339), rb.Why)
			}
			return nil
		},
	}
	sf.register(status)
	var rf slotFlags
	rollback := &cobra.Command{
		Use:   "rollback",
		Short: "Return an appliance (host-booted: --disk; SD card board: --card) to its other image at its next boot (cancels a pending update)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rf.card != "" {
				c, err := sdboot.OpenCard(rf.card, true)
				if err != nil {
					return err
				}
				defer c.Close()
				if err := checkCardRollback(rf.card, c); err != nil {
					return err
				}
				slot, err := c.Rollback()
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "The next boot boots slot %s (committed)\n", slot)
				return nil
			}
			s, err := rf.open(cmd)
			if err != nil {
				return err
			}
			df, err := rf.diskFormat()
			if err != nil {
				return err
			}
			if err := s.CheckRollback(df); err != nil {
				return err
			}
			slot, err := s.RollbackByHand()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "The next boot boots slot %s\n", slot)
			return nil
		},
	}
	rf.register(rollback)
	var inf slotFlags
	var instImage string
	install := &cobra.Command{
		Use:   "install --image DIR --disk DATA.img",
		Short: "Install a signed image into the inactive slot of an appliance on this host, for a test boot at its next boot",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "image", instImage); err != nil {
				return err
			}
			if inf.card != "" {
				return usageError{errors.New("update install: an SD card board takes an image while it runs (nymote update APP --to BOARD); a new card is flashed whole (nymote flash)")}
			}
			s, err := inf.open(cmd)
			if err != nil {
				return err
			}
			df, err := inf.diskFormat()
			if err != nil {
				return err
			}
			slot, err := s.Install(instImage, update.InstallOptions{DiskFormat: df})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Installed %s in slot %s: the next boot tests it once\n", instImage, slot)
			return nil
		},
	}
	inf.register(install)
	install.Flags().StringVar(&instImage, "image", "", "the signed image folder")
	cmd.AddCommand(status, rollback, install)
	return cmd
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// sendUpdate posts body (a bundle) to the update port at to.
func sendUpdate(cmd *cobra.Command, to, fingerprint, user, pw string, body io.Reader) (string, error) {
	host := to
	if _, _, err := net.SplitHostPort(to); err != nil {
		host = net.JoinHostPort(to, fmt.Sprint(app.UpdatePort.Port))
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if fingerprint != "" {
		want := strings.ToLower(strings.ReplaceAll(fingerprint, ":", ""))
		// The certificate is pinned by its fingerprint instead of a CA.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if got := hex.EncodeToString(sum[:]); got != want {
				return fmt.Errorf("the update port's certificate has fingerprint %s, not %s", got, want)
			}
			return nil
		}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Minute}
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, "https://"+host+"/", body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	req.SetBasicAuth(user, pw)
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("update: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("update: %s answered %s: %s", to, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}
