//go:build bench

package bench

import (
	"fmt"
	"math"
	"strings"
)

// plotPoint is one concurrency level of the plot.
type plotPoint struct {
	conc     int
	p50, p99 spread // milliseconds
}

// ttftSVG draws added time to first token against concurrent streams: the
// median of the rounds as a point and the range of the rounds as a bar, on
// logarithmic axes (the figures span four decades), with the targets as
// dashed marks in the colour of their percentile. A value at or below zero
// (Parley as fast as the baseline, within the noise) sits on the bottom edge.
func ttftSVG(points []plotPoint, rounds int, subtitle string) string {
	const (
		width, height            = 780.0, 470.0
		left, right, top, bottom = 70.0, 200.0, 70.0, 60.0
		plotW, plotH             = width - left - right, height - top - bottom
		p50Color, p99Color       = "#1f77b4", "#d62728"
	)
	// The y axis spans whole decades around every value and target.
	lo, hi := 0.5, 10.0 // the targets (1, 3 and 10 ms) stay clear of the edges
	for _, p := range points {
		for _, s := range []spread{p.p50, p.p99} {
			for _, v := range []float64{s.Min, s.Max, s.Med} {
				if !math.IsNaN(v) && v > 0 {
					lo, hi = math.Min(lo, v), math.Max(hi, v)
				}
			}
		}
	}
	loExp, hiExp := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if hiExp-loExp < 2 {
		loExp = hiExp - 2
	}
	y := func(v float64) float64 {
		if v <= 0 || math.IsNaN(v) {
			return top + plotH
		}
		return top + plotH*(hiExp-math.Log10(v))/(hiExp-loExp)
	}
	maxConc := 1
	for _, p := range points {
		maxConc = max(maxConc, p.conc)
	}
	span := math.Max(math.Log2(float64(maxConc)), 1)
	x := func(conc int) float64 { return left + 50 + (plotW-100)*math.Log2(float64(conc))/span }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="Helvetica, Arial, sans-serif" font-size="13">`+"\n", width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="28" font-size="17" font-weight="bold">Time to first token that Parley adds, by concurrent streams</text>`+"\n", left)
	fmt.Fprintf(&b, `<text x="%.0f" y="50" fill="#444">%s</text>`+"\n", left, escape(subtitle))

	// Grid: every decade labelled, 2 and 5 as faint lines.
	for e := loExp; e <= hiExp; e++ {
		v := math.Pow(10, e)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d0d0d0"/>`+"\n", left, y(v), left+plotW, y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#333">%s</text>`+"\n", left-8, y(v)+4, label(v))
		if e < hiExp {
			for _, m := range []float64{2, 5} {
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#f0f0f0"/>`+"\n", left, y(m*v), left+plotW, y(m*v))
			}
		}
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, plotW, plotH)
	fmt.Fprintf(&b, `<text transform="translate(22 %.1f) rotate(-90)" text-anchor="middle">added time to first token, ms (log scale)</text>`+"\n", top+plotH/2)
	for _, p := range points {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x(p.conc), top+plotH, x(p.conc), top+plotH+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", x(p.conc), top+plotH+20, p.conc)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">concurrent streams (log scale)</text>`+"\n", left+plotW/2, height-14)

	// Targets: p50 ≤ 1 ms and p99 ≤ 3 ms at one stream, p99 ≤ 10 ms at 256.
	target := func(conc int, v float64, color string) {
		cx := x(conc)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="6 4"/>`+"\n", cx-30, y(v), cx+30, y(v), color)
	}
	target(1, 1, p50Color)
	target(1, 3, p99Color)
	if maxConc >= 256 {
		target(256, 10, p99Color)
	}

	// Series: a line through the medians, a bar over the rounds' range.
	series := func(pick func(plotPoint) spread, color string, dx float64, square bool) {
		var path []string
		for _, p := range points {
			s := pick(p)
			if math.IsNaN(s.Med) {
				continue
			}
			cx := x(p.conc) + dx
			path = append(path, fmt.Sprintf("%.1f,%.1f", cx, y(s.Med)))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`+"\n", cx, y(s.Min), cx, y(s.Max), color)
			for _, v := range []float64{s.Min, s.Max} {
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`+"\n", cx-4, y(v), cx+4, y(v), color)
			}
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(path, " "), color)
		for _, p := range points {
			s := pick(p)
			if math.IsNaN(s.Med) {
				continue
			}
			cx, cy := x(p.conc)+dx, y(s.Med)
			if square {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="9" height="9" fill="%s"/>`+"\n", cx-4.5, cy-4.5, color)
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s" font-size="12">%s</text>`+"\n", cx+9, cy+4, color, valueLabel(s.Med))
			} else {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="5" fill="%s"/>`+"\n", cx, cy, color)
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s" font-size="12" text-anchor="end">%s</text>`+"\n", cx-9, cy+4, color, valueLabel(s.Med))
			}
		}
	}
	series(func(p plotPoint) spread { return p.p50 }, p50Color, -3, false)
	series(func(p plotPoint) spread { return p.p99 }, p99Color, 3, true)

	// Legend.
	lx, ly := left+plotW+18, top+8
	legend := []string{
		fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="5" fill="%s"/><text x="%.1f" y="%.1f">p50 added</text>`, lx+6, ly, p50Color, lx+18, ly+4),
		fmt.Sprintf(`<rect x="%.1f" y="%.1f" width="9" height="9" fill="%s"/><text x="%.1f" y="%.1f">p99 added</text>`, lx+1.5, ly+15.5, p99Color, lx+18, ly+24),
		fmt.Sprintf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="6 4"/><text x="%.1f" y="%.1f">p50 target</text>`, lx-4, ly+40, lx+14, ly+40, p50Color, lx+18, ly+44),
		fmt.Sprintf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="6 4"/><text x="%.1f" y="%.1f">p99 target</text>`, lx-4, ly+60, lx+14, ly+60, p99Color, lx+18, ly+64),
		fmt.Sprintf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333" stroke-width="1.5"/><text x="%.1f" y="%.1f">range of %d rounds</text>`, lx+6, ly+74, lx+6, ly+90, lx+18, ly+86, rounds),
	}
	for _, l := range legend {
		b.WriteString(l + "\n")
	}
	for i, line := range []string{"point: the median round", "baseline: openai-go", "straight from the fake", "model, in the same round", "values in ms; at or below", "zero: on the bottom edge"} {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" fill="#444">%s</text>`+"\n", lx, ly+116+float64(i)*15, line)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// label names a power of ten on the axis.
func label(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(fmt.Sprintf("%.3f", v), "0")
}

// valueLabel prints a point's value with two significant digits or so.
func valueLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 10:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
