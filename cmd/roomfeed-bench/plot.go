package main

import (
	"fmt"
	"math"
	"strings"
)

// plotSVG draws latency percentiles (log scale) against subscribers (log
// scale), one panel per backend side by side.
func plotSVG(rep *Report) string {
	var runs []BackendRun
	for _, r := range rep.Runs {
		if len(r.FanOut) > 0 {
			runs = append(runs, r)
		}
	}
	const pw, ph = 440.0, 320.0 // panel plot area
	const ml, mr, mt, mb = 64.0, 20.0, 56.0, 70.0
	W := float64(len(runs))*(pw+ml+mr) + 10
	H := ph + mt + mb
	// y range over everything, in ms, log10
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
	ylo := math.Max(math.Floor(math.Log10(ymin)), -2)
	yhi := math.Ceil(math.Log10(math.Max(ymax, 60)))
	if yhi <= ylo {
		yhi = ylo + 1
	}
	xhi := math.Ceil(math.Log10(xmax))
	if xhi < 1 {
		xhi = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	series := []struct {
		name  string
		color string
		get   func(FanOutPoint) float64
	}{
		{"p50", "#1f77b4", func(p FanOutPoint) float64 { return p.Latency.P50 }},
		{"p90", "#2ca02c", func(p FanOutPoint) float64 { return p.Latency.P90 }},
		{"p99", "#d62728", func(p FanOutPoint) float64 { return p.Latency.P99 }},
		{"max", "#7f7f7f", func(p FanOutPoint) float64 { return p.Latency.Max }},
	}
	for i, r := range runs {
		ox := float64(i)*(pw+ml+mr) + ml
		oy := mt
		xpos := func(n float64) float64 { return ox + math.Log10(math.Max(n, 1))/xhi*pw }
		ypos := func(v float64) float64 {
			v = math.Max(v, math.Pow(10, ylo))
			return oy + ph - (math.Log10(v)-ylo)/(yhi-ylo)*ph
		}
		rate := 0.0
		if len(r.FanOut) > 0 {
			rate = r.FanOut[0].TargetRate
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="22" font-size="14" font-weight="bold">%s: write ack to SSE receipt, %.0f writes/s into one room</text>`+"\n", ox-40, esc(r.Backend), rate)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", ox, oy, pw, ph)
		for e := ylo; e <= yhi; e++ {
			y := ypos(math.Pow(10, e))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", ox, y, ox+pw, y)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", ox-6, y+4, fmtMS(math.Pow(10, e)))
		}
		// the 50 ms target line
		y50 := ypos(50)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="5,4"/>`+"\n", ox, y50, ox+pw, y50)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#d62728" text-anchor="end">p99 target 50 ms</text>`+"\n", ox+pw-4, y50-4)
		for e := 0.0; e <= xhi; e++ {
			x := xpos(math.Pow(10, e))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x, oy, x, oy+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`+"\n", x, oy+ph+16, math.Pow(10, e))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">subscribers (log)</text>`+"\n", ox+pw/2, oy+ph+34)
		fmt.Fprintf(&b, `<text transform="translate(%.1f,%.1f) rotate(-90)" text-anchor="middle">latency, ms (log)</text>`+"\n", ox-46, oy+ph/2)
		for k, s := range series {
			var pts []string
			for _, p := range r.FanOut {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", xpos(float64(p.Subscribers)), ypos(s.get(p))))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
			for _, p := range r.FanOut {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s %d subs: %.2f ms</title></circle>`+"\n",
					xpos(float64(p.Subscribers)), ypos(s.get(p)), s.color, s.name, p.Subscribers, s.get(p))
			}
			lx := ox + float64(k)*70
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", lx, oy+ph+52, lx+18, oy+ph+52, s.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+22, oy+ph+56, s.name)
		}
	}
	fmt.Fprintf(&b, `<text x="10" y="%.1f" font-size="10" fill="#555">roomfeed-bench %s, %s, %d CPUs, load1 %.2f..%.2f. Values at or below %s ms (an event can reach a subscriber before its writer has the answer) are drawn on the bottom line.</text>`+"\n",
		H-4, rep.Mode, rep.Started.Format("2006-01-02"), rep.Machine.CPUs, rep.Load.Before, rep.Load.Max, fmtMS(math.Pow(10, ylo)))
	b.WriteString("</svg>\n")
	return b.String()
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
