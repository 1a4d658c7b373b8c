package appliance

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// memoryShare is the part of the machine's memory (MemTotal) the Go
// runtime's soft memory limit is set to in an appliance. The rest is for
// what the Go heap does not count and the kernel needs: the initramfs
// (the root file system lives in RAM), the page cache of the data disk
// (git objects are read through it), the netstack's buffers outside the
// heap, goroutine stacks, and the kernel's own allocations. With 256 MiB
// (MemTotal about 240 MiB) the limit is about 168 MiB.
const memoryShare = 70

// memoryLimit computes the soft memory limit for an appliance from the
// contents of /proc/meminfo and the GOMEMLIMIT environment variable: when
// GOMEMLIMIT is set the runtime has applied it already and memoryLimit
// returns 0 (leave it), else memoryShare percent of MemTotal. why says
// where the figure comes from, for the console.
func memoryLimit(meminfo []byte, gomemlimit string) (limit int64, why string, err error) {
	if gomemlimit != "" {
		return 0, "GOMEMLIMIT=" + gomemlimit + " from the environment", nil
	}
	total, err := memTotal(meminfo)
	if err != nil {
		return 0, "", err
	}
	limit = total / 100 * memoryShare
	return limit, fmt.Sprintf("%d%% of MemTotal %s", memoryShare, mib(total)), nil
}

// memTotal returns MemTotal from /proc/meminfo, in bytes.
func memTotal(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "MemTotal" {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("appliance: /proc/meminfo: MemTotal %q: want a number of kB", strings.TrimSpace(v))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 || kb > 1<<40 {
			return 0, fmt.Errorf("appliance: /proc/meminfo: MemTotal %q: want a positive number of kB", f[0])
		}
		return kb << 10, nil
	}
	return 0, errors.New("appliance: /proc/meminfo has no MemTotal line")
}

// mib writes a number of bytes in MiB.
func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }
