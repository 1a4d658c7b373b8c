package appliance

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/nymote/nymote/update"
)

// ErrDataNewer is returned by checkDataFormat when the data disk is in a
// newer format than the image writes: a rollback after a committed
// migration. The image refuses to serve.
var ErrDataNewer = errors.New("the data disk is in a newer data format than this image writes")

// ErrDataUnreadable is returned by checkDataFormat on a test boot whose
// image cannot serve the data disk's format as it is: the test boot is not
// good, and the slot logic returns to the committed image.
var ErrDataUnreadable = errors.New("this image cannot serve the data disk's format during its test boot")

// checkDataFormat applies the data format rule (see package update) at
// boot, before the service starts, to the data directory dir:
//
//   - a fresh disk gets the image's format;
//   - the same format: nothing to do;
//   - the disk in a newer format: ErrDataNewer, naming both formats;
//   - the disk in an older format, on a test boot (trial): the image must
//     read it (app.DataFormat.Reads; else ErrDataUnreadable); nothing is
//     written and migrate is set: once committed, the runtime reboots
//     and the next boot migrates;
//   - the disk in an older format, not on a test boot (the image is
//     committed, or booted without slots): the data is migrated forward
//     now, one logged step at a time (update.Migrate), resuming a step a
//     crash interrupted.
func checkDataFormat(ctx context.Context, dir string, svc Service, trial bool, say func(string, ...any)) (migrate bool, err error) {
	f := svc.Data
	if err := f.Check(); err != nil {
		return false, fmt.Errorf("%s declares a bad data format: %w", svc.Name, err)
	}
	for _, m := range f.Migrations {
		if svc.Migrations[m.Name] == nil {
			return false, fmt.Errorf("%s declares data migration %s (format %d to %d) but carries no code for it", svc.Name, m.Name, m.From, m.From+1)
		}
	}
	if len(svc.Migrations) != len(f.Migrations) {
		var names []string
		for n := range svc.Migrations {
			names = append(names, n)
		}
		sort.Strings(names)
		return false, fmt.Errorf("%s carries data migrations %v, but declares %d (App.Data.Migrations)", svc.Name, names, len(f.Migrations))
	}
	cur := f.Current()
	disk, err := update.ReadDiskFormat(dir)
	if err != nil {
		return false, err
	}
	switch {
	case disk.Fresh:
		if err := update.WriteDiskFormat(dir, update.DiskFormat{Format: cur}); err != nil {
			return false, err
		}
		say("new data disk: data format %d", cur)
		return false, nil
	case disk.Format == cur && disk.Migrating != nil:
		return false, fmt.Errorf("%w: the data disk's migration %s from data format %d to %d was interrupted, %s writes format %d: refusing to start %s (an image of format %d or later finishes it)", ErrDataNewer, disk.Migrating.Name, disk.Format, disk.Format+1, svc.Name, cur, svc.Name, disk.Format+1)
	case disk.Format > cur:
		return false, fmt.Errorf("%w: the data disk is in data format %d, %s writes format %d: refusing to start %s (a migration is never undone: boot an image of format %d or later)", ErrDataNewer, disk.Format, svc.Name, cur, svc.Name, disk.Format)
	case disk.Format == cur:
		if disk.Implicit {
			// Data from before formats were recorded: record it
			// (if the disk takes no write now, the next boot
			// tries again; the service says what is wrong).
			if err := update.WriteDiskFormat(dir, update.DiskFormat{Format: cur}); err != nil {
				say("recording the data format: %v", err)
			}
		}
		return false, nil
	case trial:
		if disk.Migrating != nil {
			return false, fmt.Errorf("%w: the data disk's migration %s (format %d to %d) was interrupted; its committed image finishes it, a test boot does not", ErrDataUnreadable, disk.Migrating.Name, disk.Format, disk.Format+1)
		}
		if err := update.CheckFormat(disk.Format, &f, svc.Name); err != nil {
			return false, fmt.Errorf("%w: %v", ErrDataUnreadable, err)
		}
		say("test boot: serving the data as it is, in data format %d (this image writes format %d and migrates the data after its commit)", disk.Format, cur)
		return true, nil
	}
	say("data format %d on the data disk, %s writes format %d: migrating", disk.Format, svc.Name, cur)
	if _, err := update.Migrate(ctx, dir, f, svc.Migrations, say); err != nil {
		return false, err
	}
	return false, nil
}
