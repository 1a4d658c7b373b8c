package metrics

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func text(t *testing.T, r *Registry) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestText: the exposition of each kind of metric, byte for byte: HELP and
// TYPE lines, escaping, families sorted by name and series by label values,
// cumulative buckets with le="+Inf", _sum and _count.
func TestText(t *testing.T) {
	r := NewRegistry()
	reqs := NewCounterVec("app_requests_total", "Requests, by path\\area\nand code.", "path", "code")
	reqs.WithLabelValues("/b", "200").Add(2)
	reqs.WithLabelValues("/a", "500").Inc()
	reqs.WithLabelValues("a\"b\\c\nd", "200").Inc()
	reqs.WithLabelValues("bad\xffutf8", "200").Inc()
	g := NewGauge("app_streams", "Open streams.")
	g.Inc()
	g.Inc()
	g.Dec()
	g.Add(0.5)
	h := NewHistogram("app_seconds", "Times.", ExponentialBuckets(0.25, 2, 3)) // 0.25, 0.5, 1
	for _, v := range []float64{0.1, 0.25, 0.3, 1, 7} {
		h.Observe(v)
	}
	empty := NewHistogram("app_empty_seconds", "", []float64{1, math.Inf(+1)})
	unused := NewCounterVec("app_unused_total", "Not used yet: left out.", "k")
	c := NewCounter("app_events_total", "Events.")
	c.Add(1e9)
	r.MustRegister(reqs, g, h, empty, c, unused,
		NewGaugeFunc("app_big", "Big.", func() float64 { return math.Inf(+1) }),
		CollectorFunc(func(emit func(Family)) {
			emit(Family{Name: "app_pause_seconds", Help: "Pauses.", Type: TypeSummary, Labels: []string{"kind"},
				Metrics: []Metric{{LabelValues: []string{"gc"}, Quantiles: []Quantile{{0.5, 0.001}, {1, 0.25}}, Sum: 1.5, Count: 12}}})
			emit(Family{Name: "app_peer_lag_seconds", Type: TypeGauge, Labels: []string{"peer"},
				Metrics: []Metric{{LabelValues: []string{"b"}, Value: 2.5}}})
			emit(Family{Name: "app_peer_lag_seconds", Type: TypeGauge, Labels: []string{"peer"},
				Metrics: []Metric{{LabelValues: []string{"a"}, Value: -1}}})
		}))
	want := `# HELP app_big Big.
# TYPE app_big gauge
app_big +Inf
# TYPE app_empty_seconds histogram
app_empty_seconds_bucket{le="1"} 0
app_empty_seconds_bucket{le="+Inf"} 0
app_empty_seconds_sum 0
app_empty_seconds_count 0
# HELP app_events_total Events.
# TYPE app_events_total counter
app_events_total 1e+09
# HELP app_pause_seconds Pauses.
# TYPE app_pause_seconds summary
app_pause_seconds{kind="gc",quantile="0.5"} 0.001
app_pause_seconds{kind="gc",quantile="1"} 0.25
app_pause_seconds_sum{kind="gc"} 1.5
app_pause_seconds_count{kind="gc"} 12
# TYPE app_peer_lag_seconds gauge
app_peer_lag_seconds{peer="a"} -1
app_peer_lag_seconds{peer="b"} 2.5
# HELP app_requests_total Requests, by path\\area\nand code.
# TYPE app_requests_total counter
app_requests_total{path="/a",code="500"} 1
app_requests_total{path="/b",code="200"} 2
app_requests_total{path="a\"b\\c\nd",code="200"} 1
app_requests_total{path="bad` + "\uFFFD" + `utf8",code="200"} 1
# HELP app_seconds Times.
# TYPE app_seconds histogram
app_seconds_bucket{le="0.25"} 2
app_seconds_bucket{le="0.5"} 3
app_seconds_bucket{le="1"} 4
app_seconds_bucket{le="+Inf"} 5
app_seconds_sum 8.65
app_seconds_count 5
# HELP app_streams Open streams.
# TYPE app_streams gauge
app_streams 1.5
`
	if got := text(t, r); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	parse(t, text(t, r))
}

// parse reads the exposition with the Prometheus server's own text parser
// (a test-only dependency: the programs do not link it) and returns its
// families.
func parse(t *testing.T, s string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(s))
	if err != nil {
		t.Fatalf("the Prometheus text parser refuses our exposition: %v\n%s", err, s)
	}
	return fams
}

// TestParsedByPrometheus: what the parser reads back is what was recorded:
// escaped label values, bucket counts, sums.
func TestParsedByPrometheus(t *testing.T) {
	r := NewRegistry()
	v := NewCounterVec("x_total", "Help with \\ and\nnewline.", "name")
	odd := "quote\" back\\slash\nnewline {}=,"
	v.WithLabelValues(odd).Add(3)
	h := NewHistogram("y_seconds", "Y.", []float64{0.001, 0.01, 0.1})
	h.Observe(0.005)
	h.Observe(0.05)
	h.Observe(5)
	r.MustRegister(v, h)
	fams := parse(t, text(t, r))
	x := fams["x_total"]
	if x == nil || x.GetHelp() != "Help with \\ and\nnewline." || len(x.Metric) != 1 {
		t.Fatalf("x_total: %v", x)
	}
	if l := x.Metric[0].Label; len(l) != 1 || l[0].GetName() != "name" || l[0].GetValue() != odd || x.Metric[0].Counter.GetValue() != 3 {
		t.Errorf("x_total: got %v, want name=%q value 3", x.Metric[0], odd)
	}
	y := fams["y_seconds"].Metric[0].Histogram
	var counts []uint64
	for _, b := range y.Bucket {
		counts = append(counts, b.GetCumulativeCount())
	}
	if !slices.Equal(counts, []uint64{0, 1, 2, 3}) || y.GetSampleCount() != 3 || y.GetSampleSum() != 5.055 {
		t.Errorf("y_seconds: got buckets %v count %d sum %v, want [0 1 2 3] 3 5.055", counts, y.GetSampleCount(), y.GetSampleSum())
	}
}

// TestConcurrent: updates from many goroutines while others scrape add up
// exactly (run with -race to check the locking as well).
func TestConcurrent(t *testing.T) {
	r := NewRegistry()
	c := NewCounter("c_total", "C.")
	v := NewCounterVec("v_total", "V.", "k")
	g := NewGauge("g", "G.")
	h := NewHistogram("h", "H.", []float64{1, 2})
	r.MustRegister(c, v, g, h)
	const workers, n = 8, 1000
	var wg, scrapers sync.WaitGroup
	done := make(chan struct{})
	for range 2 {
		scrapers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				fams, err := r.Gather()
				if err != nil {
					t.Error(err)
					return
				}
				for _, f := range fams {
					if f.Name == "h" {
						m := f.Metrics[0]
						if m.Buckets[0].Count > m.Buckets[1].Count || m.Buckets[1].Count > m.Count {
							t.Errorf("a scrape saw buckets %v of %d observations", m.Buckets, m.Count)
						}
					}
				}
			}
		})
	}
	for w := range workers {
		wg.Go(func() {
			for i := range n {
				c.Inc()
				v.WithLabelValues([]string{"a", "b"}[i%2]).Add(0.5)
				g.Inc()
				g.Dec()
				h.Observe(float64(w % 3))
			}
		})
	}
	wg.Wait()
	close(done)
	scrapers.Wait()
	got := text(t, r)
	for _, line := range []string{"c_total 8000\n", `v_total{k="a"} 2000` + "\n", `v_total{k="b"} 2000` + "\n", "g 0\n",
		`h_bucket{le="1"} 6000` + "\n", `h_bucket{le="+Inf"} 8000` + "\n", "h_sum 7000\n", "h_count 8000\n"} {
		if !strings.Contains(got, line) {
			t.Errorf("missing %q in\n%s", line, got)
		}
	}
}

// TestRefusals: duplicate names, bad names and mismatched labels are
// errors (at registration where the name is known, else at a scrape, which
// then serves a 500 rather than a wrong exposition).
func TestRefusals(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewGauge("a", ""))
	if err := r.Register(NewCounter("a", "")); err == nil {
		t.Error("a second metric a was registered")
	}
	if err := r.Register(NewCounterVec("v_total", "", "k").WithLabelValues("x")); err == nil {
		t.Error("a counter of a vector was registered on its own")
	}
	for name, f := range map[string]func(){
		"bad name":        func() { NewGauge("1a", "") },
		"bad label":       func() { NewCounterVec("a", "", "__x") },
		"le label":        func() { NewHistogram("a", "", nil) }, // fine: no labels
		"unsorted bucket": func() { NewHistogram("a", "", []float64{2, 1}) },
		"decrease":        func() { NewCounter("a", "").Add(-1) },
		"label count":     func() { NewCounterVec("a", "", "k").WithLabelValues("x", "y") },
	} {
		panicked := func() (p bool) {
			defer func() { p = recover() != nil }()
			f()
			return false
		}()
		if panicked != (name != "le label") {
			t.Errorf("%s: panicked %v", name, panicked)
		}
	}
	for name, fam := range map[string]Family{
		"duplicate series": {Name: "d", Type: TypeGauge, Labels: []string{"k"}, Metrics: []Metric{{LabelValues: []string{"x"}}, {LabelValues: []string{"x"}}}},
		"label values":     {Name: "d", Type: TypeGauge, Labels: []string{"k"}, Metrics: []Metric{{}}},
		"name":             {Name: "d-x", Type: TypeGauge},
		"le":               {Name: "d", Type: TypeHistogram, Labels: []string{"le"}},
		"decreasing":       {Name: "d", Type: TypeHistogram, Metrics: []Metric{{Buckets: []Bucket{{1, 5}, {2, 4}}, Count: 5}}},
	} {
		r := NewRegistry()
		r.MustRegister(CollectorFunc(func(emit func(Family)) { emit(fam) }))
		if _, err := r.Gather(); err == nil {
			t.Errorf("%s: no error", name)
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		if w.Code != http.StatusInternalServerError {
			t.Errorf("%s: served %d, want 500", name, w.Code)
		}
	}
	r = NewRegistry()
	r.MustRegister(CollectorFunc(func(emit func(Family)) {
		emit(Family{Name: "d", Type: TypeGauge})
		emit(Family{Name: "d", Type: TypeCounter})
	}))
	if _, err := r.Gather(); err == nil {
		t.Error("a family of two types: no error")
	}
}

func TestServeHTTP(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewGauge("a", "A."))
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" || w.Body.String() != "# HELP a A.\n# TYPE a gauge\na 0\n" {
		t.Errorf("got %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body.String())
	}
}

// The names the Prometheus client's Go and process collectors served,
// which dashboards use.
var (
	goNames = []string{"go_gc_duration_seconds", "go_gc_gogc_percent", "go_gc_gomemlimit_bytes", "go_goroutines", "go_info",
		"go_memstats_alloc_bytes", "go_memstats_alloc_bytes_total", "go_memstats_buck_hash_sys_bytes", "go_memstats_frees_total",
		"go_memstats_gc_sys_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_inuse_bytes",
		"go_memstats_heap_objects", "go_memstats_heap_released_bytes", "go_memstats_heap_sys_bytes", "go_memstats_last_gc_time_seconds",
		"go_memstats_mallocs_total", "go_memstats_mcache_inuse_bytes", "go_memstats_mcache_sys_bytes", "go_memstats_mspan_inuse_bytes",
		"go_memstats_mspan_sys_bytes", "go_memstats_next_gc_bytes", "go_memstats_other_sys_bytes", "go_memstats_stack_inuse_bytes",
		"go_memstats_stack_sys_bytes", "go_memstats_sys_bytes", "go_sched_gomaxprocs_threads", "go_threads"}
	processNames = []string{"process_cpu_seconds_total", "process_max_fds", "process_network_receive_bytes_total",
		"process_network_transmit_bytes_total", "process_open_fds", "process_resident_memory_bytes", "process_start_time_seconds",
		"process_virtual_memory_bytes", "process_virtual_memory_max_bytes"}
)

