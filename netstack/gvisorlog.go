//go:build linux

package netstack

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	gvlog "gvisor.dev/gvisor/pkg/log"
)

// gVisor logs through one process-wide logger (package
// gvisor.dev/gvisor/pkg/log) that writes to stderr. The first New points it
// at gvisorEmitter, which hands the records to the Logger of the most
// recently started Stack that is still open, and drops them when there is
// none: the package does not print.
var (
	gvisorLogOnce sync.Once
	gvisorLogger  atomic.Pointer[slog.Logger]
)

// gvisorEmitter implements gvlog.Emitter.
type gvisorEmitter struct{}

// Emit implements gvlog.Emitter. gVisor's levels are mapped one step down:
// it logs as warnings events that are routine for a busy server (a
// retransmitted SYN for a connection being set up, say).
func (gvisorEmitter) Emit(_ int, level gvlog.Level, _ time.Time, format string, v ...any) {
	l := gvisorLogger.Load()
	if l == nil {
		return
	}
	lvl := slog.LevelDebug
	if level == gvlog.Warning {
		lvl = slog.LevelInfo
	}
	ctx := context.Background()
	if !l.Enabled(ctx, lvl) {
		return
	}
	l.Log(ctx, lvl, fmt.Sprintf(format, v...), "from", "gvisor")
}

// routeGVisorLog sends gVisor's log to l until unrouteGVisorLog(l).
func routeGVisorLog(l *slog.Logger) {
	gvisorLogOnce.Do(func() { gvlog.SetTarget(gvisorEmitter{}) })
	gvisorLogger.Store(l)
}

func unrouteGVisorLog(l *slog.Logger) {
	gvisorLogger.CompareAndSwap(l, nil)
}
