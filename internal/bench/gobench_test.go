//go:build bench

package bench

import (
	"bufio"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hotPathPackages hold the testing.B benchmarks of the hot paths.
var hotPathPackages = []string{"./internal/auth/", "./internal/chat/", "./internal/llm/", "./internal/ratelimit/", "./internal/rpc/"}

const (
	hotPathCount     = 5
	hotPathBenchtime = "300ms"
)

// benchLine is every run of one benchmark: metric unit → values.
type benchLine struct {
	pkg, name string
	metrics   map[string][]float64
	order     []string // units in first-seen order
}

// runHotPaths runs the packages' benchmarks with go test and parses them.
func runHotPaths(t *testing.T, root string) (lines []*benchLine, cmdline string, took time.Duration) {
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", strconv.Itoa(hotPathCount), "-benchtime", hotPathBenchtime}
	args = append(args, hotPathPackages...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	begin := time.Now()
	out, err := cmd.CombinedOutput()
	took = time.Since(begin)
	cmdline = "go " + strings.Join(args, " ")
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, out)
	}
	return parseBench(string(out)), cmdline, took
}

// parseBench reads go test -bench output.
func parseBench(out string) []*benchLine {
	var (
		pkg   string
		lines []*benchLine
		index = map[string]*benchLine{}
	)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		text := sc.Text()
		if p, ok := strings.CutPrefix(text, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		fields := strings.Fields(text)
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(fields[1]); err != nil {
			continue
		}
		key := pkg + " " + fields[0]
		bl := index[key]
		if bl == nil {
			bl = &benchLine{pkg: pkg, name: fields[0], metrics: map[string][]float64{}}
			index[key] = bl
			lines = append(lines, bl)
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			unit := fields[i+1]
			if _, seen := bl.metrics[unit]; !seen {
				bl.order = append(bl.order, unit)
			}
			bl.metrics[unit] = append(bl.metrics[unit], v)
		}
	}
	return lines
}

func hotPathSection(lines []*benchLine, cmdline string, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "`%s` (%v). Medians of %d runs, the lowest and highest run in brackets; custom metrics (per delta, per token) divide the same run by what it moved.\n\n",
		cmdline, took.Round(time.Second), hotPathCount)
	b.WriteString("| package | benchmark | time | B/op | allocs/op | other |\n|---|---|---|---|---|---|\n")
	for _, bl := range lines {
		med := func(unit string) spread { return spreadOf(bl.metrics[unit]) }
		var other []string
		for _, unit := range bl.order {
			if slices.Contains([]string{"ns/op", "B/op", "allocs/op"}, unit) {
				continue
			}
			if per, ok := strings.CutPrefix(unit, "ns/"); ok {
				other = append(other, fmt.Sprintf("%s per %s", med(unit).format(nsFormat), per))
				continue
			}
			other = append(other, fmt.Sprintf("%s %s", med(unit).format(func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }), unit))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %.0f | %s |\n", strings.TrimPrefix(bl.pkg, "github.com/parleyhq/parley/"),
			strings.TrimPrefix(bl.name, "Benchmark"), med("ns/op").format(nsFormat), med("B/op").Med, med("allocs/op").Med, strings.Join(other, "; "))
	}
	return b.String()
}

// nsFormat shows nanoseconds in the unit that reads best.
func nsFormat(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f ms", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f µs", v/1e3)
	default:
		return fmt.Sprintf("%.0f ns", v)
	}
}
