//go:build linux

package tunnel_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: a closed
// Node stops WireGuard, its name server, its join endpoint and its state
// watcher.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
