package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nymote/nymote/disk"
	"github.com/nymote/nymote/store"
)

func newDiskCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disk",
		Short: "Create and export the data disks of appliances",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
		Long: `A data disk is an ext4 image holding an appliance's data directory (its
store, with users and their data). nymote run attaches it as the
appliance's virtio-blk disk. Creating and exporting need e2fsprogs, not root.`,
	}
	var data, out, size string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a data disk image holding the store of a data directory",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag(cmd, "data", data); err != nil {
				return err
			}
			if err := requireFlag(cmd, "output", out); err != nil {
				return err
			}
			n, err := disk.ParseSize(size)
			if err != nil {
				return usageError{fmt.Errorf("--size: %w", err)}
			}
			s, err := store.OpenData(data, store.Options{Logger: g.log})
			if errors.Is(err, store.ErrNotExist) {
				return fmt.Errorf("%w (create one with: nymote store init --data %s, then add users: nymote user add NAME --data %s)", err, data, data)
			}
			if err != nil {
				return err
			}
			users, _ := s.Users()
			s.Close()
			if err := disk.Create(cmd.Context(), data, out, n); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created %s (%s, ext4) with the store of %s (%d users)\n", out, size, data, len(users))
			return nil
		},
	}
	create.Flags().StringVar(&data, "data", "", "data directory whose store goes on the disk")
	create.Flags().StringVarP(&out, "output", "o", "", "disk image to create")
	create.Flags().StringVar(&size, "size", "1G", "disk size (sparse): K, M, G or T suffix")

	export := &cobra.Command{
		Use:   "export DISK DIR",
		Short: "Copy the data directory on a data disk image (store and all) into DIR",
		Args:  exactArgs("DISK", "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := disk.Export(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Exported %s into %s\n", args[0], args[1])
			return nil
		},
	}
	cmd.AddCommand(create, export)
	return cmd
}
