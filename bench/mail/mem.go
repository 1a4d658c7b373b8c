package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runMem (-mem 1000,5000,...) measures memory as a mailbox grows: four
// clients APPEND 12 KB messages to one INBOX that a fifth holds selected,
// and at each count the
// server's resident memory is read from /proc: for Nymote the one process,
// for Dovecot its whole process tree (master, auth, login and imap
// processes), as the sum of RSS and the sum of PSS (shared pages counted
// once, split among the processes that map them).
func runMem(counts string, keep bool, only string, nymoteFlags []string) error {
	if only != "" && only != "nymote" && only != "dovecot" {
		return fmt.Errorf("-only %q: want nymote or dovecot", only)
	}
	var at []int
	for _, f := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || (len(at) > 0 && n <= at[len(at)-1]) {
			return fmt.Errorf("-mem %q: want ascending counts of messages, comma-separated", counts)
		}
		at = append(at, n)
	}
	tmp, err := os.MkdirTemp("", "nymote-mail-mem-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(tmp)
	} else {
		fmt.Fprintln(os.Stderr, "keeping", tmp)
	}
	os.Chmod(tmp, 0o755)
	msg := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"), 12*1024/74)
	mk := func(i int) []byte {
		return append(fmt.Appendf(nil, "From: Sender <sender%02d@example.net>\r\nTo: bench@example.org\r\nSubject: memory %d\r\nMessage-ID: <%d.mem@example.net>\r\nContent-Type: text/plain\r\n\r\n", i%20, i, i), msg...)
	}

	dmem := make([]memFigure, len(at))
	nmem := make([]memFigure, len(at))
	if only != "nymote" {
		dovecotAddr, stopDovecot, dovecotPID, err := startDovecot(filepath.Join(tmp, "dovecot"), nil)
		if err != nil {
			return fmt.Errorf("dovecot: %w", err)
		}
		defer stopDovecot()
		fmt.Fprintln(os.Stderr, "dovecot ...")
		if dmem, err = memPhases(dovecotAddr, dovecotPID, at, mk); err != nil {
			return fmt.Errorf("dovecot: %w", err)
		}
		stopDovecot()
	}
	if only != "dovecot" {
		nymoteAddr, stopNymote, nymotePID, err := startNymote(filepath.Join(tmp, "nymote"), nymoteFlags, nil)
		if err != nil {
			return fmt.Errorf("nymote: %w", err)
		}
		defer stopNymote()
		fmt.Fprintf(os.Stderr, "nymote (pid %d) ...\n", nymotePID)
		if nmem, err = memPhases(nymoteAddr, nymotePID, at, mk); err != nil {
			return fmt.Errorf("nymote: %w", err)
		}
	}
	host, _ := os.Hostname()
	fmt.Printf("memory after APPENDs of 12 KB messages (4 clients), %s, %s, %d CPUs, nymote flags %q\n\n", time.Now().UTC().Format("2006-01-02"), host, runtime.NumCPU(), strings.Join(nymoteFlags, " "))
	fmt.Println("| messages | Dovecot RSS (sum) | Dovecot PSS (sum) | Nymote RSS | Nymote PSS |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for i, n := range at {
		d, m := dmem[i], nmem[i]
		fmt.Printf("| %d | %.1f MB | %.1f MB | %.1f MB | %.1f MB |\n", n, d.rss, d.pss, m.rss, m.pss)
	}
	return nil
}

type memFigure struct{ rss, pss float64 } // MB

// memPhases APPENDs with four clients up to each count and reads the
// memory of pid's process tree there.
func memPhases(addr string, pid int, at []int, mk func(int) []byte) ([]memFigure, error) {
	const clients = 4
	// A client holds INBOX selected throughout, as a mail client does;
	// the memory is read after its NOOP has caught up with the APPENDs
	// (Dovecot's imap process for it is in the sums).
	obs, err := login(addr)
	if err != nil {
		return nil, err
	}
	defer obs.Close()
	if _, err := obs.Select("INBOX", nil).Wait(); err != nil {
		return nil, err
	}
	var out []memFigure
	done := 0
	for _, n := range at {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for k := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := login(addr)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				for i := done + k; i < n; i += clients {
					m := mk(i)
					cmd := c.Append("INBOX", int64(len(m)), nil)
					cmd.Write(m)
					cmd.Close()
					if _, err := cmd.Wait(); err != nil {
						errs <- fmt.Errorf("APPEND %d: %w", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return nil, err
		}
		if err := obs.Noop().Wait(); err != nil {
			return nil, err
		}
		f := treeMemory(pid)
		fmt.Fprintf(os.Stderr, "  %d messages (%d in %v): RSS %.1f MB, PSS %.1f MB\n", n, n-done, time.Since(start).Round(time.Millisecond), f.rss, f.pss)
		out = append(out, f)
		done = n
	}
	return out, nil
}

// treeMemory sums VmRSS and Pss over pid and its descendants.
func treeMemory(pid int) memFigure {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	var m memFigure
	var walk func(int)
	walk = func(p int) {
		m.rss += procKB(fmt.Sprintf("/proc/%d/status", p), "VmRSS:") / 1024
		m.pss += procKB(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss:") / 1024
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	return m
}

// procKB reads the "key: n kB" line of a /proc file.
func procKB(path, key string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseFloat(f[0], 64)
				return v
			}
		}
	}
	return 0
}
