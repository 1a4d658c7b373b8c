package main

import (
	"slices"
	"strings"
	"testing"
)

// TestEnviron: the stub's second start hashes with cpu.sha=off added to
// the GODEBUG the kernel gave (if any), and the program gets the
// environment exactly as the kernel gave it.
func TestEnviron(t *testing.T) {
	for _, tc := range []struct {
		env       []string
		stubDebug string
	}{
		{[]string{"HOME=/", "TERM=linux"}, "cpu.sha=off"},
		{[]string{"HOME=/", "GODEBUG=gctrace=1", "GOMEMLIMIT=24MiB"}, "gctrace=1,cpu.sha=off"},
	} {
		stub := stubEnviron(tc.env)
		var debugs []string
		for _, e := range stub {
			if v, ok := strings.CutPrefix(e, "GODEBUG="); ok {
				debugs = append(debugs, v)
			}
		}
		if len(debugs) != 1 || debugs[0] != tc.stubDebug {
			t.Errorf("%q: the stub's GODEBUG %q, want just %q", tc.env, debugs, tc.stubDebug)
		}
		prog := programEnviron(stub)
		slices.Sort(prog)
		want := slices.Sorted(slices.Values(tc.env))
		if !slices.Equal(prog, want) {
			t.Errorf("%q: the program's environment %q", tc.env, prog)
		}
	}
}

// TestMiB formats sizes as the console line shows them.
func TestMiB(t *testing.T) {
	for n, want := range map[int64]string{0: "0.0 MiB", 26480766: "25.3 MiB", 1 << 20: "1.0 MiB", 1<<20 - 1: "1.0 MiB"} {
		if got := mib(n); got != want {
			t.Errorf("mib(%d) = %q, want %q", n, got, want)
		}
	}
}
