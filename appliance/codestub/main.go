// Command codestub is the /init of an image whose program is on a code
// disk (see package images): a read-only ext4 disk image, labelled
// nymote-code, holding the appliance's program as /init. The initramfs
// lives in memory the kernel can never evict (ramfs); a program on a disk
// is read into the page cache, whose pages the kernel drops under memory
// pressure and reads again when needed. A 26 MB program in the initramfs
// takes 26 MB of a 64 MiB VM for good; on a code disk it takes what its
// running code needs at the moment.
//
// As PID 1 the stub mounts devtmpfs and sysfs, finds the block device
// whose ext4 label is nymote-code (waiting a while for the disk to
// appear), mounts it read-only on /code, checks that the SHA-256 of
// /code/init is the one baked into the stub when the image was built
// (programSum, set with -ldflags -X), unmounts what it mounted but
// /code, removes itself from the initramfs (freeing its pages) and execs
// /code/init with its own arguments and environment: the program then
// boots the appliance as if it had been /init. A missing code disk or
// one holding another program is refused with a line on the console, and
// the VM is powered off: the stub never runs a program other than the one
// its image was built with.
//
// It uses only the standard library and no fmt, so that it stays small
// (about 1.5 MB): it is the one part of the program that stays in the
// initramfs until it execs the program.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nymote/nymote/internal/ext4label"
)

// programSum is the hex SHA-256 of the program on the image's code disk,
// set at build time (-ldflags -X main.programSum=HEX).
var programSum string

const (
	// label is the ext4 label of a code disk.
	label = "nymote-code"
	// mountPoint is where the code disk is mounted; program is the
	// program on it.
	mountPoint = "/code"
	program    = mountPoint + "/init"
	// wait bounds the wait for the code disk to appear.
	wait = 10 * time.Second
)

func main() {
	if os.Getpid() != 1 {
		// Run by another name (the kernel's /sbin/poweroff is a link to
		// the program itself, not to the stub): hand over if the
		// program is there.
		if err := syscall.Exec(program, os.Args, os.Environ()); err != nil {
			say("cannot run " + program + ": " + err.Error())
		}
		os.Exit(1)
	}
	if os.Getenv(stubEnv) == "" {
		reexec() // returns only on failure
	}
	if err := boot(); err != nil {
		say(err.Error() + "; powering off")
		syscall.Sync()
		syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
		// Not reached unless reboot(2) failed: PID 1 exiting panics
		// the kernel (panic=-1 then reboots it).
		os.Exit(1)
	}
}

// stubEnv marks the stub's second start (reexec); it holds the
// environment's GODEBUG as the kernel gave it, with a "=" before it.
const stubEnv = "NYMOTE_CODESTUB"

// reexec starts the stub again with the SHA-NI instructions turned off
// for its hashing (GODEBUG=cpu.sha=off): under QEMU's TCG, where the
// boot tests and nymote run without KVM boot, they are emulated more
// slowly than the AVX2 code Go uses without them (25 MiB in 1.0 to 2.5 s
// against 1.6 to 2.9 s, on a loaded 2-core host); on hardware both take
// a few milliseconds. The program execed afterwards gets the environment
// as it was (programEnviron).
func reexec() {
	err := syscall.Exec("/init", os.Args, stubEnviron(os.Environ()))
	say("restarting the stub: " + err.Error() + "; going on with SHA-NI")
	os.Setenv(stubEnv, "=")
}

// stubEnviron is the environment of the stub's second start: env with
// cpu.sha=off added to GODEBUG, and the GODEBUG the kernel gave in
// stubEnv.
func stubEnviron(env []string) []string {
	var out []string
	old := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "GODEBUG="); ok {
			old = v
			continue
		}
		out = append(out, e)
	}
	return append(out, stubEnv+"=="+old, "GODEBUG="+strings.TrimPrefix(old+",cpu.sha=off", ","))
}

// programEnviron is the environment the kernel gave the stub, from the
// stub's env (see stubEnviron): without stubEnv, GODEBUG as it was.
func programEnviron(env []string) []string {
	var out []string
	old := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, stubEnv+"="); ok {
			old = strings.TrimPrefix(v, "=")
			continue
		}
		if strings.HasPrefix(e, "GODEBUG=") {
			continue
		}
		out = append(out, e)
	}
	if old != "" {
		out = append(out, "GODEBUG="+old)
	}
	return out
}

func say(s string) { os.Stdout.WriteString("nymote: code disk: " + s + "\n") }

// boot mounts the code disk, checks its program and execs it; it returns
// only on failure.
func boot() error {
	if programSum == "" {
		return errors.New("this stub was built without the program's SHA-256 (programSum)")
	}
	for _, m := range []struct{ src, dir, fs string }{{"devtmpfs", "/dev", "devtmpfs"}, {"sysfs", "/sys", "sysfs"}} {
		os.MkdirAll(m.dir, 0o755)
		if err := syscall.Mount(m.src, m.dir, m.fs, 0, ""); err != nil {
			return errors.New("mounting " + m.dir + ": " + err.Error())
		}
	}
	dev, err := find()
	if err != nil {
		return err
	}
	os.MkdirAll(mountPoint, 0o755)
	if err := syscall.Mount(dev, mountPoint, "ext4", syscall.MS_RDONLY|syscall.MS_NOATIME|syscall.MS_NODEV|syscall.MS_NOSUID, ""); err != nil {
		return errors.New("mounting " + dev + " (ext4, read-only) on " + mountPoint + ": " + err.Error())
	}
	start := time.Now()
	sum, n, err := fileSum(program)
	if err != nil {
		return errors.New("reading the program on " + dev + ": " + err.Error())
	}
	if sum != programSum {
		return errors.New("the code disk " + dev + " holds a program with SHA-256 " + sum + ", this image was built with " + programSum +
			": refusing to run it (attach the code.img built with this image's initramfs)")
	}
	say(dev + ": " + program + " checked (SHA-256 of " + mib(n) + " in " + time.Since(start).Round(time.Millisecond).String() + ")")
	// The program mounts /dev and /sys itself, as an /init does.
	for _, d := range []string{"/sys", "/dev"} {
		syscall.Unmount(d, syscall.MNT_DETACH)
	}
	// The stub's pages in the initramfs are freed once it execs.
	os.Remove("/init")
	return errors.New("exec " + program + ": " + syscall.Exec(program, append([]string{"/init"}, os.Args[1:]...), programEnviron(os.Environ())).Error())
}

// find waits (up to wait) for the block device labelled nymote-code.
func find() (string, error) {
	deadline := time.Now().Add(wait)
	for {
		if dev := labelled(); dev != "" {
			return dev, nil
		}
		if time.Now().After(deadline) {
			return "", errors.New("no block device holds the code disk (an ext4 file system labelled " + label + ", the image's code.img) after " +
				wait.String() + ": attach it read-only next to the data disk (nymote run and jitsu do)")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// labelled returns the first whole disk (by name) whose ext4 label is
// nymote-code, or "".
func labelled() string {
	ents, _ := os.ReadDir("/sys/class/block")
	var names []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		if _, err := os.Stat(filepath.Join("/sys/class/block", n, "partition")); err == nil {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if ext4label.Read("/dev/"+n) == label {
			return "/dev/" + n
		}
	}
	return ""
}

// fileSum is the hex SHA-256 of the file at path and its size.
func fileSum(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 256<<10))
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// mib formats a byte count in MiB with one decimal.
func mib(n int64) string {
	tenths := (n*10 + 1<<19) >> 20
	return strconv.FormatInt(tenths/10, 10) + "." + strconv.FormatInt(tenths%10, 10) + " MiB"
}
