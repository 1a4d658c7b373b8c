package appliance

import (
	"strings"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	// /proc/meminfo of a 256 MiB QEMU guest, shortened.
	const vm256 = "MemTotal:         238452 kB\nMemFree:          201256 kB\nMemAvailable:     199100 kB\nBuffers:               0 kB\n"
	tests := []struct {
		name       string
		meminfo    string
		gomemlimit string
		want       int64
		wantWhy    string
		wantErr    string
	}{
		{"256 MiB VM", vm256, "", 238452 << 10 / 100 * 70, "70% of MemTotal 232 MiB; MemAvailable 194 MiB at start", ""},
		{"64 MiB VM, no MemAvailable", "MemFree: 1 kB\nMemTotal: 57344 kB\n", "", 57344<<10 - 24<<20, "MemTotal 56 MiB less 24 MiB", ""},
		// The mail appliance at 64 MiB with its program on a code disk:
		// 70% (37 MiB) left too little for the program's code in use.
		{"64 MiB VM, code disk", "MemTotal: 53248 kB\nMemAvailable: 43008 kB\n", "", 53248<<10 - 24<<20, "MemTotal 52 MiB less 24 MiB; MemAvailable 42 MiB at start", ""},
		{"96 MiB VM", "MemTotal: 86016 kB\nMemAvailable: 75776 kB\n", "", 86016 << 10 / 100 * 70, "70% of MemTotal 84 MiB; MemAvailable 74 MiB", ""},
		{"tiny VM", "MemTotal: 20480 kB\n", "", 20480 << 10 / 100 * 10, "MemTotal 20 MiB less 24 MiB", ""},
		// The mail appliance at 64 MiB: its initramfs takes 14 MiB of RAM.
		{"64 MiB VM, large initramfs", "MemTotal: 53248 kB\nMemAvailable: 34816 kB\n", "", 53248<<10 - 24<<20, "MemTotal 52 MiB less 24 MiB; MemAvailable 34 MiB", ""},
		{"64 MiB VM, larger initramfs", "MemTotal: 53248 kB\nMemAvailable: 30720 kB\n", "", 30720<<10 - 53248<<10/100*10, "MemAvailable 30 MiB at start less 10% of MemTotal 52 MiB", ""},
		{"almost nothing available", "MemTotal: 53248 kB\nMemAvailable: 2048 kB\n", "", 53248 << 10 / 100 * 10, "MemAvailable 2 MiB", ""},
		{"bad MemAvailable", "MemTotal: 53248 kB\nMemAvailable: x kB\n", "", 0, "", "MemAvailable"},
		{"GOMEMLIMIT wins", vm256, "100MiB", 0, "GOMEMLIMIT=100MiB", ""},
		{"no MemTotal", "MemFree: 1 kB\n", "", 0, "", "no MemTotal line"},
		{"bad unit", "MemTotal: 238452 MB\n", "", 0, "", "number of kB"},
		{"not a number", "MemTotal: lots kB\n", "", 0, "", "positive number"},
		{"zero", "MemTotal: 0 kB\n", "", 0, "", "positive number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why, err := memoryLimit([]byte(tc.meminfo), tc.gomemlimit)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || !strings.Contains(why, tc.wantWhy) {
				t.Errorf("got %d (%s), want %d (%s)", got, why, tc.want, tc.wantWhy)
			}
		})
	}
	// The figure for a 256 MiB VM leaves room for the kernel and the
	// page cache, and is most of the machine.
	got, _, _ := memoryLimit([]byte(vm256), "")
	if got < 150<<20 || got > 180<<20 {
		t.Errorf("256 MiB VM: limit %s, want between 150 and 180 MiB", mib(got))
	}
}