// TestGoCollector: the Go collector serves the names the Prometheus
// client's did, with plausible values, and the Prometheus parser reads it.
func TestGoCollector(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewGoCollector())
	s := text(t, r)
	fams := parse(t, s)
	var names []string
	for n := range fams {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, goNames) {
		t.Errorf("got families %v, want %v", names, goNames)
	}
	val := func(n string) float64 { return fams[n].Metric[0].GetGauge().GetValue() }
	if val("go_goroutines") < 1 || val("go_memstats_sys_bytes") < val("go_memstats_heap_sys_bytes") || val("go_memstats_heap_alloc_bytes") <= 0 ||
		val("go_sched_gomaxprocs_threads") < 1 || fams["go_memstats_mallocs_total"].Metric[0].GetCounter().GetValue() <= 0 {
		t.Errorf("implausible values:\n%s", s)
	}
	if q := fams["go_gc_duration_seconds"].Metric[0].GetSummary().Quantile; len(q) != 5 {
		t.Errorf("go_gc_duration_seconds: %d quantiles, want 5", len(q))
	}
}

// TestProcessCollector reads a /proc tree made here, so that values are
// known; and the real one, for the names.
func TestProcessCollector(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"stat":         "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n",
		"self/stat":    "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1234 1000000 300 18446744073709551615\n",
		"self/limits":  "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \nMax address space         unlimited            unlimited            bytes     \n",
		"self/net/dev": "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  eth0: 2000 20 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n",
		"self/fd/0":    "",
		"self/fd/1":    "",
		"self/fd/2":    "",
		"self/fd/3":    "",
		"self/fd/4":    "",
		"self/fd/5":    "",
		"self/fd/6":    "",
		"self/fd/7":    "",
		"self/fd/8":    "",
		"self/fd/9":    "",
		"self/fd/10":   "",
		"self/fd/11":   "",
		"self/fd/12":   "",
		"self/fd/13":   "",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := NewRegistry()
	r.MustRegister(&procCollector{root: root})
	got := text(t, r)
	page := float64(os.Getpagesize())
	for _, line := range []string{
		"process_cpu_seconds_total 3\n",
		"process_max_fds 1024\n",
		"process_network_receive_bytes_total 3000\n",
		"process_network_transmit_bytes_total 1500\n",
		"process_open_fds 14\n",
		"process_resident_memory_bytes " + formatFloat(300*page) + "\n",
		"process_start_time_seconds 1.70000001234e+09\n",
		"process_virtual_memory_bytes 1e+06\n",
		"process_virtual_memory_max_bytes 1.8446744073709552e+19\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("missing %q in\n%s", line, got)
		}
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	r = NewRegistry()
	r.MustRegister(NewProcessCollector())
	fams := parse(t, text(t, r))
	for _, n := range processNames {
		if fams[n] == nil {
			t.Errorf("no %s from /proc", n)
		}
	}
}

// FuzzExposition: whatever a label value or help text holds, the
// Prometheus text parser reads back what was recorded (invalid UTF-8 as
// U+FFFD; a help text's leading blanks are lost, as the format has the
// blanks after the name end where the text begins).
//
// make test runs it for 3000 inputs past its seeds.
// (fuzz-short: 3000x)
func FuzzExposition(f *testing.F) {
	for _, s := range []string{"", "plain", `a"b\c` + "\nd", "\\n", "{x=\"y\"}", "\xff\xfe", "# HELP", "é\u2028\t"} {
		f.Add(s, s, 1.5)
	}
	f.Add("nan", "nan", math.NaN())
	f.Add("inf", "inf", math.Inf(-1))
	f.Fuzz(func(t *testing.T, value, help string, v float64) {
		r := NewRegistry()
		c := NewCounterVec("f_total", help, "k")
		if !math.IsNaN(v) {
			c.WithLabelValues(value).Add(math.Abs(v))
		} else {
			c.WithLabelValues(value).Inc()
		}
		g := NewGauge("g", help)
		g.Set(v)
		r.MustRegister(c, g)
		fams := parse(t, text(t, r))
		want := strings.ToValidUTF8(value, "\uFFFD")
		wantHelp := strings.TrimLeft(strings.ToValidUTF8(help, "\uFFFD"), " \t")
		m := fams["f_total"].Metric[0]
		if got := m.Label[0].GetValue(); got != want {
			t.Errorf("label value read back as %q, want %q", got, want)
		}
		if got := fams["g"].GetHelp(); got != wantHelp {
			t.Errorf("help read back as %q, want %q", got, wantHelp)
		}
		got := fams["g"].Metric[0].Gauge.GetValue()
		if got != v && !(math.IsNaN(got) && math.IsNaN(v)) {
			t.Errorf("value read back as %v, want %v", got, v)
		}
	})
}
