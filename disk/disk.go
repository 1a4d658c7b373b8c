// Package disk creates and reads the data disks of Nymote appliances: a
// raw image holding an ext4 file system (labelled nymote-data) with the
// appliance's data directory (the store's bare git repository and the
// rest), as the appliance's runtime mounts it. It runs e2fsprogs
// (mkfs.ext4, debugfs, dumpe2fs) and needs no root. The host tool's
// nymote disk commands and the image builder (the empty data partition of
// an SD card image) use it; errors start with "disk:".
package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nymote/nymote/store"
)

// ErrBadDisk is wrapped by the errors of a data disk that cannot be read.
var ErrBadDisk = errors.New("not a readable data disk")

// ParseSize parses a disk size such as 1G, 512M or 1073741824 (bytes).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B")
	t = strings.TrimSuffix(t, "I")
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, t[:len(t)-1]
	case strings.HasSuffix(t, "T"):
		mult, t = 1<<40, t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional K, M, G or T suffix", s)
	}
	return n * mult, nil
}

// Create writes a data disk image of size bytes at path: an ext4 file
// system (labelled nymote-data, with a journal so that it survives power
// loss) holding the contents of dataDir (its store.git, as the appliance
// mounts the disk as its data directory). It needs mkfs.ext4 (e2fsprogs),
// not root. The image file is sparse.
func Create(ctx context.Context, dataDir, path string, size int64) (err error) {
	if fi, err := os.Stat(dataDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("disk: data directory %s: not a folder (%v)", dataDir, err)
	}
	return create(ctx, dataDir, path, size)
}

// Fixed identity of the empty data disks of SD card images, which are
// byte-reproducible: file system UUID, directory hash seed and time stamps
// (1980-01-01, as on the FAT boot partition).
const (
	emptyDiskUUID     = "6e796d6f-7465-4461-7461-000000000001"
	emptyDiskHashSeed = "6e796d6f-7465-4461-7461-000000000002"
	emptyDiskTime     = "315532800"
)

// CreateEmpty writes a data disk image of size bytes at path holding an
// empty file system with a fixed identity, so that the same size gives the
// same bytes (the empty data partition of a reproducible SD card image);
// the appliance fills it on first boot.
func CreateEmpty(ctx context.Context, path string, size int64) error {
	return create(ctx, "", path, size)
}

// create is Create; with dataDir "" it is CreateEmpty.
func create(ctx context.Context, dataDir, path string, size int64) (err error) {
	if size < 16<<20 {
		return fmt.Errorf("disk: size %d bytes: want at least 16 MiB", size)
	}
	mkfs, err := LookTool("mkfs.ext4")
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("disk: %s exists; remove it first (it may hold data)", path)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("disk: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	args := []string{"-q", "-F", "-L", "nymote-data", "-E", "root_owner=0:0", "-d", dataDir, path}
	var env []string
	if dataDir == "" {
		args = []string{"-q", "-F", "-L", "nymote-data", "-U", emptyDiskUUID, "-E", "root_owner=0:0,hash_seed=" + emptyDiskHashSeed, path}
		env = []string{"E2FSPROGS_FAKE_TIME=" + emptyDiskTime}
	}
	cmd := exec.CommandContext(ctx, mkfs, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("disk: mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Export copies the files of data disk image path (the appliance's
// data directory: store.git and the rest) into dir, which must not exist or
// be empty, without root (debugfs). The disk must have been cleanly
// unmounted (the appliance powered off), or its journal replayed (e2fsck)
// after a power cut; the store's own commit log is then replayed in the
// copy.
func Export(ctx context.Context, path, dir string) error {
	debugfs, err := LookTool("debugfs")
	if err != nil {
		return err
	}
	dumpe2fs, err := LookTool("dumpe2fs")
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	out, err := exec.CommandContext(ctx, dumpe2fs, "-h", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("disk: %s: %w: %s", path, ErrBadDisk, firstLine(string(out)))
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Filesystem features:") && strings.Contains(l, "needs_recovery") {
			return fmt.Errorf("disk: %s was not cleanly unmounted (its journal needs replaying): boot the appliance and power it off, or run e2fsck -fy on it", path)
		}
	}
	if es, err := os.ReadDir(dir); err == nil && len(es) > 0 {
		return fmt.Errorf("disk: %s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	ls, err := exec.CommandContext(ctx, debugfs, "-R", "ls -p /", path).Output()
	if err != nil {
		return fmt.Errorf("disk: debugfs ls: %w", err)
	}
	var script bytes.Buffer
	for _, l := range strings.Split(string(ls), "\n") {
		// /inode/mode/uid/gid/name/size/
		f := strings.Split(l, "/")
		if len(f) < 7 {
			continue
		}
		name := f[5]
		if name == "" || name == "." || name == ".." || name == "lost+found" {
			continue
		}
		fmt.Fprintf(&script, "rdump \"/%s\" \"%s\"\n", name, dir)
	}
	cmdFile := filepath.Join(dir, ".debugfs-cmds")
	if err := os.WriteFile(cmdFile, script.Bytes(), 0o600); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	defer os.Remove(cmdFile)
	cmd := exec.CommandContext(ctx, debugfs, "-f", cmdFile, path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("disk: debugfs rdump: %v: %s", err, stderr.String())
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		// debugfs reports rdump failures on stderr but exits 0; its
		// banner ("debugfs 1.47.0 ...") is not an error.
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debugfs ") {
			return fmt.Errorf("disk: debugfs rdump: %s", l)
		}
	}
	// After a power cut the store's commit log may hold commits whose
	// files were not yet written back (store/wal.go): opening the store
	// replays it, so that stock git sees every acknowledged commit.
	if fi, err := os.Stat(filepath.Join(dir, store.RepoDir, store.CommitLogName)); err == nil && fi.Size() > 0 {
		s, err := store.OpenData(dir, store.Options{})
		if err != nil {
			return fmt.Errorf("disk: the exported store: %w", err)
		}
		if err := s.Close(); err != nil {
			return fmt.Errorf("disk: the exported store: %w", err)
		}
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// LookTool finds an e2fsprogs program such as e2fsck (in /sbin on Debian,
// which is not on every user's $PATH).
func LookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("disk: %s not found: install e2fsprogs (apt-get install e2fsprogs)", name)
}
