package main

import (
	"fmt"
	"math"
	"strings"
)

// The layout of the plot, in pixels: each backend's panel is a plot area of
// plotW × plotH inside the margins.
const (
	plotW, plotH                           = 440.0, 320.0
	marginL, marginR, marginTop, marginBot = 64.0, 20.0, 56.0, 70.0
)

// plotSVG draws latency percentiles (log scale) against subscribers (log
// scale), one panel per backend side by side, for the runs with fan-out
// points. The same report always gives the same bytes.
func plotSVG(rep *Report) string {
	var runs []BackendRun
	for _, r := range rep.Runs {
		if len(r.FanOut) > 0 {
			runs = append(runs, r)
		}
	}
	W := float64(len(runs))*(plotW+marginL+marginR) + 10
	H := plotH + marginTop + marginBot
	ax := newLogAxes(runs)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for i, r := range runs {
		p := panel{ox: float64(i)*(plotW+marginL+marginR) + marginL, oy: marginTop, logAxes: ax}
		p.drawAxes(&b, r)
		for k, s := range latencySeries() {
			p.drawSeries(&b, r, s)
			p.drawLegendEntry(&b, k, s)
		}
	}
	fmt.Fprintf(&b, `<text x="10" y="%.1f" font-size="10" fill="#555">roomfeed-bench %s, %s, %d CPUs, load1 %.2f..%.2f. Values at or below %s ms (an event can reach a subscriber before its writer has the answer) are drawn on the bottom line.</text>`+"\n",
		H-4, rep.Mode, rep.Started.Format("2006-01-02"), rep.Machine.CPUs, rep.Load.Before, rep.Load.Max, fmtMS(math.Pow(10, ax.ylo)))
	b.WriteString("</svg>\n")
	return b.String()
}

// logAxes are the decades the plot spans, shared by all panels: latency
// from 10^ylo to 10^yhi ms (at least 0.01 ms to 100 ms), subscribers from 1
// to 10^xhi (at least 10).
type logAxes struct {
	ylo, yhi, xhi float64
}

// newLogAxes fits the axes to every percentile of every point of runs.
func newLogAxes(runs []BackendRun) logAxes {
	ymin, ymax := math.Inf(1), math.Inf(-1)
	xmax := 1.0
	for _, r := range runs {
		for _, p := range r.FanOut {
			for _, v := range []float64{p.Latency.P50, p.Latency.P90, p.Latency.P99, p.Latency.Max} {
				v = math.Max(v, 0.01)
				ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
			}
			xmax = math.Max(xmax, float64(p.Subscribers))
		}
	}
	a := logAxes{ylo: math.Max(math.Floor(math.Log10(ymin)), -2), yhi: math.Ceil(math.Log10(math.Max(ymax, 60)))}
	if a.yhi <= a.ylo {
		a.yhi = a.ylo + 1
	}
	a.xhi = math.Ceil(math.Log10(xmax))
	if a.xhi < 1 {
		a.xhi = 1
	}
	return a
}

// panel is the plot area of one backend: its top-left corner and the axes.
type panel struct {
	ox, oy float64
	logAxes
}

// x is the position of n subscribers.
func (p panel) x(n float64) float64 { return p.ox + math.Log10(math.Max(n, 1))/p.xhi*plotW }

// y is the position of a latency of v ms; values below the axis sit on it.
func (p panel) y(v float64) float64 {
	v = math.Max(v, math.Pow(10, p.ylo))
	return p.oy + plotH - (math.Log10(v)-p.ylo)/(p.yhi-p.ylo)*plotH
}

// drawAxes draws the panel's title, frame, grid with labels, the 50 ms
// target line and the axis titles.
func (p panel) drawAxes(b *strings.Builder, r BackendRun) {
	ox, oy := p.ox, p.oy
	rate := 0.0
	if len(r.FanOut) > 0 {
		rate = r.FanOut[0].TargetRate
	}
	fmt.Fprintf(b, `<text x="%.1f" y="22" font-size="14" font-weight="bold">%s: write ack to SSE receipt, %.0f writes/s into one room</text>`+"\n", ox-40, esc(r.Backend), rate)
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", ox, oy, plotW, plotH)
	for e := p.ylo; e <= p.yhi; e++ {
		y := p.y(math.Pow(10, e))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", ox, y, ox+plotW, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", ox-6, y+4, fmtMS(math.Pow(10, e)))
	}
	y50 := p.y(50)
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="5,4"/>`+"\n", ox, y50, ox+plotW, y50)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#d62728" text-anchor="end">p99 target 50 ms</text>`+"\n", ox+plotW-4, y50-4)
	for e := 0.0; e <= p.xhi; e++ {
		x := p.x(math.Pow(10, e))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x, oy, x, oy+plotH)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`+"\n", x, oy+plotH+16, math.Pow(10, e))
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">subscribers (log)</text>`+"\n", ox+plotW/2, oy+plotH+34)
	fmt.Fprintf(b, `<text transform="translate(%.1f,%.1f) rotate(-90)" text-anchor="middle">latency, ms (log)</text>`+"\n", ox-46, oy+plotH/2)
}

// series is one latency percentile drawn as a line.
type series struct {
	name  string
	color string
	get   func(FanOutPoint) float64
}

// latencySeries returns the percentiles the plot draws, in legend order.
func latencySeries() []series {
	return []series{
		{"p50", "#1f77b4", func(p FanOutPoint) float64 { return p.Latency.P50 }},
		{"p90", "#2ca02c", func(p FanOutPoint) float64 { return p.Latency.P90 }},
		{"p99", "#d62728", func(p FanOutPoint) float64 { return p.Latency.P99 }},
		{"max", "#7f7f7f", func(p FanOutPoint) float64 { return p.Latency.Max }},
	}
}

// drawSeries draws s over r's points: a line and a dot with a tooltip at
// each point.
func (p panel) drawSeries(b *strings.Builder, r BackendRun, s series) {
	var pts []string
	for _, pt := range r.FanOut {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", p.x(float64(pt.Subscribers)), p.y(s.get(pt))))
	}
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
	for _, pt := range r.FanOut {
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s %d subs: %.2f ms</title></circle>`+"\n",
			p.x(float64(pt.Subscribers)), p.y(s.get(pt)), s.color, s.name, pt.Subscribers, s.get(pt))
	}
}

// drawLegendEntry draws the k-th entry of the legend below the panel.
func (p panel) drawLegendEntry(b *strings.Builder, k int, s series) {
	lx := p.ox + float64(k)*70
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", lx, p.oy+plotH+52, lx+18, p.oy+plotH+52, s.color)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+22, p.oy+plotH+56, s.name)
}

func fmtMS(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f s", v/1000)
	case v >= 1:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%g", v)
	}
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
