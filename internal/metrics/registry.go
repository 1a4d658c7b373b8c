package metrics

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Registry is the collectors one /metrics serves.
type Registry struct {
	mu    sync.Mutex
	cols  []Collector
	names map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{names: map[string]bool{}} }

// Register adds collectors. It refuses (and adds none) where one of this
// package's metrics has the name of one registered before; collectors of
// one's own are checked at each scrape (Gather).
func (r *Registry) Register(cs ...Collector) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range cs {
		if c == nil {
			return fmt.Errorf("metrics: register: nil collector")
		}
		if n, ok := c.(named); ok {
			name := n.metricName()
			if name == "" {
				return fmt.Errorf("metrics: register: a counter of a CounterVec is collected with its vector")
			}
			if r.names[name] || seen[name] {
				return fmt.Errorf("metrics: register: %s registered twice", name)
			}
			seen[name] = true
		}
	}
	for n := range seen {
		r.names[n] = true
	}
	r.cols = append(r.cols, cs...)
	return nil
}

// MustRegister is Register, panicking on its error.
func (r *Registry) MustRegister(cs ...Collector) {
	if err := r.Register(cs...); err != nil {
		panic(err)
	}
}

// Gather collects every registered collector's families, sorted by name,
// each family's metrics sorted by label values. Families of one name that
// several collectors (or several emits) gave are merged when their type,
// help and labels agree, an error otherwise; so are two metrics of one
// family with the same label values, and families or metrics whose names
// or number of label values are not valid.
func (r *Registry) Gather() ([]Family, error) {
	r.mu.Lock()
	cols := slices.Clone(r.cols)
	r.mu.Unlock()
	byName := map[string]int{}
	var fams []Family
	var errs []error
	for _, c := range cols {
		c.Collect(func(f Family) {
			if err := checkFamily(f); err != nil {
				errs = append(errs, err)
				return
			}
			i, ok := byName[f.Name]
			if !ok {
				byName[f.Name] = len(fams)
				f.Metrics = slices.Clone(f.Metrics)
				fams = append(fams, f)
				return
			}
			g := &fams[i]
			if g.Type != f.Type || g.Help != f.Help || !slices.Equal(g.Labels, f.Labels) {
				errs = append(errs, fmt.Errorf("metrics: %s collected twice with different type, help or labels", f.Name))
				return
			}
			g.Metrics = append(g.Metrics, f.Metrics...)
		})
	}
	slices.SortFunc(fams, func(a, b Family) int { return strings.Compare(a.Name, b.Name) })
	for i := range fams {
		f := &fams[i]
		slices.SortFunc(f.Metrics, func(a, b Metric) int { return slices.Compare(a.LabelValues, b.LabelValues) })
		for j := 1; j < len(f.Metrics); j++ {
			if slices.Equal(f.Metrics[j-1].LabelValues, f.Metrics[j].LabelValues) {
				errs = append(errs, fmt.Errorf("metrics: %s%s collected twice", f.Name, labelText(f.Labels, f.Metrics[j].LabelValues)))
			}
		}
	}
	if len(errs) > 0 {
		return fams, errs[0]
	}
	return fams, nil
}

func labelText(names, values []string) string {
	var b bytes.Buffer
	writeLabels(&b, names, values, "", "")
	return b.String()
}

func checkFamily(f Family) error {
	if !validName(f.Name) {
		return fmt.Errorf("metrics: invalid metric name %q", f.Name)
	}
	reserved := ""
	switch f.Type {
	case TypeHistogram:
		reserved = "le"
	case TypeSummary:
		reserved = "quantile"
	case TypeCounter, TypeGauge, TypeUntyped:
	default:
		return fmt.Errorf("metrics: %s: unknown type %d", f.Name, f.Type)
	}
	for i, l := range f.Labels {
		if !validLabel(l) || l == reserved || slices.Contains(f.Labels[:i], l) {
			return fmt.Errorf("metrics: %s: invalid label name %q", f.Name, l)
		}
	}
	for _, m := range f.Metrics {
		if len(m.LabelValues) != len(f.Labels) {
			return fmt.Errorf("metrics: %s: %d label values for %d labels", f.Name, len(m.LabelValues), len(f.Labels))
		}
		if f.Type == TypeHistogram {
			for i, b := range m.Buckets {
				if math.IsNaN(b.UpperBound) || i > 0 && (b.UpperBound <= m.Buckets[i-1].UpperBound || b.Count < m.Buckets[i-1].Count) || b.Count > m.Count {
					return fmt.Errorf("metrics: %s: buckets not increasing", f.Name)
				}
			}
		}
	}
	return nil
}

// WriteText writes the registry's metrics in the text exposition format
// (version 0.0.4). On a Gather error it writes nothing and returns it.
func (r *Registry) WriteText(w io.Writer) error {
	fams, err := r.Gather()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for _, f := range fams {
		writeFamily(&b, f)
	}
	_, err = w.Write(b.Bytes())
	return err
}

// ContentType is the text exposition format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// ServeHTTP serves the metrics in the text format, or 500 with the error
// where gathering them failed.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		http.Error(w, "gathering metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	if req.Method != http.MethodHead {
		w.Write(b.Bytes())
	}
}

// writeFamily writes one family: its # HELP line (when it has help), its
// # TYPE line and a line per sample; nothing for a family without series
// (a CounterVec not used yet), as the Prometheus client did.
func writeFamily(b *bytes.Buffer, f Family) {
	if len(f.Metrics) == 0 {
		return
	}
	if f.Help != "" {
		b.WriteString("# HELP ")
		b.WriteString(f.Name)
		b.WriteByte(' ')
		writeEscaped(b, f.Help, false)
		b.WriteByte('\n')
	}
	b.WriteString("# TYPE ")
	b.WriteString(f.Name)
	b.WriteByte(' ')
	b.WriteString(f.Type.String())
	b.WriteByte('\n')
	for _, m := range f.Metrics {
		switch f.Type {
		case TypeHistogram:
			inf := false
			for _, bk := range m.Buckets {
				inf = inf || math.IsInf(bk.UpperBound, +1)
				writeSample(b, f.Name+"_bucket", f.Labels, m.LabelValues, "le", formatFloat(bk.UpperBound), float64(bk.Count))
			}
			if !inf {
				writeSample(b, f.Name+"_bucket", f.Labels, m.LabelValues, "le", "+Inf", float64(m.Count))
			}
			writeSample(b, f.Name+"_sum", f.Labels, m.LabelValues, "", "", m.Sum)
			writeSample(b, f.Name+"_count", f.Labels, m.LabelValues, "", "", float64(m.Count))
		case TypeSummary:
			for _, q := range m.Quantiles {
				writeSample(b, f.Name, f.Labels, m.LabelValues, "quantile", formatFloat(q.Quantile), q.Value)
			}
			writeSample(b, f.Name+"_sum", f.Labels, m.LabelValues, "", "", m.Sum)
			writeSample(b, f.Name+"_count", f.Labels, m.LabelValues, "", "", float64(m.Count))
		default:
			writeSample(b, f.Name, f.Labels, m.LabelValues, "", "", m.Value)
		}
	}
}

func writeSample(b *bytes.Buffer, name string, labels, values []string, extra, extraValue string, v float64) {
	b.WriteString(name)
	writeLabels(b, labels, values, extra, extraValue)
	b.WriteByte(' ')
	b.WriteString(formatFloat(v))
	b.WriteByte('\n')
}

// writeLabels writes {name="value",...}, nothing where there are none.
func writeLabels(b *bytes.Buffer, names, values []string, extra, extraValue string) {
	if len(names) == 0 && extra == "" {
		return
	}
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		writeEscaped(b, values[i], true)
		b.WriteByte('"')
	}
	if extra != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extra)
		b.WriteString(`="`)
		b.WriteString(extraValue)
		b.WriteByte('"')
	}
	b.WriteByte('}')
}

// writeEscaped writes s with backslash and newline escaped (\\, \n), and
// the double quote (\") in label values; bytes that are not UTF-8 become
// U+FFFD, as the format is UTF-8.
func writeEscaped(b *bytes.Buffer, s string, quote bool) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '"' && quote:
			b.WriteString(`\"`)
		default:
			b.WriteByte(c)
		}
	}
}

// formatFloat formats a sample value or bound as the format wants: +Inf,
// -Inf, NaN, or Go's shortest representation that reads back exactly.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, +1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
