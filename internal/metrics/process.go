package metrics

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"strconv"
	"strings"
)

// NewProcessCollector returns a collector of the process's own metrics,
// read from Linux's /proc/self at each scrape, under the names the
// Prometheus client's process collector gave them: process_cpu_seconds_total,
// process_open_fds, process_max_fds, process_virtual_memory_bytes,
// process_virtual_memory_max_bytes, process_resident_memory_bytes,
// process_start_time_seconds, process_network_receive_bytes_total and
// process_network_transmit_bytes_total. What cannot be read (no /proc) is
// left out.
func NewProcessCollector() Collector { return &procCollector{root: "/proc"} }

type procCollector struct {
	root string // "/proc"; tests use a fake tree
}

// userHZ is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on every
// Linux architecture Nymote runs on (it is fixed in the kernel's ABI).
const userHZ = 100

func (p *procCollector) Collect(emit func(Family)) {
	gauge := func(name, help string, x float64) {
		emit(Family{Name: name, Help: help, Type: TypeGauge, Metrics: []Metric{{Value: x}}})
	}
	counter := func(name, help string, x float64) {
		emit(Family{Name: name, Help: help, Type: TypeCounter, Metrics: []Metric{{Value: x}}})
	}
	if st, err := p.stat(); err == nil {
		counter("process_cpu_seconds_total", "User and system CPU time of the process, in seconds.", st.cpu)
		gauge("process_virtual_memory_bytes", "Virtual memory size of the process, in bytes.", st.vsize)
		gauge("process_resident_memory_bytes", "Resident memory size of the process, in bytes.", st.rss)
		if btime, err := p.bootTime(); err == nil {
			gauge("process_start_time_seconds", "When the process started, in seconds since 1970.", btime+st.start)
		}
	}
	if ents, err := os.ReadDir(p.root + "/self/fd"); err == nil {
		gauge("process_open_fds", "Open file descriptors.", float64(len(ents)))
	}
	if lim, err := p.limits(); err == nil {
		if v, ok := lim["Max open files"]; ok {
			gauge("process_max_fds", "Most open file descriptors allowed (soft limit).", v)
		}
		if v, ok := lim["Max address space"]; ok {
			gauge("process_virtual_memory_max_bytes", "Most virtual memory allowed, in bytes (soft limit).", v)
		}
	}
	if rx, tx, err := p.netDev(); err == nil {
		counter("process_network_receive_bytes_total", "Bytes received on the network interfaces the process sees.", rx)
		counter("process_network_transmit_bytes_total", "Bytes sent on the network interfaces the process sees.", tx)
	}
}

type procStat struct {
	cpu, vsize, rss, start float64 // seconds, bytes, bytes, seconds after boot
}

// stat reads /proc/self/stat: fields 14 and 15 (utime, stime), 22
// (starttime), 23 (vsize) and 24 (rss, in pages).
func (p *procCollector) stat() (procStat, error) {
	b, err := os.ReadFile(p.root + "/self/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses: the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, strconv.ErrSyntax
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	field := func(n int) float64 {
		if n-3 >= len(f) {
			err = strconv.ErrSyntax
			return 0
		}
		v, e := strconv.ParseUint(f[n-3], 10, 64)
		if e != nil {
			err = e
		}
		return float64(v)
	}
	st := procStat{
		cpu:   (field(14) + field(15)) / userHZ,
		start: field(22) / userHZ,
		vsize: field(23),
		rss:   field(24) * float64(os.Getpagesize()),
	}
	return st, err
}

// bootTime reads btime (seconds since 1970) from /proc/stat.
func (p *procCollector) bootTime() (float64, error) {
	b, err := os.ReadFile(p.root + "/stat")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, strconv.ErrSyntax
}

// limits reads the soft limits of /proc/self/limits by name ("Max open
// files"); unlimited is the largest uint64, as the kernel's RLIM_INFINITY.
func (p *procCollector) limits() (map[string]float64, error) {
	b, err := os.ReadFile(p.root + "/self/limits")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	// "Limit                     Soft Limit           Hard Limit           Units"
	// "Max open files            1024                 524288               files"
	for line := range strings.Lines(string(b)) {
		if len(line) < 26 {
			continue
		}
		name := strings.TrimSpace(line[:26])
		f := strings.Fields(line[26:])
		if len(f) == 0 {
			continue
		}
		if f[0] == "unlimited" {
			m[name] = math.MaxUint64
		} else if v, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			m[name] = float64(v)
		}
	}
	return m, nil
}

// netDev sums the received and sent bytes of every interface in
// /proc/self/net/dev (of the process's network namespace).
func (p *procCollector) netDev() (rx, tx float64, err error) {
	fh, err := os.Open(p.root + "/self/net/dev")
	if err != nil {
		return 0, 0, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		_, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // the two header lines
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			return 0, 0, strconv.ErrSyntax
		}
		r, err1 := strconv.ParseUint(f[0], 10, 64)
		t, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, strconv.ErrSyntax
		}
		rx += float64(r)
		tx += float64(t)
	}
	return rx, tx, sc.Err()
}
