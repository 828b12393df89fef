package loadtest

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"os"
	"strings"
)

// WriteHTML writes a self-contained page: the summary and charts of
// latency, throughput and connections over time as inline SVG. No script,
// no stylesheet or font from the network: it opens from a CI artifact.
func (r *Result) WriteHTML(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil {
		f.Close()
		return fmt.Errorf("html report: %w", err)
	}
	xs := make([]float64, len(r.Timeline))
	pick := func(get func(Sample) float64) []float64 {
		out := make([]float64, len(r.Timeline))
		for i, s := range r.Timeline {
			out[i] = get(s)
		}
		return out
	}
	// A second without deliveries has no latency: the line breaks there
	// rather than dropping to zero.
	lat := func(get func(Sample) float64, count func(Sample) uint64) []float64 {
		return pick(func(s Sample) float64 {
			if count(s) == 0 {
				return math.NaN()
			}
			return get(s)
		})
	}
	p2o := func(s Sample) uint64 { return s.P2OCount }
	o2p := func(s Sample) uint64 { return s.O2PCount }
	for i, s := range r.Timeline {
		xs[i] = s.T
	}
	data := struct {
		Title                              string
		Passed                             bool
		HasThresholds                      bool
		Table                              string
		Latency, Throughput, Conns, Maxima template.HTML
	}{
		Title:         fmt.Sprintf("Load test: %s%s", r.Scenario.URL, r.Scenario.Path),
		Passed:        r.Passed,
		HasThresholds: len(r.Thresholds) > 0,
		Table:         table.String(),
		Latency: lineChart("Latency per second (ms)", xs, []series{
			{"player→operator p50", "#1f77b4", lat(func(s Sample) float64 { return s.P2OP50 }, p2o)},
			{"player→operator p99", "#0b3d91", lat(func(s Sample) float64 { return s.P2OP99 }, p2o)},
			{"operator→player p50", "#ff7f0e", lat(func(s Sample) float64 { return s.O2PP50 }, o2p)},
			{"operator→player p99", "#b34700", lat(func(s Sample) float64 { return s.O2PP99 }, o2p)},
		}),
		Maxima: lineChart("Worst latency per second (ms)", xs, []series{
			{"player→operator max", "#0b3d91", lat(func(s Sample) float64 { return s.P2OMax }, p2o)},
			{"operator→player max", "#b34700", lat(func(s Sample) float64 { return s.O2PMax }, o2p)},
		}),
		Throughput: lineChart("Throughput (per second)", xs, []series{
			{"messages sent", "#2ca02c", pick(func(s Sample) float64 { return s.SentPerS })},
			{"deliveries to operators", "#9467bd", pick(func(s Sample) float64 { return s.DeliverPerS })},
			{"replies sent", "#d62728", pick(func(s Sample) float64 { return s.RepliesPerS })},
		}),
		Conns: lineChart("Connected participants", xs, []series{
			{"players", "#17becf", pick(func(s Sample) float64 { return float64(s.Players) })},
			{"operators", "#8c564b", pick(func(s Sample) float64 { return float64(s.Operators) })},
		}),
	}
	if err := pageTemplate.Execute(f, data); err != nil {
		f.Close()
		return fmt.Errorf("html report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	return nil
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}
pre{background:#f6f6f6;padding:12px;overflow-x:auto;font:12px/1.35 ui-monospace,monospace}
.ok{color:#1a7f37}.fail{color:#c62828}
svg{display:block;margin:16px 0}
</style></head><body>
<h1>{{.Title}}</h1>
{{if .HasThresholds}}<p class="{{if .Passed}}ok{{else}}fail{{end}}"><b>{{if .Passed}}All thresholds met{{else}}Thresholds missed{{end}}</b></p>{{end}}
<pre>{{.Table}}</pre>
{{.Latency}}
{{.Maxima}}
{{.Throughput}}
{{.Conns}}
</body></html>
`))

type series struct {
	name, color string
	ys          []float64
}

// lineChart draws series against time (seconds) as an SVG line chart with
// a zero-based y axis rounded up to a readable number.
func lineChart(title string, xs []float64, ss []series) template.HTML {
	const (
		w, h                     = 960, 280
		left, right, top, bottom = 64, 16, 44, 32
	)
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	xmax, ymax := 1.0, 0.0
	for _, x := range xs {
		xmax = max(xmax, x)
	}
	for _, s := range ss {
		for _, y := range s.ys {
			if !math.IsNaN(y) {
				ymax = max(ymax, y)
			}
		}
	}
	ymax = niceCeil(ymax)
	px := func(x float64) float64 { return left + x/xmax*pw }
	py := func(y float64) float64 { return top + ph - y/ymax*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`, w, h, w, h)
	fmt.Fprintf(&b, `<text x="%d" y="16" font-size="14" font-weight="bold">%s</text>`, left, html.EscapeString(title))
	// Legend.
	lx := float64(left)
	for _, s := range ss {
		fmt.Fprintf(&b, `<rect x="%.0f" y="24" width="12" height="4" fill="%s"/><text x="%.0f" y="30">%s</text>`, lx, s.color, lx+16, html.EscapeString(s.name))
		lx += 24 + 6.5*float64(len([]rune(s.name)))
	}
	// Axes and grid.
	for i := 0; i <= 4; i++ {
		y := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, left, w-right, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, left-6, py(y)+4, axisLabel(y))
	}
	step := niceCeil(xmax / 10)
	for x := 0.0; x <= xmax+1e-9; x += step {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#999"/>`, px(x), px(x), h-bottom, h-bottom+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%ss</text>`, px(x), h-bottom+16, axisLabel(x))
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#333"/>`, left, w-right, h-bottom, h-bottom)
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#333"/>`, left, left, top, h-bottom)
	for _, s := range ss {
		open := false
		for i, y := range s.ys {
			if math.IsNaN(y) {
				if open {
					b.WriteString(`"/>`)
					open = false
				}
				continue
			}
			if !open {
				b.WriteString(`<polyline fill="none" stroke-width="1.6" stroke="` + s.color + `" points="`)
				open = true
			}
			fmt.Fprintf(&b, "%.1f,%.1f ", px(xs[i]), py(y))
		}
		if open {
			b.WriteString(`"/>`)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built here from numbers and escaped names only
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

func axisLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.4g", v)
}
