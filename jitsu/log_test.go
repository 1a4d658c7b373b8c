package jitsu

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// logBuf collects log output of a test and shows it with t.Log.
type logBuf struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	return len(p), nil
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogBuf(t testing.TB) (*slog.Logger, *logBuf) {
	lb := &logBuf{t: t}
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
