package deptest

import (
	"slices"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"gvisor.dev/...", "gvisor.dev/gvisor/pkg/tcpip", true},
		{"gvisor.dev/...", "gvisor.dev", true},
		{"gvisor.dev/...", "gvisor.device/x", false},
		{"github.com/nymote/nymote/appliance", "github.com/nymote/nymote/appliance", true},
		{"github.com/nymote/nymote/appliance", "github.com/nymote/nymote/appliance/app", false},
	} {
		if got := Match(tc.pattern, tc.path); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

// TestList lists a package of this module and the standard library.
func TestList(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	pkgs := List(t, ".", nil, true, ".")
	var paths []string
	for _, p := range pkgs {
		paths = append(paths, p.ImportPath)
	}
	if !slices.Contains(paths, "encoding/json") || paths[len(paths)-1] != "github.com/nymote/nymote/internal/deptest" {
		t.Errorf("go list -deps . = %v, want encoding/json among them and this package last", paths)
	}
	if got := Matching(paths, "os/..."); !slices.Contains(got, "os/exec") || slices.Contains(got, "encoding/json") {
		t.Errorf("Matching(os/...) = %v", got)
	}
}
