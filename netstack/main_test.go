//go:build linux

package netstack_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: every
// Stack a test creates is closed by then.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
