// Package metrics is the appliances' Prometheus metrics: counters, counter
// vectors with labels, gauges, gauge functions, histograms, collectors of
// one's own, the Go runtime's and the process's metrics, gathered in a
// Registry that serves them in the Prometheus text exposition format
// (version 0.0.4) on /metrics.
//
// It replaces the Prometheus client library, which links protocol buffers
// (its data model) and about 2 MB of program for a few dozen lines of text
// per scrape: the appliance's program lives on a code disk read through the
// page cache of a small VM, and every megabyte of it is working set that
// the mail index competes with. Names and types of the metrics the console
// served with that library are kept (go_*, process_*, nymote_*), so
// dashboards keep working.
//
// Use:
//
//	reg := metrics.NewRegistry()
//	reqs := metrics.NewCounterVec("app_requests_total", "Requests, by code.", "code")
//	reg.MustRegister(reqs, metrics.NewGoCollector(), metrics.NewProcessCollector())
//	reqs.WithLabelValues("200").Inc()
//	http.Handle("/metrics", reg)
//
// Constructors panic on invalid names (a programmer's error, as with the
// standard library's regexp.MustCompile); label values may be anything (they
// are escaped, invalid UTF-8 replaced).
package metrics

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Type is a metric family's type, as its # TYPE line says.
type Type int

// The metric types of the text format.
const (
	TypeUntyped Type = iota
	TypeCounter
	TypeGauge
	TypeHistogram
	TypeSummary
)

func (t Type) String() string {
	switch t {
	case TypeCounter:
		return "counter"
	case TypeGauge:
		return "gauge"
	case TypeHistogram:
		return "histogram"
	case TypeSummary:
		return "summary"
	}
	return "untyped"
}

// Family is one metric family as a scrape sees it: its name, help text,
// type, label names and samples.
type Family struct {
	Name, Help string
	Type       Type
	// Labels are the label names each of Metrics has values for, in
	// order. A histogram's "le" and a summary's "quantile" are not among
	// them.
	Labels  []string
	Metrics []Metric
}

// Metric is one series of a family (one per combination of label values).
type Metric struct {
	// LabelValues are the values of the family's Labels, in order.
	LabelValues []string
	// Value is a counter's, gauge's or untyped metric's value.
	Value float64
	// Buckets are a histogram's cumulative counts per upper bound, in
	// increasing order of bounds; the +Inf bucket is Count and may be
	// left out.
	Buckets []Bucket
	// Quantiles are a summary's.
	Quantiles []Quantile
	// Sum and Count are a histogram's or summary's.
	Sum   float64
	Count uint64
}

// Bucket is one histogram bucket: how many observations were at most
// UpperBound.
type Bucket struct {
	UpperBound float64
	Count      uint64
}

// Quantile is one quantile of a summary.
type Quantile struct {
	Quantile, Value float64
}

// A Collector produces metric families on each scrape, by calling emit for
// each, from Collect's own goroutine and before Collect returns (emit
// keeps the family's slices: they must not change afterwards). Collect
// may be called by several scrapes at once.
type Collector interface {
	Collect(emit func(Family))
}

// CollectorFunc is a function as a Collector.
type CollectorFunc func(emit func(Family))

// Collect calls f.
func (f CollectorFunc) Collect(emit func(Family)) { f(emit) }

// named is a collector of one family whose name is known beforehand, so
// that a registry can refuse a second of the same name at registration.
type named interface {
	metricName() string
}

// validName reports whether s is a metric name: [a-zA-Z_:][a-zA-Z0-9_:]*.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validLabel reports whether s may name a label: [a-zA-Z_][a-zA-Z0-9_]*,
// not beginning with "__" (reserved for Prometheus's own).
func validLabel(s string) bool {
	return validName(s) && !strings.Contains(s, ":") && !strings.HasPrefix(s, "__")
}

