package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	datadisk "github.com/nymote/nymote/disk"
)

// A code disk holds the app's program for boards that attach one
// (boards.Board.CodeDisk): the initramfs is memory the kernel never
// evicts, so a 26 MB program there is 26 MB a 64 MiB VM never gets back,
// while a program on a disk is page cache, dropped under memory pressure
// and read again on demand. The initramfs's /init is then the stub of
// appliance/codestub (about 1.8 MB, gone once it execs the program),
// built with the program's SHA-256: it mounts the disk read-only, refuses
// one holding another program, and execs the program.
//
// The code disk is ext4 because every kernel that mounts the data disk
// has ext4 (built into ours and gokrazy's), where squashfs and erofs would
// need a kernel option ours lack. It has no journal (it is never written)
// and a fixed identity (UUID, hash seed, times), so that the same program
// gives the same bytes.
const (
	// CodeDiskFile is the code disk among an image's files.
	CodeDiskFile = "code.img"
	// CodeDiskLabel is its ext4 label, which the stub looks for.
	CodeDiskLabel = "nymote-code"
	// codeStubPackage is the stub's package.
	codeStubPackage = "github.com/nymote/nymote/appliance/codestub"
	// codeDiskUUID and codeDiskHashSeed are the code disk's fixed file
	// system UUID and directory hash seed; codeDiskTime its time stamps
	// (1980-01-01, as the empty data disks of SD card images).
	codeDiskUUID     = "6e796d6f-7465-436f-6465-000000000001"
	codeDiskHashSeed = "6e796d6f-7465-436f-6465-000000000002"
	codeDiskTime     = 315532800
)

// codeDisk says whether the image's program goes on a code disk.
func (p *plan) codeDisk() bool { return p.board.CodeDisk && !p.opts.InitramfsProgram }

// programSum is the hex SHA-256 of a program.
func programSum(prog []byte) string {
	sum := sha256.Sum256(prog)
	return hex.EncodeToString(sum[:])
}

// buildStub compiles the code disk's stub for the board, with the SHA-256
// of prog baked in.
func buildStub(ctx context.Context, p *plan, prog []byte) ([]byte, error) {
	return goBuild(ctx, p, codeStubPackage, nil, " -X main.programSum="+programSum(prog))
}

// writeCodeDisk writes the code disk holding prog as /init into the
// image's folder. It needs mkfs.ext4 and debugfs (e2fsprogs), not root.
func writeCodeDisk(ctx context.Context, p *plan, prog []byte) error {
	mkfs, err := datadisk.LookTool("mkfs.ext4")
	if err != nil {
		return fmt.Errorf("images: the code disk: %w", err)
	}
	debugfs, err := datadisk.LookTool("debugfs")
	if err != nil {
		return fmt.Errorf("images: the code disk: %w", err)
	}
	tmp, err := os.MkdirTemp("", "nymote-code-")
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	init := filepath.Join(root, "init")
	if err := os.WriteFile(init, prog, 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	t := time.Unix(codeDiskTime, 0)
	for _, f := range []string{init, root} {
		if err := os.Chmod(f, 0o755); err != nil {
			return fmt.Errorf("images: %w", err)
		}
		if err := os.Chtimes(f, t, t); err != nil {
			return fmt.Errorf("images: %w", err)
		}
	}
	img := filepath.Join(tmp, CodeDiskFile)
	f, err := os.Create(img)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	err = f.Truncate(codeDiskSize(int64(len(prog))))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	// 4 KiB blocks, 16 inodes, no reserved blocks, no journal, no room
	// to grow: as small as the program allows.
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-L", CodeDiskLabel, "-U", codeDiskUUID, "-b", "4096", "-N", "16", "-m", "0",
		"-O", "^has_journal,^resize_inode", "-E", "root_owner=0:0,hash_seed="+codeDiskHashSeed+",lazy_itable_init=0,nodiscard",
		"-d", root, img)
	fake := fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", codeDiskTime)
	cmd.Env = append(os.Environ(), fake)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("images: the code disk: mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// mkfs.ext4 -d copies the file's inode change time, which no one
	// can set on the host's file: set it on the disk's.
	cmd = exec.CommandContext(ctx, debugfs, "-w", "-R", fmt.Sprintf("set_inode_field /init ctime @%d", codeDiskTime), img)
	cmd.Env = append(os.Environ(), fake)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("images: the code disk: debugfs: %v: %s", err, strings.TrimSpace(string(out)))
	}
	b, err := os.ReadFile(img)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return writeFile(p.opts.OutDir, CodeDiskFile, b, 0o644)
}

// codeDiskSize is the size of the code disk of a program of n bytes: the
// program, a tenth more and 1 MiB for the file system's own blocks (a
// block group's bitmaps and inode table, the program's extent tree, the
// root and lost+found), rounded up to 1 MiB.
func codeDiskSize(n int64) int64 {
	s := n + n/10 + 1<<20
	return (s + 1<<20 - 1) &^ (1<<20 - 1)
}
