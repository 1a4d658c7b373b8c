package cli

import (
	"github.com/spf13/cobra"

	"github.com/nymote/nymote/flash"
)

func newFlashCmd(g *globals) *cobra.Command {
	var opts flash.Options
	cmd := &cobra.Command{
		Use:   "flash IMAGE DEVICE",
		Short: "Write an SD card image onto a card (or a file), verify it and give it a random seed",
		Args:  exactArgs("IMAGE", "DEVICE"),
		Long: `flash writes an SD card image made by nymote build (sdcard.img) onto
DEVICE, a whole card such as /dev/sdb or /dev/mmcblk0, or onto a regular
file. It refuses the disk holding the running system, disks with a mounted
partition (unmount them first), partitions, and disks that are not
removable unless --force is given. It shows what it will overwrite and asks
before writing (--yes does not ask), shows progress, syncs, and verifies the
card by reading it back. Last it writes a fresh random seed onto the card,
which U-Boot hands to the kernel at the next boot, so that the appliance
does not wait for entropy (images carry no seed: they are shareable).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.In = g.stdio.In
			opts.Out = cmd.OutOrStdout()
			return flash.Write(cmd.Context(), args[0], args[1], opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "write onto a disk that is not removable (never the system disk or a mounted one)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask before overwriting")
	return cmd
}