func mustName(name string, labels []string, reserved string) {
	if !validName(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	for i, l := range labels {
		if !validLabel(l) || l == reserved {
			panic(fmt.Sprintf("metrics: %s: invalid label name %q", name, l))
		}
		if slices.Contains(labels[:i], l) {
			panic(fmt.Sprintf("metrics: %s: label %q twice", name, l))
		}
	}
}

// atomicFloat is a float64 updated atomically.
type atomicFloat struct{ bits atomic.Uint64 }

func (f *atomicFloat) load() float64 { return math.Float64frombits(f.bits.Load()) }

func (f *atomicFloat) store(v float64) { f.bits.Store(math.Float64bits(v)) }

func (f *atomicFloat) add(d float64) {
	for {
		old := f.bits.Load()
		if f.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Counter is a counter: a value that only goes up (until the process
// restarts). One made by NewCounter is its own collector; one of a
// CounterVec is collected with its vector.
type Counter struct {
	v          atomicFloat
	name, help string
}

// Inc adds one.
func (c *Counter) Inc() { c.v.add(1) }

// Add adds d, which must not be negative (it panics: a counter that goes
// down is a bug that would make rates lie).
func (c *Counter) Add(d float64) {
	if d < 0 || math.IsNaN(d) {
		panic(fmt.Sprintf("metrics: counter decreased by %v", d))
	}
	c.v.add(d)
}

// Value is the counter's value.
func (c *Counter) Value() float64 { return c.v.load() }

// NewCounter returns a counter named name.
func NewCounter(name, help string) *Counter {
	mustName(name, nil, "")
	return &Counter{name: name, help: help}
}

// Collect emits the counter.
func (c *Counter) Collect(emit func(Family)) {
	emit(Family{Name: c.name, Help: c.help, Type: TypeCounter, Metrics: []Metric{{Value: c.Value()}}})
}

func (c *Counter) metricName() string { return c.name }

// CounterVec is a family of counters, one per combination of label values.
type CounterVec struct {
	name, help string
	labels     []string

	mu sync.Mutex
	m  map[string]*vecEntry
}

type vecEntry struct {
	values []string
	c      Counter
}

// NewCounterVec returns a counter family named name with the given label
// names.
func NewCounterVec(name, help string, labels ...string) *CounterVec {
	mustName(name, labels, "")
	return &CounterVec{name: name, help: help, labels: slices.Clone(labels), m: map[string]*vecEntry{}}
}

// WithLabelValues returns the counter of these label values (one per label
// name, in order; it panics on another number), made at zero on first use.
func (v *CounterVec) WithLabelValues(values ...string) *Counter {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %s: %d label values for %d labels", v.name, len(values), len(v.labels)))
	}
	key := strings.Join(values, "\xff")
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.m[key]
	if e == nil {
		e = &vecEntry{values: slices.Clone(values)}
		v.m[key] = e
	}
	return &e.c
}

// Collect emits the family.
func (v *CounterVec) Collect(emit func(Family)) {
	v.mu.Lock()
	ms := make([]Metric, 0, len(v.m))
	for _, e := range v.m {
		ms = append(ms, Metric{LabelValues: e.values, Value: e.c.Value()})
	}
	v.mu.Unlock()
	emit(Family{Name: v.name, Help: v.help, Type: TypeCounter, Labels: v.labels, Metrics: ms})
}

func (v *CounterVec) metricName() string { return v.name }

// Gauge is a gauge: a value that goes up and down.
type Gauge struct {
	v          atomicFloat
	name, help string
}

// NewGauge returns a gauge named name, at zero.
func NewGauge(name, help string) *Gauge {
	mustName(name, nil, "")
	return &Gauge{name: name, help: help}
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.v.store(v) }

// Add adds d (which may be negative).
func (g *Gauge) Add(d float64) { g.v.add(d) }

// Inc adds one.
func (g *Gauge) Inc() { g.v.add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.add(-1) }

// Value is the gauge's value.
func (g *Gauge) Value() float64 { return g.v.load() }

// Collect emits the gauge.
func (g *Gauge) Collect(emit func(Family)) {
	emit(Family{Name: g.name, Help: g.help, Type: TypeGauge, Metrics: []Metric{{Value: g.Value()}}})
}

func (g *Gauge) metricName() string { return g.name }

// GaugeFunc is a gauge whose value a function returns at each scrape.
type GaugeFunc struct {
	name, help string
	f          func() float64
}

// NewGaugeFunc returns a gauge named name whose value is f's (f must be
// safe to call concurrently).
func NewGaugeFunc(name, help string, f func() float64) *GaugeFunc {
	mustName(name, nil, "")
	return &GaugeFunc{name: name, help: help, f: f}
}

// Collect calls the function and emits its value.
func (g *GaugeFunc) Collect(emit func(Family)) {
	emit(Family{Name: g.name, Help: g.help, Type: TypeGauge, Metrics: []Metric{{Value: g.f()}}})
}

func (g *GaugeFunc) metricName() string { return g.name }

// Histogram counts observations in buckets, with their sum.
type Histogram struct {
	name, help string
	bounds     []float64

	// A mutex rather than atomics: a scrape then sees the buckets, sum
	// and count of the same observations. Observations are at most a few
	// thousand per second (commits, page loads), so it is not contended.
	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative; the last is +Inf's
	sum    float64
}

// NewHistogram returns a histogram named name with the given bucket upper
// bounds (increasing; a last +Inf is implied and may be left out).
func NewHistogram(name, help string, buckets []float64) *Histogram {
	mustName(name, nil, "le")
	b := slices.Clone(buckets)
	if n := len(b); n > 0 && math.IsInf(b[n-1], +1) {
		b = b[:n-1]
	}
	for i, x := range b {
		if math.IsNaN(x) || math.IsInf(x, 0) || i > 0 && x <= b[i-1] {
			panic(fmt.Sprintf("metrics: %s: bucket bounds %v are not finite and strictly increasing", name, buckets))
		}
	}
	return &Histogram{name: name, help: help, bounds: b, counts: make([]uint64, len(b)+1)}
}

// ExponentialBuckets returns count bucket bounds: start, start*factor,
// start*factor², ...
func ExponentialBuckets(start, factor float64, count int) []float64 {
	if start <= 0 || factor <= 1 || count < 1 {
		panic(fmt.Sprintf("metrics: ExponentialBuckets(%v, %v, %d): want start > 0, factor > 1, count >= 1", start, factor, count))
	}
	b := make([]float64, count)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}

// Observe adds one observation of v to the bucket of the smallest bound
// that is at least v.
func (h *Histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	if math.IsNaN(v) {
		i = len(h.bounds)
	}
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.mu.Unlock()
}

// Collect emits the histogram, its buckets cumulative.
func (h *Histogram) Collect(emit func(Family)) {
	m := Metric{Buckets: make([]Bucket, len(h.bounds))}
	h.mu.Lock()
	var n uint64
	for i, b := range h.bounds {
		n += h.counts[i]
		m.Buckets[i] = Bucket{UpperBound: b, Count: n}
	}
	m.Count = n + h.counts[len(h.bounds)]
	m.Sum = h.sum
	h.mu.Unlock()
	emit(Family{Name: h.name, Help: h.help, Type: TypeHistogram, Metrics: []Metric{m}})
}

func (h *Histogram) metricName() string { return h.name }

var (
	_ named = (*Counter)(nil)
	_ named = (*CounterVec)(nil)
	_ named = (*Gauge)(nil)
	_ named = (*GaugeFunc)(nil)
	_ named = (*Histogram)(nil)
)
