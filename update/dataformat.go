package update

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nymote/nymote/appliance/app"
)

// Data formats. An image's manifest says which format of the data disk its
// code writes (data_format: app.DataFormat), which older formats it serves
// from as they are, and which forward migrations it carries. The data disk
// records the format it is in (DataFormatFile, a node file beside the
// store). The rule, applied by the appliance runtime at each boot:
//
//   - same format: the image runs as it is;
//   - the image writes a newer format: its test boot serves the data as it
//     is (it must read the disk's format: app.DataFormat.Reads; one that
//     cannot refuses to serve, its test boot is not good, and the slot
//     logic returns to the committed image); after its commit the
//     appliance reboots, and that boot (no longer a test) migrates the
//     data forward, one step at a time (Migrate), before serving;
//   - the image writes an older format (a rollback after a committed
//     migration): it refuses to serve, naming both formats.
//
// CheckFormat applies the same rule before anything is written:
// the update receiver refuses such an image, nymote update rollback such a
// rollback.

// DataFormatFile is the data disk's format record, relative to the data
// directory: a node file (never committed, never carried by a replica),
// beside the store.
const DataFormatFile = "node/data-format"

// DiskFormat is a data disk's format record.
type DiskFormat struct {
	// Format is the format the data is in.
	Format int `json:"format"`
	// Migrating, when set, is the migration step that was started from
	// Format and has not finished: the next boot runs it again (steps are
	// idempotent: see Migrate).
	Migrating *app.Migration `json:"migrating,omitempty"`
	// Fresh is set (not stored) for a data directory without a record and
	// without data: its first image's format is written.
	Fresh bool `json:"-"`
	// Implicit is set (not stored) for a data directory with data but no
	// record: data written before formats were recorded, format 1.
	Implicit bool `json:"-"`
}

// Least is the oldest format an image must write to serve the data: the
// record's format, or the next one while a migration to it is under way
// (an image of the record's format would find the data half migrated).
func (f DiskFormat) Least() int {
	if f.Migrating != nil {
		return f.Format + 1
	}
	return f.Format
}

// ReadDiskFormat reads the data directory's format record. A directory
// without one is format 1 (data from before formats were recorded), or
// Fresh when it holds nothing but lost+found.
func ReadDiskFormat(dataDir string) (DiskFormat, error) {
	p := filepath.Join(dataDir, filepath.FromSlash(DataFormatFile))
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		ents, err := os.ReadDir(dataDir)
		if err != nil {
			return DiskFormat{}, fmt.Errorf("update: data format: %w", err)
		}
		for _, e := range ents {
			if e.Name() != "lost+found" {
				return DiskFormat{Format: 1, Implicit: true}, nil
			}
		}
		return DiskFormat{Fresh: true}, nil
	}
	if err != nil {
		return DiskFormat{}, fmt.Errorf("update: data format: %w", err)
	}
	return parseDiskFormat(b, p)
}

func parseDiskFormat(b []byte, where string) (DiskFormat, error) {
	var f DiskFormat
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("update: data format record %s: %w", where, err)
	}
	if f.Format < 1 || (f.Migrating != nil && f.Migrating.From != f.Format) {
		return f, fmt.Errorf("update: data format record %s: format %d, migrating %+v", where, f.Format, f.Migrating)
	}
	return f, nil
}

// WriteDiskFormat replaces the data directory's format record atomically
// (a temporary file, synced, renamed, the folder synced; mode 0600 in a
// 0700 folder, as the store's node files).
func WriteDiskFormat(dataDir string, f DiskFormat) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := WriteNodeFile(dataDir, DataFormatFile, append(b, '\n')); err != nil {
		return fmt.Errorf("update: data format: %w", err)
	}
	return nil
}

// WriteNodeFile replaces the node file rel (a slash path under the data
// directory, such as DataFormatFile) with b atomically: a temporary file of
// mode 0600, synced, renamed, its folder (made 0700 if missing) synced.
func WriteNodeFile(dataDir, rel string, b []byte) error {
	dir := filepath.Join(dataDir, filepath.Dir(filepath.FromSlash(rel)))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := syncDir(dataDir); err != nil {
		return err
	}
	return writeAtomicPerm(dir, filepath.Base(rel), b, 0o600)
}

// ErrOlderFormat is returned for an image that writes an older data format
// than the data disk is in: it cannot serve that data.
var ErrOlderFormat = errors.New("the image writes an older data format than the data disk is in")

// ErrUnreadableFormat is returned for an image that writes a newer data
// format but cannot serve the disk's format as it is, or carries no
// migration from it.
var ErrUnreadableFormat = errors.New("the image cannot read the data disk's format")

// CheckFormat says whether an image whose manifest declares f (nil: an
// image from before formats, format 1) may boot on a data disk in format
// disk: not when it writes an older format (ErrOlderFormat), nor when it
// writes a newer one it can neither serve as it is nor migrate to
// (ErrUnreadableFormat). version names the image in the message. A disk
// format of 0 is a fresh disk: any image may boot on it.
func CheckFormat(disk int, f *app.DataFormat, version string) error {
	img := app.DataFormat{}
	if f != nil {
		img = *f
	}
	if version == "" {
		version = "the image"
	}
	if disk <= 0 {
		return nil // a fresh disk: any image
	}
	switch cur := img.Current(); {
	case cur < disk:
		return fmt.Errorf("update: %s writes data format %d; the data disk is in format %d, written by a newer image: %w (a migration is never undone)", version, cur, disk, ErrOlderFormat)
	case cur > disk:
		if !img.CanRead(disk) {
			return fmt.Errorf("update: %s writes data format %d and cannot serve format %d, the data disk's, during its test boot: %w", version, cur, disk, ErrUnreadableFormat)
		}
		if _, err := img.Path(disk); err != nil {
			return fmt.Errorf("update: %s: %v: %w", version, err, ErrUnreadableFormat)
		}
	}
	return nil
}

// MigrationFunc is one forward step of an app's data: it rewrites the data
// directory from one format to the next (its store through store.Update,
// with a commit message naming the step). It must be idempotent: after a
// crash in the middle it runs again from the start on what the crash left
// (for a store: read, rewrite what is still in the old form, commit;
// store.Update makes no commit when nothing changed).
type MigrationFunc func(ctx context.Context, dataDir string) error

// Migrate takes the data in dataDir to format f.Current(), one step at a
// time, with the steps' functions in funcs (by app.Migration.Name). The
// record is the journal: before a step, it says the step is under way
// (DiskFormat.Migrating); after it, the next format. A crash in the middle
// of a step leaves the record naming it, and the next Migrate runs it again
// (steps are idempotent: see MigrationFunc), then goes on. say logs each
// step by name. It returns the steps it finished.
func Migrate(ctx context.Context, dataDir string, f app.DataFormat, funcs map[string]MigrationFunc, say func(string, ...any)) ([]app.Migration, error) {
	cur, err := ReadDiskFormat(dataDir)
	if err != nil {
		return nil, err
	}
	if cur.Fresh {
		return nil, WriteDiskFormat(dataDir, DiskFormat{Format: f.Current()})
	}
	path, err := f.Path(cur.Format)
	if err != nil {
		return nil, fmt.Errorf("update: migrating the data: %w", err)
	}
	for _, m := range path {
		if funcs[m.Name] == nil {
			return nil, fmt.Errorf("update: migrating the data: the image declares migration %s (format %d to %d) but carries no code for it", m.Name, m.From, m.From+1)
		}
	}
	var done []app.Migration
	for i, m := range path {
		if i == 0 && cur.Migrating != nil {
			say("data migration %s (format %d to %d) was interrupted: running it again", cur.Migrating.Name, m.From, m.From+1)
		}
		step := m
		if err := WriteDiskFormat(dataDir, DiskFormat{Format: m.From, Migrating: &step}); err != nil {
			return done, err
		}
		say("data migration %s: format %d to %d", m.Name, m.From, m.From+1)
		if err := funcs[m.Name](ctx, dataDir); err != nil {
			return done, fmt.Errorf("update: data migration %s (format %d to %d): %w", m.Name, m.From, m.From+1, err)
		}
		if err := WriteDiskFormat(dataDir, DiskFormat{Format: m.From + 1}); err != nil {
			return done, err
		}
		say("data migration %s done: the data is in format %d", m.Name, m.From+1)
		done = append(done, m)
	}
	return done, nil
}

// DiskFormatOf reads the format record of a data disk image (an ext4 file
// system, not mounted: debugfs from e2fsprogs reads it). It is the host's
// view, for nymote update rollback.
func DiskFormatOf(disk string) (DiskFormat, error) {
	debugfs, err := exec.LookPath("debugfs")
	if err != nil {
		for _, d := range []string{"/sbin", "/usr/sbin"} {
			if _, serr := os.Stat(filepath.Join(d, "debugfs")); serr == nil {
				debugfs, err = filepath.Join(d, "debugfs"), nil
				break
			}
		}
	}
	if err != nil {
		return DiskFormat{}, fmt.Errorf("update: reading the data format of %s needs debugfs (e2fsprogs): %w", disk, err)
	}
	out, err := exec.Command(debugfs, "-R", "cat /"+DataFormatFile, disk).Output()
	if err != nil {
		return DiskFormat{}, fmt.Errorf("update: debugfs %s: %w", disk, err)
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		// debugfs says "File not found" on stderr and prints nothing:
		// format 1, or a fresh disk (nothing but lost+found).
		ls, err := exec.Command(debugfs, "-R", "ls -p /", disk).Output()
		if err != nil {
			return DiskFormat{}, fmt.Errorf("update: debugfs %s: %w", disk, err)
		}
		for _, l := range strings.Split(string(ls), "\n") {
			// /INODE/MODE/UID/GID/NAME/SIZE/
			f := strings.Split(l, "/")
			if len(f) >= 6 && f[5] != "." && f[5] != ".." && f[5] != "lost+found" && f[5] != "" {
				return DiskFormat{Format: 1, Implicit: true}, nil
			}
		}
		return DiskFormat{Fresh: true}, nil
	}
	return parseDiskFormat(out, disk+":/"+DataFormatFile)
}
