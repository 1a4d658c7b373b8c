package caldav

import (
	"context"
	"fmt"
	"net/http"

	"github.com/nymote/nymote/apps/internal/dav"
)

// A calendar-query costs its filter times the objects it is evaluated
// against times the occurrences each time-range expands, so a short body
// can ask for minutes of CPU. The filter is capped in size and depth before
// any object is read, and the evaluation runs on a work budget that the
// request's context can also end (the client went away).
const (
	// maxFilterElements bounds the elements of a CALDAV:filter (comp-,
	// prop- and param-filters, time-ranges, text-matches, is-not-defined).
	maxFilterElements = 64
	// maxFilterDepth bounds its nesting below CALDAV:filter
	// (VCALENDAR > VEVENT > VALARM > prop-filter > param-filter >
	// text-match is 6).
	maxFilterDepth = 8
	// maxQueryWork bounds the work units of one REPORT: a filter element
	// evaluated against a component, or an occurrence stepped through.
	maxQueryWork = 2_000_000
	// ctxEvery is how many units pass between looks at the context.
	ctxEvery = 1024
)

// work is the budget of one request. The zero of *work (nil) is
// unbounded: it is what the exported helpers (Instances, Expand,
// MatchFilter) and object validation run on, whose expansions are bounded
// per rule (checkRule, maxSteps).
type work struct {
	ctx  context.Context
	left int64
	tick int
	err  error
	// render: the budget of a request's renderings (calendar-data), whose
	// message says what to narrow.
	render bool
}

func newWork(ctx context.Context, units int64) *work {
	return &work{ctx: ctx, left: units}
}

// workKey is the context key of a request's rendering budget.
type workKey struct{}

// RenderContext returns ctx with a work budget for the renderings of one
// request (dav.ContextRenderer): every calendar-data with expand of a
// calendar-multiget, sync-collection, calendar-query or PROPFIND steps
// through its occurrences on it, so that the request is bounded as a whole
// (maxQueryWork units), and stops when ctx ends.
func (k *Kind) RenderContext(ctx context.Context) context.Context {
	w := newWork(ctx, maxQueryWork)
	w.render = true
	return context.WithValue(ctx, workKey{}, w)
}

// renderWork is ctx's rendering budget; a context without one (not from
// RenderContext) gets a budget of its own.
func renderWork(ctx context.Context) *work {
	if w, ok := ctx.Value(workKey{}).(*work); ok {
		return w
	}
	w := newWork(ctx, maxQueryWork)
	w.render = true
	return w
}

// spend takes n units; once the budget is spent or the context is done it
// returns an error (a *dav.Error for the budget), and keeps returning it.
func (w *work) spend(n int64) error {
	if w == nil {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	w.left -= n
	if w.left < 0 && w.render {
		w.err = dav.Errorf(http.StatusInsufficientStorage, dav.Name(dav.NSDAV, "number-of-matches-within-limits"),
			"the request needs more than %d units of work to expand the recurrences of its calendar-data (objects times occurrences stepped through); narrow the expand range or ask for fewer objects at a time", maxQueryWork)
		return w.err
	}
	if w.left < 0 {
		w.err = dav.Errorf(http.StatusInsufficientStorage, dav.Name(dav.NSDAV, "number-of-matches-within-limits"),
			"the query needs more than %d units of work (filter elements times objects times occurrences); narrow its time-range or simplify its filter", maxQueryWork)
		return w.err
	}
	if w.tick += int(n); w.tick >= ctxEvery && w.ctx != nil {
		w.tick = 0
		if err := w.ctx.Err(); err != nil {
			w.err = fmt.Errorf("caldav: query: %w", err)
			return w.err
		}
	}
	return nil
}

// failure is the error that ended the budget, if any.
func (w *work) failure() error {
	if w == nil {
		return nil
	}
	return w.err
}

// checkFilter refuses a filter with more than maxFilterElements elements
// or nested deeper than maxFilterDepth.
func checkFilter(filter *dav.Node) error {
	if filter == nil {
		return nil
	}
	count := 0
	var walk func(n *dav.Node, depth int) error
	walk = func(n *dav.Node, depth int) error {
		if depth > maxFilterDepth {
			return dav.Errorf(http.StatusForbidden, dav.Name(dav.NSCalDAV, "supported-filter"),
				"the filter nests deeper than %d elements", maxFilterDepth)
		}
		for _, c := range n.Children {
			if count++; count > maxFilterElements {
				return dav.Errorf(http.StatusForbidden, dav.Name(dav.NSCalDAV, "supported-filter"),
					"the filter has more than %d elements", maxFilterElements)
			}
			if err := walk(c, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(filter, 0)
}
