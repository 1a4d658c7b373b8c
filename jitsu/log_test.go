package jitsu

import (
	"log/slog"
	"testing"

	"github.com/nymote/nymote/internal/testutil"
)

// testLogBuf returns a logger for a test and the buffer it writes to; the
// test shows the buffer with t.Log if it fails.
func testLogBuf(t testing.TB) (*slog.Logger, *testutil.Buffer) {
	lb := &testutil.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("log:\n" + lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func testLog(t testing.TB) *slog.Logger {
	l, _ := testLogBuf(t)
	return l
}
