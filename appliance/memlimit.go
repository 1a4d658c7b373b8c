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
// (the root file system lives in RAM), the page cache of the program on
// a code disk (the pages of its code in use) and of the data disk
// (git objects are read through it), the netstack's buffers outside the
// heap, goroutine stacks, and the kernel's own allocations. With 256 MiB
// (MemTotal about 240 MiB) the limit is about 168 MiB.
const memoryShare = 70

// smallReserve is the memory kept out of the limit at the least: at small
// sizes memoryShare leaves too little for what the heap does not count. A
// program on a code disk (package images) is 25 MiB of page cache that
// MemAvailable counts as free, but the pages of its code in use must stay
// in memory: a 64 MiB VM (MemTotal 52 MiB) at 70% (a 37 MiB limit) served
// a 50,000-message mailbox with the heap at its limit and the kernel
// evicting the program's code and reading it back from the code disk
// again and again, the clients getting no answer (TestBootMail64MiB).
// MemTotal less smallReserve is the lower figure below MemTotal 80 MiB
// (a VM of about 92 MiB): 28 MiB at 64 MiB.
const smallReserve = 24 << 20

// availableReserve is the part of MemTotal kept back from what is
// available when the appliance starts (MemAvailable), for the kernel's
// allocations and the data disk's page cache. In a small VM an
// initramfs holding the program, which stays in RAM, is a large part of
// the machine: at 64 MiB (MemTotal about 52 MiB, 26 MiB of it the mail
// program in the root file system) memoryShare of MemTotal would be more
// than the process can ever have, and the kernel would run out of memory
// before the Go runtime collected. Boards whose program is on a code disk
// (package images) have it in the page cache instead, which MemAvailable
// counts: there memoryShare or smallReserve applies (28 MiB of 52).
const availableReserve = 10

// memoryLimit computes the soft memory limit for an appliance from the
// contents of /proc/meminfo and the GOMEMLIMIT environment variable: when
// GOMEMLIMIT is set the runtime has applied it already and memoryLimit
// returns 0 (leave it), else memoryShare percent of MemTotal, or, when
// less, MemTotal less smallReserve, or MemAvailable less availableReserve
// percent of MemTotal. why says where the figure comes from, for the
// console.
func memoryLimit(meminfo []byte, gomemlimit string) (limit int64, why string, err error) {
	if gomemlimit != "" {
		return 0, "GOMEMLIMIT=" + gomemlimit + " from the environment", nil
	}
	total, err := memInfo(meminfo, "MemTotal")
	if err != nil {
		return 0, "", err
	}
	limit = total / 100 * memoryShare
	why = fmt.Sprintf("%d%% of MemTotal %s", memoryShare, mib(total))
	if r := total - smallReserve; r < limit {
		limit = max(r, total/100*10) // a floor: the runtime needs something
		why = fmt.Sprintf("MemTotal %s less %s", mib(total), mib(smallReserve))
	}
	avail, err := memInfo(meminfo, "MemAvailable")
	if errors.Is(err, errNoLine) {
		return limit, why, nil // a kernel before 3.14
	}
	if err != nil {
		return 0, "", err
	}
	if a := avail - total/100*availableReserve; a < limit {
		limit = max(a, total/100*10) // a floor: the runtime needs something
		why = fmt.Sprintf("MemAvailable %s at start less %d%% of MemTotal %s", mib(avail), availableReserve, mib(total))
	} else {
		why += fmt.Sprintf("; MemAvailable %s at start", mib(avail))
	}
	return limit, why, nil
}

var errNoLine = errors.New("no such line")

// memInfo returns the value of key in /proc/meminfo, in bytes.
func memInfo(meminfo []byte, key string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("appliance: /proc/meminfo: %s %q: want a number of kB", key, strings.TrimSpace(v))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 || kb > 1<<40 {
			return 0, fmt.Errorf("appliance: /proc/meminfo: %s %q: want a positive number of kB", key, f[0])
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("appliance: /proc/meminfo has no %s line: %w", key, errNoLine)
}

// mib writes a number of bytes in MiB.
func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }
