//go:build bench

package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// percentile returns the p-th percentile (0 < p ≤ 100) of xs by the
// nearest-rank method: a value that was actually observed. It returns 0 for
// no samples.
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// spread is the median of per-round values and how far the rounds ranged.
type spread struct {
	Med, Min, Max float64
	N             int
}

// spreadOf summarizes one value per round.
func spreadOf(rounds []float64) spread {
	if len(rounds) == 0 {
		return spread{Med: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	sorted := slices.Clone(rounds)
	slices.Sort(sorted)
	n := len(sorted)
	med := sorted[n/2]
	if n%2 == 0 {
		med = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return spread{Med: med, Min: sorted[0], Max: sorted[n-1], N: n}
}

// ms formats milliseconds for the report.
func ms(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "n/a"
	case a >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case a >= 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}

// us formats microseconds for the report.
func us(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	if math.Abs(v) >= 1000 {
		return fmt.Sprintf("%.2f ms", v/1000)
	}
	return fmt.Sprintf("%.0f µs", v)
}

// short formats milliseconds in µs below one millisecond.
func short(v float64) string {
	if !math.IsNaN(v) && math.Abs(v) < 1 {
		return us(v * 1000)
	}
	return ms(v)
}

// msOf converts a duration to float milliseconds.
func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// usOf converts a duration to float microseconds.
func usOf(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// String shows the median and the range: "0.62 ms (0.55 to 0.70)".
func (s spread) format(unit func(float64) string) string {
	if s.N <= 1 {
		return unit(s.Med)
	}
	return fmt.Sprintf("%s (%s to %s)", unit(s.Med), unit(s.Min), unit(s.Max))
}

// pct formats a ratio as a percentage.
func pct(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.0f %%", v*100)
}

// mib formats a byte count.
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// kib formats a byte count.
func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/(1<<10)) }
